"""Activations of an ONNX model (method.md §3.6), run by onnxruntime with the unit tensors added
to the graph's outputs: the tensor each dense layer of a chain reads, or every MLP's hidden units
of a transformer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.enums import Architecture
from ..errors import ModelError
from .loader import load_weights
from .onnx_transformer import is_attention_graph, mlp_unit_tensors
from .units import UnitRunner


class _OnnxRun:
    """An onnxruntime session of a model with its unit tensors as outputs (built on first use,
    so the runner pickles as the model's bytes)."""

    def __init__(self, model_bytes: bytes, input_name: str, outputs: Sequence[str], dtype=np.float32,
                 source: str = ""):
        self.model_bytes, self.input_name, self.outputs = model_bytes, input_name, list(outputs)
        self.dtype, self.source = dtype, source
        self._session = None

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(self.model_bytes, options,
                                                         providers=["CPUExecutionProvider"])
        try:
            values = self._session.run(self.outputs, {self.input_name: np.asarray(x, self.dtype)})
        except Exception as exc:  # onnxruntime raises its own error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.source}: onnxruntime cannot run the model on these inputs ({first}); give inputs "
                             "of the shape and type the model was exported for") from None
        return [v.reshape(-1, v.shape[-1]) for v in values]  # (batch, tokens, units): every token an example

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_session": None}


def _onnx_transformer_runner(model, source: str) -> UnitRunner:
    """Every MLP's hidden units of a transformer in an ONNX file, token by token."""
    graph = model.graph
    units = mlp_unit_tensors(graph, source, numpy_helper.to_array)
    constants = {t.name for t in graph.initializer}
    inp = next(i for i in graph.input if i.name not in constants)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 2:
        raise ModelError(f"{source}: input {inp.name!r} has shape {dims}; activation graphs of transformers read token "
                         "ids of shape (sequences, tokens)")
    known = {o.name for o in graph.output}
    graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t, _, _ in units
                        if t not in known)
    dtype = helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
    run = _OnnxRun(model.SerializeToString(), inp.name, [t for t, _, _ in units], dtype, source)
    return UnitRunner(tuple(n for _, n, _ in units), tuple(s for _, _, s in units), dims[1], run, source,
                      tokens=True, batch=dims[0])


def onnx_unit_runner(path: Path, outputs: bool) -> UnitRunner:
    """A :class:`UnitRunner` for an ONNX file: a transformer's MLP units, or the hidden layers of
    a chain of dense layers (``outputs``: the last layer's too), read first as the weight reader
    reads the file (sizes and external data checked); anything else is one error."""
    weights = load_weights(path)  # every tensor checked (sizes, external data) before onnx reads the file
    source = weights.source or str(path)
    model = onnx.load(str(path))
    if is_attention_graph(model.graph):
        return _onnx_transformer_runner(model, source)
    if weights.kind != Architecture.MLP or weights.wiring is not None:
        raise ModelError(f"{source}: activation graphs of ONNX files are built for chains of dense layers (Gemm or "
                         f"MatMul); this is a {weights.kind}{' with skip connections' if weights.wiring else ''}")
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    dense = [n for n in graph.node if n.op_type in ("Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in constants]
    if len(dense) != len(weights.kernels):
        raise ModelError(f"{source}: {len(dense)} Gemm/MatMul nodes with weights for {len(weights.kernels)} dense layers; "
                         "activation graphs of ONNX files are built for chains of dense layers")
    tensors = [n.input[0] for n in dense[1:]] + ([graph.output[0].name] if outputs else [])
    if not tensors:
        raise ModelError(f"{source}: one dense layer has no hidden units; pass outputs=True")
    known = {o.name for o in graph.output}
    graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors if t not in known)
    inputs = [i for i in graph.input if i.name not in constants]
    dims = inputs[0].type.tensor_type.shape.dim
    if dims:
        dims[0].dim_param = "batch"  # a batch of any size (exporters often fix it at 1)
    keep = range(len(tensors))
    return UnitRunner(tuple(weights.layer_name(i) for i in keep),
                      tuple(int(weights.kernels[i].shape[1]) for i in keep), int(weights.kernels[0].shape[0]),
                      _OnnxRun(model.SerializeToString(), inputs[0].name, tensors), source)
