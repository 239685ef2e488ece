"""Reading a network's weights: ``.npz`` files (:mod:`.npz`) and, through the Keras edge, saved
Keras models; :func:`~.loader.as_weights` is the one conversion every entry point uses."""

from .loader import as_weights, load_weights

__all__ = ["as_weights", "load_weights"]
