"""Sequential MLPs and CNNs from PyTorch ``state_dict`` files: ``.safetensors`` (header parsed
here, every tensor's dtype, shape and byte range checked before it is read) or
``torch.save(model.state_dict(), ...)`` files (``.pt``/``.pth``: PyTorch's zip format read
without PyTorch by :mod:`~nn_clustering.formats.torch_pickle`; the legacy format needs PyTorch,
an optional extra). bfloat16 tensors are upcast exactly to float32; complex tensors are
refused with one line naming the tensor.

A state_dict holds parameters by module path, not the order of the forward pass. The order is
taken from the module paths, numbers compared as numbers (``0, 2, 10`` as in an
``nn.Sequential``, ``fc1, fc2``), and accepted only when the layers' widths chain in that order
(each layer's inputs equal to the previous one's outputs, or a conv stack followed by a dense
head). Anything the file cannot tell, a batch normalisation (before or after its activation?)
or layers whose order does not chain, gets one line that says to export the model to ONNX
instead. PyTorch's layouts are converted: ``Linear`` (out, in) to (in, out), ``Conv2d``
(out, in, h, w) to (h, w, in, out).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ..core.graph import NetworkWeights, network_kind
from ..errors import ModelError, quoted
from .dtypes import EXPORT_HINT, bfloat16_to_float32, complex_refusal
from .limits import ModelBudget, element_count, format_size, one_line, shape_text
from .torch_pickle import read_torch_zip
from .wiring import ungrouped


def _natural_key(path: str) -> tuple:
    """Module path compared with numbers as numbers: ``layers.10`` after ``layers.2``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", path) if p)


#: safetensors dtypes read, with their numpy type (``BF16`` is upcast exactly to float32).
SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
COMPLEX_DTYPES = frozenset({"C64", "C128", "COMPLEX64", "COMPLEX128"})
#: The longest safetensors JSON header read (the ``safetensors`` package's own bound).
MAX_SAFETENSORS_HEADER = 100_000_000
SAVE_SAFETENSORS = "re-save it with safetensors.torch.save_file(model.state_dict(), path)"


