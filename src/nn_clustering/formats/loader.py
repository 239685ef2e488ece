"""One way in for a network's weights: a file path, a Keras model, a list of arrays or the
weights type itself, converted by :func:`as_weights`.

A file's format is told by its first bytes where they say it, else by its suffix
(:func:`file_format`): ``.npz`` (:mod:`~nn_clustering.formats.npz`), ``.keras``/``.h5``
(:mod:`nn_clustering.formats.keras`, which imports Keras only when such a file is read),
``.onnx`` (:mod:`~nn_clustering.formats.onnx`), ``.safetensors`` and PyTorch ``.pt``/``.pth``
state_dicts (:mod:`~nn_clustering.formats.state_dict`, PyTorch's zip files read without PyTorch
by :mod:`~nn_clustering.formats.torch_pickle`); a Hugging Face checkpoint folder (``config.json``
with safetensors weights) holds a transformer (:mod:`~nn_clustering.formats.hf`). A path is first checked to be a readable regular
file (:func:`check_model_path`); every reader then checks the sizes a file declares
against the memory limit of :mod:`~nn_clustering.formats.limits` before it allocates anything.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core.graph import NetworkWeights
from ..errors import ModelError
from .hf import is_checkpoint_folder, load_checkpoint_weights
from .keras import load_keras_weights, read_keras_model, weights_of_keras_model
from .npz import READ_ERRORS, load_npz_weights
from .onnx import load_onnx_weights
from .state_dict import load_safetensors_weights, load_torch_weights

SUFFIXES = {".npz": "npz", ".keras": "keras", ".h5": "keras", ".onnx": "onnx",
            ".safetensors": "safetensors", ".pt": "torch", ".pth": "torch"}
#: The reader of each format.
READERS: dict[str, Callable[[Path], NetworkWeights]] = {
    "npz": load_npz_weights, "keras": load_keras_weights, "onnx": load_onnx_weights,
    "safetensors": load_safetensors_weights, "torch": load_torch_weights,
}
FORMATS_HINT = "pass a .npz of kernels, a .keras model, an .onnx file or a PyTorch state_dict (.safetensors, .pt)"
NOT_FOUND_HINT = "check the path or train it with `make models`"


def check_model_path(path: str | os.PathLike) -> Path:
    """``path`` if it is a regular file this process can read; else one :class:`ModelError`
    line that tells a missing file, a dangling link, a symbolic link loop, a folder, a
    device/pipe/``/proc`` file and a file that cannot be read apart."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelError(f"{path} is a symbolic link loop; point it at a model file") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if path.is_symlink():
                raise ModelError(f"{path} is a symbolic link to {os.readlink(path)!r}, which does not exist; "
                                 "point it at a model file") from None
            raise ModelError(f"{path} not found; {NOT_FOUND_HINT}") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ModelError(f"{path} cannot be read (permission denied on a folder of its path); "
                             "check the folders' permissions") from None
        raise ModelError(f"{path} cannot be read ({exc.strerror}); check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise ModelError(f"{path} is a folder without a config.json; pass a model file inside it, or a Hugging "
                         "Face checkpoint folder")
    real = os.path.realpath(path)
    pseudo = any(real == root or real.startswith(root + "/") for root in ("/proc", "/sys"))
    if not stat.S_ISREG(info.st_mode) or pseudo:
        raise ModelError(f"{path} is not a regular file (a device, pipe or /proc file); pass a model file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ModelError(f"{path} cannot be read (permission denied); check its permissions") from None
        raise ModelError(f"{path} cannot be read ({exc.strerror}); check the path") from None
    os.close(fd)
    if info.st_size == 0:
        raise ModelError(f"{path} is empty; re-save the model")
    return path


def sniff_format(path: Path) -> str | None:
    """The format that a file's first bytes show: a zip archive's members tell ``npz``,
    ``keras`` or ``torch``; HDF5 is ``keras``; a length-prefixed JSON header is ``safetensors``;
    a bare pickle is ``torch``. None where the bytes do not say (ONNX, a protobuf, has no
    signature)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except READ_ERRORS:
            return None
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if "config.json" in names or "metadata.json" in names:
            return "keras"
        return "npz" if names and all(n.endswith(".npy") for n in names) else None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras"
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"
    return None


def file_format(path: Path) -> str:
    """A model file's format: from its content (:func:`sniff_format`), else its suffix."""
    found = sniff_format(path) or SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ModelError(f"{path}: unknown model format {path.suffix.lower() or '(no suffix)'!r}; {FORMATS_HINT}")
    return found


def load_weights(path: str | Path) -> NetworkWeights:
    """Load weights from any supported model file (:func:`file_format`); a clear error for
    anything else: a path that is not a readable regular file
    (:func:`check_model_path`) or a file whose tensors would pass
    the memory limit (:mod:`~nn_clustering.formats.limits`)."""
    if is_checkpoint_folder(Path(path)):
        return load_checkpoint_weights(path)
    path = check_model_path(path)
    return READERS[file_format(path)](path)


def load_keras_model(path: str | Path):
    """A saved Keras model (not compiled), its path checked first (:func:`check_model_path`;
    reading it: :func:`~nn_clustering.formats.keras.read_keras_model`)."""
    return read_keras_model(check_model_path(path))


def _is_keras_model(obj) -> bool:
    """Whether ``obj`` is a Keras model, without importing Keras when it is not loaded."""
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
        return weights_of_keras_model(network, getattr(network, "name", ""))
    if isinstance(network, Sequence) and not isinstance(network, bytes) and len(network) > 0 and all(
        isinstance(k, np.ndarray) or hasattr(k, "__array__") for k in network
    ):
        return NetworkWeights.from_arrays(network, source="arrays")
    raise ModelError(
        f"cannot read a network from a {type(network).__name__}; pass a model file's path (.npz, .keras, "
        ".onnx, .safetensors, .pt), a Keras model, a list of kernel arrays in layer order, or NetworkWeights"
    )
