"""Model files for the reader tests, built without PyTorch: ONNX graphs with ``onnx.helper``,
state_dicts with ``safetensors.numpy``, Keras models with their weights set from arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def float32(rng: np.random.Generator, *shape: int, sparsity: float = 0.5) -> np.ndarray:
    """Random float32 weights with a share of exact zeros (every reader then sees equal values)."""
    w = rng.normal(size=shape).astype(np.float32)
    w[rng.random(shape) < sparsity] = 0.0
    return w


def save_onnx(path: Path, nodes: list, weights: dict, input_shape: list, output: str) -> Path:
    """An ONNX model of ``nodes`` with ``weights`` as initialisers, input ``x``, output ``output``:
    arrays are stored as float32, ``TensorProto`` values (complex, external or forged ones) as
    they are."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [v if isinstance(v, TensorProto) else numpy_helper.from_array(np.asarray(v, np.float32), name=k)
         for k, v in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def onnx_mlp(path: Path, kernels: list[np.ndarray], biases: list[np.ndarray]) -> Path:
    """An MLP as PyTorch exports it: Gemm (transB = 1, weights (out, in)) and Relu."""
    from onnx import helper

    nodes, weights, x = [], {}, "x"
    for i, (k, b) in enumerate(zip(kernels, biases, strict=True)):
        weights[f"fc{i}.weight"], weights[f"fc{i}.bias"] = k.T, b
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [f"h{i}"], transB=1))
        x = f"h{i}"
        if i < len(kernels) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    return save_onnx(path, nodes, weights, [1, kernels[0].shape[0]], x)


def onnx_conv(name: str, x: str, kernel: np.ndarray, bias: np.ndarray, out: str, weights: dict) -> object:
    """A Conv node from a Keras-layout (h, w, in, out) kernel, stored as ONNX's OIHW."""
    from onnx import helper

    weights[f"{name}.weight"], weights[f"{name}.bias"] = kernel.transpose(3, 2, 0, 1), bias
    pad = kernel.shape[0] // 2
    return helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [out], name=name,
                            pads=[pad] * 4, kernel_shape=list(kernel.shape[:2]))
