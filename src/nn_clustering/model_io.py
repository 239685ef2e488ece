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
    kind: str = "mlp"  # "mlp": Dense kernels (in, out) only; "cnn": conv kernels (h, w, in, out) first
    source: str = ""

    @property
    def conv_kernels(self) -> list[np.ndarray]:
        """The conv kernels (4-D), in order; empty for an MLP."""
        return [k for k in self.kernels if np.ndim(k) == 4]


def network_kind(kernels: list[np.ndarray], source: str = "") -> str:
    """``cnn`` if there are conv kernels (which must come before any dense one), else ``mlp``."""
    dims = [np.ndim(k) for k in kernels]
    if 4 not in dims:
        return "mlp"
    if dims != sorted(dims, reverse=True) or set(dims) - {2, 4}:
        raise ModelError(
            f"{source or 'weights'}: kernel ranks {dims}; expected conv kernels (4-D) followed by dense "
            "ones (2-D), in layer order"
        )
    return "cnn"


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
    return NetworkWeights(kernels, biases, network_kind(kernels, str(path)), str(path))


def load_keras_model(path: str | Path):
    """A saved Keras model (not compiled), or a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} not found; train the model with `make models` (or check the path)")
    try:
        import keras
    except ImportError as exc:  # pragma: no cover - keras is in the locked environment
        raise ModelError(f"{path}: reading Keras models needs keras; run `make env`") from exc
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for unreadable files
        raise ModelError(f"{path}: cannot be loaded as a Keras model ({exc}); re-save it with model.save()") from exc


def load_keras_weights(path: Path) -> NetworkWeights:
    """Dense and Conv2D kernels and biases of a saved Keras model, in layer order."""
    return weights_of_keras_model(load_keras_model(path), str(path))


def weights_of_keras_model(model, source: str = "") -> NetworkWeights:
    """Kernels and biases of a Keras model's Dense and Conv2D layers in order, batch
    normalisation folded in (:mod:`nn_clustering.keras_weights`); a clear error naming any
    unsupported layer."""
    from .keras_weights import folded_layers

    try:
        layers = folded_layers(model)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}" if source else str(exc)) from None
    kernels = [layer.kernel for layer in layers]
    biases = [layer.bias for layer in layers]
    return NetworkWeights(kernels, biases, network_kind(kernels, source), source)


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
