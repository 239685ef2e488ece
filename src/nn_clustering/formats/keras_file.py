"""What a saved Keras model declares, checked against the memory limit before Keras is imported.

A ``.keras`` file is a zip archive: the declared (uncompressed) sizes of ``config.json``,
``metadata.json`` and the weights member are counted first, before anything is decompressed;
then the shape of every dataset of ``model.weights.h5`` (read from the HDF5 metadata with
``h5py``, through the archive without extracting it) or every array of ``model.weights.npz``
(from its ``.npy`` headers). A legacy ``.h5`` file's datasets are counted the same way (a
gzip-filtered dataset can inflate a thousandfold). The model's configuration is counted too:
Keras builds every layer, allocating its variables, before it reads any weight, so the kernel of
each Dense, Conv (depthwise and separable included) and Embedding layer whose configuration
gives its size is counted as well.
Each count is a tensor's size as float64 (:class:`~nn_clustering.formats.limits.ModelBudget`).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .dtypes import complex_refusal
from .limits import ModelBudget, element_count, format_size, one_line
from .npz import READ_ERRORS, checked_npy_member

RESAVE = "re-save it with model.save()"
#: The members Keras reads into memory, and the factor by which each grows when parsed.
IN_MEMORY_MEMBERS = {"config.json": 16, "metadata.json": 16, "model.weights.h5": 1, "model.weights.npz": 1}
MAX_CONFIG = 64 << 20


def _hdf5_datasets(handle, source: str, budget: ModelBudget, where: str) -> None:
    """Count every dataset of an open HDF5 file by its declared shape (no data is read)."""
    import h5py

    found: list[tuple[str, tuple[int, ...], np.dtype]] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append((name, tuple(obj.shape or ()), obj.dtype))

    handle.visititems(visit)
    for name, shape, dtype in found:
        if dtype.kind == "c":
            raise complex_refusal(source, f"{where}{name}", dtype)
        budget.tensor(f"{where}{name}", shape, max(8, dtype.itemsize) * element_count(shape), "dataset")


def _shape(value) -> list[int] | None:
    """A shape from a configuration (``[null, 784]``), None where it is not one."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        value = value[0]  # a layer with several inputs: its first
    if not isinstance(value, list):
        return None
    return [v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 1 for v in value]


def _kernel_shapes(kind: str, config: dict, input_shape: list[int] | None) -> list[tuple[int, ...]]:
    """The kernels that Keras would allocate for a layer, from its configuration (a separable
    convolution has two); none where the configuration does not say."""
    def size(key: str) -> int | None:
        v = config.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None

    if kind == "Embedding" and size("input_dim") is not None and size("output_dim") is not None:
        return [(size("input_dim"), size("output_dim"))]
    if not input_shape:
        return []
    channels = input_shape[1] if config.get("data_format") == "channels_first" and len(input_shape) > 1 \
        else input_shape[-1]
    if kind == "Dense" and size("units") is not None:
        return [(channels, size("units"))]
    window = config.get("kernel_size")
    window = [window] if isinstance(window, int) else window
    if not (isinstance(window, list) and all(isinstance(w, int) and not isinstance(w, bool) and w >= 0
                                             for w in window)):
        return []
    multiplier = size("depth_multiplier") or 1
    if kind.startswith("DepthwiseConv"):
        return [(*window, channels, multiplier)]
    if kind.startswith("SeparableConv") and size("filters") is not None:
        return [(*window, channels, multiplier), (1,) * len(window) + (channels * multiplier, size("filters"))]
    if kind.startswith("Conv") and size("filters") is not None:
        return [(*window, channels, size("filters"))]
    return []


def _config_kernels(config, source: str, budget: ModelBudget) -> None:
    """Count the kernel of every layer in a model configuration whose size it gives."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            kind, layer = item.get("class_name"), item.get("config")
            if isinstance(kind, str) and isinstance(layer, dict):
                build = item.get("build_config")
                shapes = _kernel_shapes(kind, layer, _shape(build.get("input_shape")) if isinstance(build, dict)
                                        else None)
                for shape in shapes:
                    budget.tensor(f"{layer.get('name', kind)}", shape, what="the kernel of layer")
            stack.extend(item.values())


def _parse_config(text: bytes | str, source: str, where: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ModelError(f"{source}: its {where} is not JSON ({one_line(exc)}); {RESAVE}") from None


def check_keras_archive(path: Path, budget: ModelBudget) -> None:
    """The checks of the module docstring for a ``.keras`` zip archive."""
    import h5py

    source = str(path)
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        for name, factor in IN_MEMORY_MEMBERS.items():
            if name in infos:
                budget.bytes(f"its member {name} ({format_size(infos[name].file_size)} declared)",
                             factor * infos[name].file_size)
        if "config.json" in infos:
            if infos["config.json"].file_size > MAX_CONFIG:
                raise ModelError(f"{source}: its config.json declares {format_size(infos['config.json'].file_size)}, "
                                 f"more than a model's configuration needs; {RESAVE}")
            _config_kernels(_parse_config(archive.read("config.json"), source, "config.json"), source, budget)
        if "model.weights.h5" in infos:
            with archive.open("model.weights.h5") as member, h5py.File(member, "r") as handle:
                _hdf5_datasets(handle, source, budget, "model.weights.h5/")
        if "model.weights.npz" in infos:
            with archive.open("model.weights.npz") as member, zipfile.ZipFile(member) as weights:
                for info in weights.infolist():
                    if info.filename.endswith(".npy"):
                        checked_npy_member(weights, info, f"model.weights.npz/{info.filename[:-4]}", source,
                                           budget)


def check_keras_file(path: str | Path, budget: ModelBudget | None = None) -> None:
    """Check a ``.keras`` archive or legacy ``.h5`` model against the memory limit before Keras
    is imported (see the module docstring); a damaged file is one line."""
    import h5py

    path = Path(path)
    source = str(path)
    budget = budget or ModelBudget(source)
    try:
        if zipfile.is_zipfile(path):
            check_keras_archive(path, budget)
        elif h5py.is_hdf5(path):
            with h5py.File(path, "r") as handle:
                config = handle.attrs.get("model_config")
                if config is not None:
                    _config_kernels(_parse_config(config, source, "model_config"), source, budget)
                _hdf5_datasets(handle, source, budget, "")
    except ModelError:
        raise
    except (*READ_ERRORS, KeyError) as exc:
        raise ModelError(f"{source}: cannot be read as a Keras model ({type(exc).__name__}: {one_line(exc)}); "
                         f"{RESAVE}") from None
