"""Reading network weights from disk: ``.npz`` kernel files and saved Keras models.

The numeric core never imports Keras; only :func:`load_keras_weights` does, lazily.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelError


@dataclass
class NetworkWeights:
    """Kernels (and biases where known) in layer order, and the network kind."""

    kernels: list[np.ndarray]
    biases: list[np.ndarray] = field(default_factory=list)
    kind: str = "mlp"  # "mlp": Dense kernels (in, out); "cnn": conv kernels (h, w, in, out)
    source: str = ""


def _numbered(files: list[str], prefix: str) -> list[str]:
    pattern = re.compile(rf"^{prefix}(\d+)$")
    found = sorted((int(m.group(1)), f) for f in files if (m := pattern.match(f)))
    if [i for i, _ in found] != list(range(len(found))):
        raise ModelError(f"{prefix}N arrays are not numbered 0..{len(found) - 1}; re-save the file")
    return [f for _, f in found]


def load_npz_weights(path: Path) -> NetworkWeights:
    """Kernels from an ``.npz``: ``arr_0, arr_1, ...`` (``numpy.savez(*kernels)``) or
    ``kernel_0, ...`` with optional ``bias_0, ...`` (what ``make models`` writes)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ModelError(f"{path}: not a readable .npz ({exc}); re-save it with numpy.savez") from exc
    names = list(arrays)
    kernel_names = _numbered(names, "kernel_") or _numbered(names, "arr_")
    if not kernel_names:
        raise ModelError(
            f"{path}: no arrays named arr_0.. or kernel_0..; save the kernels in layer order "
            "with numpy.savez(path, *kernels)"
        )
    kernels = [arrays[n] for n in kernel_names]
    biases = [arrays[n] for n in _numbered(names, "bias_")]
    kind = "cnn" if all(k.ndim == 4 for k in kernels) else "mlp"
    return NetworkWeights(kernels, biases, kind, str(path))


def load_keras_weights(path: Path) -> NetworkWeights:
    """Dense (or Conv2D) kernels and biases of a saved Keras model, in layer order."""
    try:
        import keras
    except ImportError as exc:  # pragma: no cover - keras is in the locked environment
        raise ModelError(f"{path}: reading Keras models needs keras; run `make env`") from exc
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for unreadable files
        raise ModelError(f"{path}: cannot be loaded as a Keras model ({exc}); re-save it with model.save()") from exc
    return weights_of_keras_model(model, str(path))


def weights_of_keras_model(model, source: str = "") -> NetworkWeights:
    """Kernels of a Keras model's Dense layers (MLP) or Conv2D layers (CNN)."""
    dense, conv = [], []
    for layer in model.layers:
        name = type(layer).__name__
        if name == "Dense":
            dense.append(layer)
        elif name == "Conv2D":
            conv.append(layer)
    layers, kind = (conv, "cnn") if conv else (dense, "mlp")
    if not layers:
        raise ModelError(f"{source or 'model'} has no Dense or Conv2D layers to cluster")
    kernels = [np.asarray(layer.kernel) for layer in layers]
    biases = [np.asarray(layer.bias) for layer in layers if layer.use_bias]
    return NetworkWeights(kernels, biases, kind, source)


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
    if suffix in (".keras", ".h5"):
        return load_keras_weights(path)
    raise ModelError(f"{path}: unknown model format {suffix!r}; pass a .npz of kernels or a .keras model")
