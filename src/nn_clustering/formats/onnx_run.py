"""Activations of an ONNX model (method.md §3.6), run by onnxruntime with the unit tensors added
to the graph's outputs: the tensor each dense layer of a chain reads, each conv layer's output
after its activation (a channel's mean over positions), or every MLP's hidden units of a
transformer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.enums import Architecture
from ..core.graph import group_names
from ..errors import ModelError
from .loader import load_weights
from .onnx_transformer import is_attention_graph, mlp_unit_tensors
from .units import UnitRunner


class _OnnxRun:
    """An onnxruntime session of a model with its unit tensors as outputs, built on first use."""

    def __init__(self, model_bytes: bytes, input_name: str, outputs: Sequence[str], dtype=np.float32,
                 source: str = "", shape: tuple[int, ...] | None = None):
        self.model_bytes, self.input_name, self.outputs = model_bytes, input_name, list(outputs)
        self.dtype, self.source, self.shape = dtype, source, shape
        self._session = None

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(self.model_bytes, options,
                                                         providers=["CPUExecutionProvider"])
        x = np.asarray(x, self.dtype)
        if self.shape is not None:  # flattened examples back into the model's input layout
            x = x.reshape((-1, *self.shape))
        try:
            values = self._session.run(self.outputs, {self.input_name: x})
        except Exception as exc:  # onnxruntime raises its own error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.source}: onnxruntime cannot run the model on these inputs ({first}); give inputs "
                             "of the shape and type the model was exported for") from None
        # (batch, channels, height, width): each channel's mean over positions; (batch, tokens, units):
        # every token an example
        return [v.mean(axis=(2, 3)) if v.ndim == 4 else v.reshape(-1, v.shape[-1]) for v in values]


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


#: Operators that act on each unit alone: a layer's units are read after the last of them.
UNITWISE = frozenset({"Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Clip", "Sigmoid", "Tanh", "HardSigmoid",
                      "HardSwish", "Gelu", "Softplus", "BatchNormalization", "Identity"})


def _after_activation(graph, tensor: str, constants: set[str]) -> str:
    """The tensor a layer's output becomes after the unit-wise operators that alone read it (its
    activation, a batch norm, a bias added as a constant)."""
    while True:
        readers = [n for n in graph.node if tensor in n.input]
        if len(readers) != 1 or len(readers[0].output) != 1:
            return tensor
        node = readers[0]
        bias = node.op_type in ("Add", "Mul") and all(i == tensor or i in constants for i in node.input)
        if node.op_type not in UNITWISE and not bias:
            return tensor
        tensor = node.output[0]


def _dense_or_conv_tensors(graph, weights, constants: set[str], outputs: bool, source: str) -> tuple[list[str], list]:
    """The unit tensors of a chain of dense layers (what each next layer reads) or of a CNN (each
    conv layer's output after its activation), and the kernels of those layers."""
    if weights.kind == Architecture.CNN:
        convs = [n for n in graph.node if n.op_type == "Conv"]
        if len(convs) != len(weights.conv_kernels):
            raise ModelError(f"{source}: {len(convs)} Conv nodes for {len(weights.conv_kernels)} conv layers; activation "
                             "graphs of ONNX CNNs are built for chains of convolutions")
        return [_after_activation(graph, n.output[0], constants) for n in convs], weights.conv_kernels
    dense = [n for n in graph.node if n.op_type in ("Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in constants]
    if len(dense) != len(weights.kernels):
        raise ModelError(f"{source}: {len(dense)} Gemm/MatMul nodes with weights for {len(weights.kernels)} dense layers; "
                         "activation graphs of ONNX files are built for chains of dense layers")
    tensors = [n.input[0] for n in dense[1:]] + ([graph.output[0].name] if outputs else [])
    if not tensors:
        raise ModelError(f"{source}: one dense layer has no hidden units; pass outputs=True")
    return tensors, weights.kernels[: len(tensors)]


def onnx_unit_runner(path: Path, outputs: bool) -> UnitRunner:
    """A :class:`UnitRunner` for an ONNX file: a transformer's MLP units, a CNN's conv channels
    (each one's mean over positions), or the hidden layers of a chain of dense layers
    (``outputs``: the last layer's too), the file read first as the weight reader reads it
    (sizes and external data checked); anything else is one error."""
    weights = load_weights(path)  # every tensor checked (sizes, external data) before onnx reads the file
    source = weights.source or str(path)
    model = onnx.load(str(path))
    if is_attention_graph(model.graph):
        return _onnx_transformer_runner(model, source)
    if weights.wiring is not None:
        raise ModelError(f"{source}: activation graphs of ONNX files are built for chains of layers (dense or conv) "
                         "and transformers; this network has skip connections or concatenations")
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    tensors, kernels = _dense_or_conv_tensors(graph, weights, constants, outputs, source)
    known = {o.name for o in graph.output}
    graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors if t not in known)
    inp = next(i for i in graph.input if i.name not in constants)
    dims = inp.type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    if not all(shape):
        if weights.kind == Architecture.CNN:
            raise ModelError(f"{source}: input {inp.name!r} has no fixed image size; export the model with one")
        shape = (int(weights.kernels[0].shape[0]),)
    if dims:
        dims[0].dim_param = "batch"  # a batch of any size (exporters often fix it at 1)
    names = group_names(weights) if weights.kind == Architecture.CNN else [weights.layer_name(i) for i in
                                                                           range(len(tensors))]
    return UnitRunner(tuple(names), tuple(int(k.shape[-1]) for k in kernels), int(np.prod(shape)),
                      _OnnxRun(model.SerializeToString(), inp.name, tensors, source=source, shape=shape), source)