def _safetensors_entry(source: str, name: str, entry, data_size: int) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry, after checking that it is well formed,
    real and numeric, and that its ``data_offsets`` lie inside the file and hold exactly its
    shape's bytes."""
    if not isinstance(entry, dict):
        raise ModelError(f"{source}: tensor {quoted(name)} has no dtype/shape/data_offsets entry; {SAVE_SAFETENSORS}")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype in COMPLEX_DTYPES:
        raise complex_refusal(source, name, dtype)
    if dtype not in SAFETENSORS_DTYPES:
        raise ModelError(f"{source}: tensor {quoted(name)} has dtype {quoted(dtype)}, which is not read (supported: "
                         f"{', '.join(SAFETENSORS_DTYPES)}); save the weights as float32")

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(shape, list) or not all(whole(d) for d in shape):
        raise ModelError(f"{source}: tensor {quoted(name)} has shape {quoted(shape)}, not a list of sizes; {SAVE_SAFETENSORS}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(whole(o) for o in offsets)
            and offsets[0] <= offsets[1] <= data_size):
        raise ModelError(f"{source}: tensor {quoted(name)} has data_offsets {quoted(offsets)} outside the file's "
                         f"{data_size} data bytes; the file is damaged; {SAVE_SAFETENSORS}")
    needed = element_count(shape) * np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
    if offsets[1] - offsets[0] != needed:
        raise ModelError(f"{source}: tensor {quoted(name)} declares shape {shape_text(shape)} of {dtype} ({needed} "
                         f"bytes) but its data_offsets {offsets} hold {offsets[1] - offsets[0]} bytes; the file "
                         f"is damaged; {SAVE_SAFETENSORS}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def read_safetensors(path: str | Path, budget: ModelBudget | None = None) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file, read without the ``safetensors`` package: the
    8-byte header length and the JSON header are parsed and every tensor's dtype, shape and
    ``data_offsets`` checked (:func:`_safetensors_entry`, and against the memory limit)
    before any tensor is read. bfloat16 is upcast exactly to float32; complex is refused."""
    source = str(path)
    budget = budget or ModelBudget(source)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= min(size - 8, MAX_SAFETENSORS_HEADER):
            raise ModelError(f"{source}: not a readable safetensors file (its header length {length} does not fit "
                             f"the file of {size} bytes or passes {MAX_SAFETENSORS_HEADER}); {SAVE_SAFETENSORS}")
        budget.bytes(f"its {format_size(length)} JSON header", 16 * length)
        try:
            header = json.loads(f.read(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ModelError(f"{source}: not a readable safetensors file (its header is not JSON: "
                             f"{one_line(exc)}); {SAVE_SAFETENSORS}") from None
        if not isinstance(header, dict):
            raise ModelError(f"{source}: not a readable safetensors file (its header is not a JSON object); "
                             f"{SAVE_SAFETENSORS}")
        entries = {name: _safetensors_entry(source, name, entry, size - 8 - length)
                   for name, entry in header.items() if name != "__metadata__"}
        for name, (_, shape, _, _) in entries.items():
            budget.tensor(name, shape)
        tensors = {}
        for name, (dtype, shape, begin, end) in entries.items():
            f.seek(8 + length + begin)
            data = f.read(end - begin)
            if len(data) != end - begin:
                raise ModelError(f"{source}: tensor {quoted(name)} is cut short; the file is truncated; {SAVE_SAFETENSORS}")
            array = np.frombuffer(data, SAFETENSORS_DTYPES[dtype])
            tensors[name] = (bfloat16_to_float32(array) if dtype == "BF16" else array).reshape(shape)
    return tensors


def load_safetensors_weights(path: str | Path) -> NetworkWeights:
    """A state_dict saved with ``safetensors`` (``safetensors.torch.save_file(model.state_dict(), path)``),
    read by :func:`read_safetensors`."""
    return weights_of_state_dict(read_safetensors(path), str(path))


def load_torch_weights(path: str | Path) -> NetworkWeights:
    """A ``torch.save(model.state_dict(), path)`` file: PyTorch's zip format is read without
    PyTorch (:mod:`~nn_clustering.formats.torch_pickle`); the legacy format (before PyTorch
    1.6) needs PyTorch, and each tensor's size is checked against the memory limit before it
    is converted."""
    if zipfile.is_zipfile(path):
        return weights_of_state_dict(read_torch_zip(path), str(path))
    try:
        import torch
    except ImportError:
        raise ModelError(f"{path}: reading PyTorch files of the legacy (non-zip) format needs PyTorch (pip install "
                         "'nn-clustering[torch]'); or re-save the state_dict with torch.save (PyTorch 1.6 or later), "
                         "or save it with safetensors.torch.save_file, or " + EXPORT_HINT) from None
    budget = ModelBudget(path)
    budget.bytes("the file", 2 * os.path.getsize(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors of many kinds
        raise ModelError(f"{path}: not a readable state_dict ({type(exc).__name__}); save "
                         "model.state_dict() with torch.save, or " + EXPORT_HINT) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: holds a {type(state).__name__}, not a state_dict of tensors; save "
                         "model.state_dict(), or " + EXPORT_HINT)
    for key, value in state.items():
        if value.is_complex():
            raise complex_refusal(str(path), key, value.dtype)
        budget.tensor(key, tuple(value.shape))
    return weights_of_state_dict({k: v.detach().cpu().double().numpy() for k, v in state.items()}, str(path))


def _modules(tensors: dict[str, np.ndarray], source: str) -> dict[str, dict[str, np.ndarray]]:
    """Parameters grouped by module path, in module-path order (numbers as numbers)."""
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        value = np.asarray(value)
        if np.iscomplexobj(value):
            raise complex_refusal(source, key, value.dtype)
        module, _, param = key.rpartition(".")
        modules.setdefault(module, {})[param] = value
    norms = [m for m, p in modules.items() if "running_mean" in p or "running_var" in p]
    if norms:
        raise ModelError(f"{source}: holds batch normalisation {norms[0]!r}; a state_dict cannot say whether "
                         f"it sits before or after its activation, so it cannot be folded; {EXPORT_HINT}")
    for module, params in modules.items():
        if "weight" not in params:
            raise ModelError(f"{source}: module {module!r} has parameters {sorted(params)} but no weight; "
                             f"only Linear, Conv and norm layers can be read from a state_dict; {EXPORT_HINT}")
    return {m: modules[m] for m in sorted(modules, key=_natural_key)}


def _dense_layout(modules: dict[str, dict[str, np.ndarray]], source: str) -> str:
    """``"out_in"`` (PyTorch's ``Linear``) or ``"in_out"`` (Hugging Face's ``Conv1D``) for the
    file's 2-D weights, told by the bias lengths: a bias as long as the weight's first axis
    only is a Linear's, as long as its second axis only a Conv1D's; a bias as long as neither
    is refused, and a file whose biases say both is read layer by layer."""
    said = set()
    for module, params in modules.items():
        w, bias = params["weight"], params.get("bias")
        if w.ndim != 2 or bias is None:
            continue
        if bias.size not in w.shape:
            raise ModelError(f"{source}: module {module!r} has a weight of shape {shape_text(w.shape)} but a bias of "
                             f"{bias.size} values; the file's tensors do not belong together")
        if w.shape[0] != w.shape[1]:
            said.add("out_in" if bias.size == w.shape[0] else "in_out")
    return said.pop() if len(said) == 1 else "out_in"


def _kernel(module: str, params: dict[str, np.ndarray], layout: str, source: str) -> np.ndarray:
    """A module's weight in the project's (in, out) or (*spatial, in / groups, out) layout."""
    w, bias = params["weight"].astype(np.float64), params.get("bias")
    if w.ndim == 2:
        own = layout if bias is None or w.shape[0] == w.shape[1] else "out_in" if bias.size == w.shape[0] else "in_out"
        return w if own == "in_out" else w.T
    if w.ndim in (3, 4, 5):
        if bias is not None and bias.size != w.shape[0]:
            raise ModelError(f"{source}: module {module!r} has {w.shape[0]} output channels but a bias of "
                             f"{bias.size} values; the file's tensors do not belong together")
        return w.transpose(*range(2, w.ndim), 1, 0)
    raise ModelError(f"{source}: module {module!r} has a {w.ndim}-D weight {w.shape}; only Linear, Conv1D "
                     f"and Conv1d-3d layers and norms can be read; {EXPORT_HINT}")


def weights_of_state_dict(tensors: dict[str, np.ndarray], source: str) -> NetworkWeights:
    """Kernels and biases of a sequential network from its parameters by module path: Linear
    and Hugging Face Conv1D layers, 1-D to 3-D convolutions (grouped ones recognised by the
    chain), and norm layers (a 1-D weight: LayerNorm, GroupNorm), whose per-unit scale
    multiplies the rows of the next layer (method.md §3.3)."""
    modules = _modules(tensors, source)
    layout = _dense_layout(modules, source)
    layers, pending = [], None
    for module, params in modules.items():
        if params["weight"].ndim == 1:
            pending = params["weight"].astype(np.float64) * (1.0 if pending is None else pending)
            continue
        kernel = _ungroup(module, _kernel(module, params, layout, source), layers, source)
        if pending is not None:
            if pending.size != kernel.shape[-2]:
                raise ModelError(f"{source}: the norm before module {module!r} scales {pending.size} units but "
                                 f"{module!r} reads {kernel.shape[-2]}; the layer order cannot be known; {EXPORT_HINT}")
            kernel, pending = kernel * pending[:, None], None
        bias = params.get("bias")
        layers.append((module, kernel, np.zeros(kernel.shape[-1]) if bias is None else bias.astype(np.float64).reshape(-1)))
    if not layers:
        raise ModelError(f"{source}: holds no weight matrices or kernels; save model.state_dict()")
    _check_order(layers, source)
    kernels = [k.reshape(1, -1, *k.shape[-2:]) if k.ndim in (3, 5) else k for _, k, _ in layers]
    return NetworkWeights(kernels, [b for _, _, b in layers], network_kind(kernels, source), source,
                          [m for m, _, _ in layers])


def _ungroup(module: str, kernel: np.ndarray, layers: list, source: str) -> np.ndarray:
    """A convolution reading fewer channels than the previous layer writes is grouped: each of
    ``groups`` = previous outputs / its inputs groups reads its own slice (depthwise: one
    channel each); its block-diagonal full kernel (:func:`~.wiring.ungrouped`)."""
    if kernel.ndim < 3 or not layers or layers[-1][1].ndim < 3:
        return kernel
    n_prev, per_in, n_out = layers[-1][1].shape[-1], kernel.shape[-2], kernel.shape[-1]
    if per_in == n_prev or n_prev % per_in or n_out % (n_prev // per_in):
        return kernel
    return ungrouped(kernel, n_prev // per_in, lambda text: ModelError(f"{source}: module {module!r} {text}"))


def _check_order(layers: list[tuple[str, np.ndarray, np.ndarray]], source: str) -> None:
    """The layers, ordered by module path, must chain: a conv's input channels (or a dense
    layer's inputs) equal to the previous layer's outputs; a dense layer after a conv reads
    its flattened or pooled feature map (any width that is a multiple of the channels)."""
    for (prev, a, _), (name, b, _) in zip(layers, layers[1:], strict=False):
        n_out, n_in = a.shape[-1], b.shape[-2]
        flattening = a.ndim >= 3 and b.ndim == 2
        if (flattening and n_in % n_out) or (not flattening and n_in != n_out):
            raise ModelError(
                f"{source}: the layer order cannot be known from the file: in module-path order {prev!r} "
                f"({n_out} outputs) comes before {quoted(name)} ({n_in} inputs), which do not chain; {EXPORT_HINT}"
            )
