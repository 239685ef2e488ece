"""One way in for a network's weights: a file path, a Keras model, a list of arrays or the
weights type itself, converted by :func:`as_weights`.

Files are chosen by suffix: ``.npz`` (:mod:`nn_clustering.formats.npz`), ``.keras``/``.h5``
(:mod:`nn_clustering.keras_edge.weights`, which imports Keras only when such a file is read).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.weights import NetworkWeights
from ..errors import ModelError
from .npz import load_npz_weights

KERAS_SUFFIXES = (".keras", ".h5")


def load_weights(path: str | Path) -> NetworkWeights:
    """Load weights from ``.npz`` or ``.keras``/``.h5``; a clear error for anything else."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path} not found; check the path or train it with `make models`")
    if not path.is_file():
        raise ModelError(f"{path} is not a file; pass a .npz of kernels or a .keras model")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz_weights(path)
    if suffix in KERAS_SUFFIXES:
        from ..keras_edge.weights import load_keras_weights

        return load_keras_weights(path)
    raise ModelError(f"{path}: unknown model format {suffix!r}; pass a .npz of kernels or a .keras model")


def _is_keras_model(obj) -> bool:
    """Whether ``obj`` is a Keras model, without importing Keras when it is not loaded."""
    import sys

    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def as_weights(network) -> NetworkWeights:
    """The :class:`NetworkWeights` of ``network``: a path (``str`` or ``os.PathLike``) to a
    ``.npz`` or ``.keras`` file, a Keras model, a sequence of kernel arrays in layer order, or
    a :class:`NetworkWeights` (returned as is). Anything else is a :class:`ModelError`."""
    if isinstance(network, NetworkWeights):
        return network
    if isinstance(network, str | os.PathLike):
        return load_weights(network)
    if _is_keras_model(network):
        from ..keras_edge.weights import weights_of_keras_model

        return weights_of_keras_model(network, getattr(network, "name", ""))
    if isinstance(network, Sequence) and not isinstance(network, bytes) and len(network) > 0 and all(
        isinstance(k, np.ndarray) or hasattr(k, "__array__") for k in network
    ):
        return NetworkWeights.from_arrays(network, source="arrays")
    raise ModelError(
        f"cannot read a network from a {type(network).__name__}; pass a .npz or .keras path, a Keras "
        "model, a list of kernel arrays in layer order, or NetworkWeights"
    )
