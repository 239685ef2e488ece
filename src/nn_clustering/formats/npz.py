"""Kernels from ``.npz`` files: ``numpy.savez(path, *kernels)`` or ``make models``' layout.

Before an array is decompressed, its archive member's declared size and its ``.npy`` header
(shape and dtype, read from the member's first bytes) are checked: the header must account for
exactly the member's bytes, and the array must fit the memory limit
(:class:`~nn_clustering.formats.limits.ModelBudget`). Members that are not read (names other
than ``arr_N``, ``kernel_N``, ``bias_N``) are never decompressed.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from ..core.graph import NetworkWeights, network_kind
from ..errors import ModelError, quoted
from .limits import ModelBudget, element_count, one_line, shape_text

#: Errors that a damaged archive or ``.npy`` header raises while it is read.
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, ValueError, OSError, EOFError,
               NotImplementedError, RuntimeError, SyntaxError)
RESAVE = "re-save it with numpy.savez"


def _numbered(files: list[str], prefix: str) -> list[str]:
    pattern = re.compile(rf"^{prefix}(\d+)$")
    found = sorted((int(m.group(1)), f) for f in files if (m := pattern.match(f)))
    if [i for i, _ in found] != list(range(len(found))):
        raise ModelError(f"{prefix}N arrays are not numbered 0..{len(found) - 1}; re-save the file")
    return [f for _, f in found]


def _read_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the ``.npy`` stream ``f``, read from its header only."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        return fmt.read_array_header_1_0(f)
    if version == (2, 0):
        return fmt.read_array_header_2_0(f)
    return fmt._read_array_header(f, version)  # (3, 0): utf-8 field names, no public reader


def checked_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, source: str,
                       budget: ModelBudget) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` member ``info``, after checking that its header accounts
    for exactly the member's declared size and that the array fits ``budget``; nothing beyond
    the header is decompressed."""
    try:
        with archive.open(info) as f:
            shape, _, dtype = _read_header(f)
            header_size = f.tell()
    except READ_ERRORS as exc:
        raise ModelError(f"{source}: tensor {quoted(key)} has no readable .npy header ({one_line(exc)}); {RESAVE}") from None
    if dtype.hasobject:
        raise ModelError(f"{source}: tensor {quoted(key)} holds Python objects ({dtype}), which are not read; "
                         f"save numeric arrays, {RESAVE}")
    count = element_count(shape)
    declared = info.file_size - header_size
    if count * dtype.itemsize != declared:
        raise ModelError(f"{source}: tensor {quoted(key)} declares shape {shape_text(shape)} of {dtype} "
                         f"({count * dtype.itemsize} bytes) but its archive member holds {declared} bytes; "
                         f"the file is damaged or was not written by numpy; {RESAVE}")
    budget.tensor(key, shape, max(8, dtype.itemsize) * count)
    return shape, dtype


def read_npz_arrays(source: str, fileobj: str | Path | IO[bytes], wanted=None,
                    budget: ModelBudget | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (a path or an open file) whose names ``wanted(names)`` picks
    (all by default), each checked by :func:`checked_npy_member` before it is read."""
    budget = budget or ModelBudget(source)
    try:
        with zipfile.ZipFile(fileobj) as archive:
            members = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
            names = wanted(list(members)) if wanted else list(members)
            for name in names:
                checked_npy_member(archive, members[name], name, source, budget)
            arrays = {}
            for name in names:
                with archive.open(members[name]) as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    except READ_ERRORS as exc:
        raise ModelError(f"{source}: not a readable .npz ({one_line(exc)}); {RESAVE}") from None
    return arrays


def _kernel_and_bias_names(names: list[str]) -> list[str]:
    """The members a network is read from: ``kernel_N`` (or ``arr_N``) and ``bias_N``."""
    kernels = _numbered(names, "kernel_") or _numbered(names, "arr_")
    return kernels + (_numbered(names, "bias_") if kernels else [])


def load_npz_weights(path: Path) -> NetworkWeights:
    """Kernels from an ``.npz``: ``arr_0, arr_1, ...`` (``numpy.savez(*kernels)``) or
    ``kernel_0, ...`` with optional ``bias_0, ...`` (what ``make models`` writes)."""
    arrays = read_npz_arrays(str(path), path, _kernel_and_bias_names)
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
