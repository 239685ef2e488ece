"""Reading a network's weights: ``.npz`` files (:mod:`.npz`), ONNX files (:mod:`.onnx`), PyTorch
state_dicts (:mod:`.state_dict`, :mod:`.torch_pickle`) and Keras models (:mod:`.keras`, after the
file checks of :mod:`.keras_file`), each framework imported only inside its own reader; directed
acyclic networks are read through one framework-neutral recorder (:mod:`.wiring`), and every
file is read under the memory bound of :mod:`.limits`.
:func:`~.loader.as_weights` is the one conversion every entry point uses."""

from .loader import as_weights, load_weights

__all__ = ["as_weights", "load_weights"]
