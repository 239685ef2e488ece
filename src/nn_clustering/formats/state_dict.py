"""Sequential MLPs and CNNs from PyTorch ``state_dict`` files: ``.safetensors`` (read with
the ``safetensors`` package) or ``torch.save(model.state_dict(), ...)`` files (``.pt``/``.pth``,
read with PyTorch, an optional extra).

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

import re
from pathlib import Path

import numpy as np

from ..core.weights import NetworkWeights, network_kind
from ..errors import ModelError

EXPORT_HINT = ("export the model to ONNX instead: torch.onnx.export(model, example_input, 'model.onnx'), "
               "then pass model.onnx")


def _natural_key(path: str) -> tuple:
    """Module path compared with numbers as numbers: ``layers.10`` after ``layers.2``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", path) if p)


def load_safetensors_weights(path: str | Path) -> NetworkWeights:
    """A state_dict saved with ``safetensors`` (``safetensors.torch.save_file(model.state_dict(), path)``)."""
    try:
        from safetensors.numpy import load_file
    except ImportError as exc:  # pragma: no cover - safetensors is in the locked environment
        raise ModelError(f"{path}: reading .safetensors needs the safetensors package") from exc
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises SafetensorError and others for bad files
        raise ModelError(f"{path}: not a readable safetensors file ({exc}); re-save it with "
                         "safetensors.torch.save_file(model.state_dict(), path)") from None
    return weights_of_state_dict(tensors, str(path))


def load_torch_weights(path: str | Path) -> NetworkWeights:
    """A ``torch.save(model.state_dict(), path)`` file, read with PyTorch (weights only)."""
    try:
        import torch
    except ImportError:
        raise ModelError(f"{path}: reading PyTorch files needs PyTorch (pip install 'nn-clustering[torch]'); "
                         "or save the state_dict with safetensors.torch.save_file, or " + EXPORT_HINT) from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors of many kinds
        raise ModelError(f"{path}: not a readable state_dict ({type(exc).__name__}); save "
                         "model.state_dict() with torch.save, or " + EXPORT_HINT) from None
    if not isinstance(state, dict) or not all(hasattr(v, "numpy") for v in state.values()):
        raise ModelError(f"{path}: holds a {type(state).__name__}, not a state_dict of tensors; save "
                         "model.state_dict(), or " + EXPORT_HINT)
    return weights_of_state_dict({k: v.detach().cpu().double().numpy() for k, v in state.items()}, str(path))


def weights_of_state_dict(tensors: dict[str, np.ndarray], source: str) -> NetworkWeights:
    """Kernels and biases of a sequential network from its parameters by module path."""
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        module, _, param = key.rpartition(".")
        modules.setdefault(module, {})[param] = np.asarray(value)
    norms = [m for m, p in modules.items() if "running_mean" in p or "running_var" in p]
    if norms:
        raise ModelError(f"{source}: holds batch normalisation {norms[0]!r}; a state_dict cannot say whether "
                         f"it sits before or after its activation, so it cannot be folded; {EXPORT_HINT}")
    layers = []
    for module in sorted(modules, key=_natural_key):
        params = modules[module]
        if "weight" not in params:
            raise ModelError(f"{source}: module {module!r} has parameters {sorted(params)} but no weight; "
                             f"only Linear and Conv2d layers can be read from a state_dict; {EXPORT_HINT}")
        w = params["weight"].astype(np.float64)
        if w.ndim == 2:
            kernel = w.T
        elif w.ndim == 4:
            kernel = w.transpose(2, 3, 1, 0)
        else:
            raise ModelError(f"{source}: module {module!r} has a {w.ndim}-D weight {w.shape}; only Linear (2-D) "
                             f"and Conv2d (4-D) layers can be read; {EXPORT_HINT}")
        bias = params.get("bias")
        layers.append((module, kernel, np.zeros(kernel.shape[-1]) if bias is None else bias.astype(np.float64)))
    if not layers:
        raise ModelError(f"{source}: holds no tensors; save model.state_dict()")
    _check_order(layers, source)
    kernels = [k for _, k, _ in layers]
    return NetworkWeights(kernels, [b for _, _, b in layers], network_kind(kernels, source), source,
                          [m for m, _, _ in layers])


def _check_order(layers: list[tuple[str, np.ndarray, np.ndarray]], source: str) -> None:
    """The layers, ordered by module path, must chain: a conv's input channels (or a dense
    layer's inputs) equal to the previous layer's outputs; a dense layer after a conv reads
    its flattened or pooled feature map (any width that is a multiple of the channels)."""
    for (prev, a, _), (name, b, _) in zip(layers, layers[1:], strict=False):
        n_out, n_in = a.shape[-1], b.shape[-2]
        flattening = a.ndim == 4 and b.ndim == 2
        if (flattening and n_in % n_out) or (not flattening and n_in != n_out):
            raise ModelError(
                f"{source}: the layer order cannot be known from the file: in module-path order {prev!r} "
                f"({n_out} outputs) comes before {name!r} ({n_in} inputs), which do not chain; {EXPORT_HINT}"
            )
