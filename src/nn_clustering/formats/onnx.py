"""Networks from ONNX files (what ``torch.onnx.export`` and TensorFlow converters write).

The graph's nodes are walked in order (ONNX stores them topologically sorted) and reported
to a :class:`~nn_clustering.formats.wiring.WiringRecorder`: ``Gemm``/``MatMul`` with a weight
initialiser are dense layers, ``Conv`` a conv layer (OIHW weights turned into Keras' HWIO, so
both frameworks give the same graph), ``BatchNormalization`` is folded into the layer it
directly follows, ``Add``/``Sum`` of two activations is a residual sum (an ``Add`` of a
constant is a bias), ``Concat`` along the channel axis a concatenation, and activations,
pooling, dropout, padding and ``Flatten`` pass units through. Any other operator is refused
with one line naming the node and the operator. Reading needs the ``onnx`` package.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..core.weights import NetworkWeights
from ..errors import ModelError
from .wiring import Units, WiringRecorder

#: Operators that neither mix units nor carry graph weights.
PASS_THROUGH = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Gelu", "Softplus", "Softsign",
    "HardSigmoid", "HardSwish", "Mish", "Clip", "Softmax", "LogSoftmax", "Dropout", "Identity", "MaxPool",
    "AveragePool", "Pad", "Cast",
})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool"})
#: Reductions that pool over spatial axes when the channel axis is kept (PyTorch's exporter
#: writes adaptive average pooling to 1 x 1 as ReduceMean over axes 2 and 3).
REDUCTIONS = frozenset({"ReduceMean", "ReduceMax", "ReduceSum"})
SUPPORTED = sorted(PASS_THROUGH | GLOBAL_POOLS | REDUCTIONS | {
    "Gemm", "MatMul", "Conv", "BatchNormalization", "Add", "Sum", "Concat", "Flatten", "Reshape", "Constant",
})


def _attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _static_shape(value_info) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def load_onnx_weights(path: str | Path) -> NetworkWeights:
    """The weights and wiring of an ONNX model file; a :class:`ModelError` for an unreadable
    file or an operator the graph builder cannot follow."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is in the locked environment
        raise ModelError(f"{path}: reading ONNX files needs the onnx package (pip install onnx)") from exc
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and others for bad files
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__}); re-export it "
                         "with torch.onnx.export") from None
    with contextlib.suppress(Exception):  # shapes only help with Flatten/Reshape sizes
        model = onnx.shape_inference.infer_shapes(model)
    return weights_of_onnx_graph(model.graph, str(path), numpy_helper.to_array)


