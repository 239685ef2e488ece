"""Kernels from ``.npz`` files: ``numpy.savez(path, *kernels)`` or ``make models``' layout."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from ..core.weights import NetworkWeights, network_kind
from ..errors import ModelError


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
