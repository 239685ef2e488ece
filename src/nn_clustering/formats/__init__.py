"""Reading a network's weights: ``.npz`` files (:mod:`.npz`), ONNX files (:mod:`.onnx`), PyTorch
state_dicts (:mod:`.state_dict`) and, through the Keras edge, saved Keras models; directed acyclic
networks are read through one framework-neutral recorder (:mod:`.wiring`).
:func:`~.loader.as_weights` is the one conversion every entry point uses."""

from .loader import as_weights, load_weights

__all__ = ["as_weights", "load_weights"]