def weights_of_onnx_graph(graph, source: str, to_array) -> NetworkWeights:
    """Walk an ONNX ``GraphProto`` (see the module docstring)."""
    constants = {t.name: to_array(t).astype(np.float64) for t in graph.initializer}
    shapes = {v.name: _static_shape(v) for v in [*graph.input, *graph.value_info, *graph.output]}
    inputs = [v for v in graph.input if v.name not in constants]
    rec = WiringRecorder(source)
    if len(inputs) != 1:
        raise ModelError(f"{source}: the model has {len(inputs)} inputs; only single-input networks form a graph")
    shape = shapes[inputs[0].name]
    if len(shape) < 2 or shape[1] is None:
        raise ModelError(f"{source}: input {inputs[0].name!r} has shape {shape}; expected (batch, features) "
                         "or (batch, channels, height, width) with a fixed feature or channel count")
    units: dict[str, Units] = {inputs[0].name: rec.input(shape[1])}
    ranks: dict[str, int] = {inputs[0].name: len(shape)}
    readers: dict[str, int] = {}
    producers: dict[str, str] = {}  # tensor -> the node that computed it (for errors)
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1

    def weight(node, i: int) -> np.ndarray:
        if len(node.input) <= i or node.input[i] not in constants:
            raise ModelError(f"{source}: node {_label(node)} ({node.op_type}) takes its weights from a "
                             "computed tensor, not an initialiser; export with constant weights")
        return constants[node.input[i]]

    for node in graph.node:
        op, attrs = node.op_type, _attributes(node)
        out_name = node.output[0]
        if op == "Constant":
            if "value" in attrs:
                constants[out_name] = to_array(attrs["value"]).astype(np.float64)
                continue
            raise ModelError(f"{source}: node {_label(node)} (Constant) holds no tensor value")
        live = [n for n in node.input if n in units]
        if not live and op in ("Identity", "Cast") and node.input[0] in constants:
            constants[out_name] = constants[node.input[0]]  # the legacy exporter's shared weights
            continue
        if not live:
            raise ModelError(f"{source}: node {_label(node)} ({op}) reads no tensor computed from the input; "
                             "fold constant subgraphs before exporting (do_constant_folding=True)")
        x, rank = units[live[0]], ranks[live[0]]
        name = _layer_name(node, constants)
        if op == "Gemm":
            if attrs.get("transA", 0):
                raise ModelError(f"{source}: node {_label(node)} (Gemm) transposes its input (transA=1); "
                                 "only activations times weights are supported")
            w = weight(node, 1)
            kernel = (w.T if attrs.get("transB", 0) else w) * attrs.get("alpha", 1.0)
            bias = weight(node, 2) * attrs.get("beta", 1.0) if len(node.input) > 2 and node.input[2] else None
            out, out_rank = rec.weighted(name, kernel, bias, x, linear=True), 2
        elif op == "MatMul":
            if node.input[0] != live[0] or node.input[1] not in constants:
                raise ModelError(f"{source}: node {_label(node)} (MatMul) must multiply an activation by a "
                                 "weight initialiser")
            out, out_rank = rec.weighted(name, weight(node, 1), None, x, linear=True), rank
        elif op == "Conv":
            w = weight(node, 1)
            if w.ndim != 4:
                raise ModelError(f"{source}: node {_label(node)} (Conv) has a {w.ndim - 2}-D kernel; only 2-D "
                                 "convolutions are supported")
            if attrs.get("group", 1) != 1:
                raise ModelError(f"{source}: node {_label(node)} (Conv) is grouped (group={attrs['group']}); "
                                 "only group=1 is supported")
            bias = weight(node, 2) if len(node.input) > 2 and node.input[2] else None
            out, out_rank = rec.weighted(name, w.transpose(2, 3, 1, 0), bias, x, linear=True), 4
        elif op == "BatchNormalization":
            if attrs.get("training_mode", 0):
                raise ModelError(f"{source}: node {_label(node)} (BatchNormalization) is in training mode; "
                                 "export the model in eval mode (model.eval())")
            gamma, beta, mean, var = (weight(node, i) for i in range(1, 5))
            scale = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
            out = rec.batchnorm(_label(node)[1:-1], x, scale, beta - mean * scale, readers.get(live[0], 0) == 1,
                                after=producers.get(live[0], live[0]))
            out_rank = rank
        elif op in ("Add", "Sum"):
            if len(live) == 1:  # activation + constant: a bias
                others = [n for n in node.input if n != live[0]]
                if op == "Add" and others and others[0] in constants:
                    out = rec.add_bias(x, constants[others[0]])
                else:
                    out = rec.add(name, [x] * len(node.input))
            else:
                out = rec.add(_label(node), [units[n] for n in node.input])
            out_rank = rank
        elif op == "Concat":
            axis = attrs.get("axis", 1)
            if axis not in (1, 1 - rank):
                raise ModelError(f"{source}: node {_label(node)} (Concat) joins along axis {axis}; only the "
                                 "channel axis (1) is supported")
            if len(live) != len(node.input):
                raise ModelError(f"{source}: node {_label(node)} (Concat) joins a constant to activations; "
                                 "not supported")
            out, out_rank = rec.concat(_label(node), [units[n] for n in node.input]), rank
        elif op in ("Flatten", "Reshape"):
            target = shapes.get(out_name)
            if op == "Reshape" and (target is None or len(target) != 2):
                raise ModelError(f"{source}: node {_label(node)} (Reshape) does not flatten to (batch, "
                                 "features); only flattening reshapes are supported")
            if op == "Flatten" and attrs.get("axis", 1) != 1:
                raise ModelError(f"{source}: node {_label(node)} (Flatten) uses axis {attrs['axis']}; only "
                                 "axis 1 is supported")
            size = _flat_size(target, shapes.get(live[0])) if rank > 2 else x.size
            if size is None and x.sources and all(src.producer < 0 for src in x.sources):
                raise ModelError(f"{source}: node {_label(node)} ({op}) flattens the input of unknown shape; "
                                 "export with a fixed input size")
            out, out_rank = rec.flatten(x, -1 if size is None else size, rank > 2), 2
        elif op in REDUCTIONS:
            axes = attrs.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = weight(node, 1).astype(int).tolist()
            axes = sorted({int(a) % rank for a in (axes if axes is not None else range(rank))})
            if 0 in axes or 1 in axes:
                raise ModelError(f"{source}: node {_label(node)} ({op}) reduces over axes {axes}, which mixes "
                                 "units or samples; only reductions over spatial axes (pooling) are supported")
            out = rec.flatten(rec.passthrough(x), x.size, True) if rank > 2 else rec.passthrough(x)
            out_rank = rank if attrs.get("keepdims", 1) else rank - len(axes)
        elif op in GLOBAL_POOLS:
            out, out_rank = rec.flatten(rec.passthrough(x), x.size, True), rank
        elif op in PASS_THROUGH:
            out, out_rank = rec.passthrough(x), rank
        else:
            raise ModelError(f"{source}: node {_label(node)} uses operator {op}, which the graph builder does "
                             f"not support; supported: {', '.join(SUPPORTED)}")
        units[out_name], ranks[out_name] = out, out_rank
        producers[out_name] = node.name or out_name
    return rec.finish()


def _flat_size(target, before) -> int | None:
    """Units after flattening a feature map: from the inferred output shape, else the input's
    static shape, else unknown (None)."""
    if target is not None and len(target) == 2 and target[1] is not None:
        return int(target[1])
    if before is not None and all(d is not None for d in before[1:]):
        return int(np.prod(before[1:]))
    return None


def _label(node) -> str:
    """How an error names a node: its name, else its first output."""
    return repr(node.name or node.output[0])


def _layer_name(node, constants: dict) -> str:
    """A weighted node's layer name: its weight's initialiser name without ``.weight`` (PyTorch's
    module path, e.g. ``layer1.0.conv1``), else the node's name."""
    if len(node.input) > 1 and node.input[1] in constants:
        name = node.input[1]
        return name[: -len(".weight")] if name.endswith(".weight") else name
    return node.name or node.output[0]
