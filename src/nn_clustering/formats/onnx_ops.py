"""The ONNX operators the graph builder follows: one small handler per operator, in a table.

:func:`~nn_clustering.formats.onnx.weights_of_onnx_graph` walks a graph's nodes in order and
hands each to :func:`walk_node`, which looks its operator up in two tables:

* :data:`CONSTANT_FOLDS`: operators that may define a constant rather than read activations
  (``Constant``; ``Identity``/``Cast`` of a constant, the legacy exporter's shared weights);
* :data:`OPERATORS`: operators that read activations (a tensor computed from the network
  input). Each handler reads the node's attributes and inputs from a :class:`Walk`, the state
  of the walk (constants, shapes, the units of every computed tensor), reports the operation to
  its :class:`~nn_clustering.formats.wiring.WiringRecorder` and returns the units of the node's
  output with the output's rank.

A node that reads no activation, or whose operator neither table holds, is refused with one
line naming the node. Supporting a new operator is one handler and one entry in
:data:`OPERATORS`. Reading the nodes' attributes needs the ``onnx`` package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from .limits import shape_text
from .onnx_layout import flatten, gather, reshape, slice_units, split, transpose
from .onnx_walk import (
    REEXPORT,
    SMALL_CONSTANT,
    Fold,
    Handler,
    Node,
    Walk,
    attributes,
    node_label,
    op_text,
)
from .wiring import Units

if TYPE_CHECKING:
    from onnx import NodeProto

#: Operators that neither mix units nor carry graph weights.
PASS_THROUGH = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Gelu", "Softplus", "Softsign",
    "HardSigmoid", "HardSwish", "Mish", "Clip", "Softmax", "LogSoftmax", "Dropout", "Identity", "MaxPool", "Erf",
    "AveragePool", "Pad", "Cast",
})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool"})
#: Reductions that pool over spatial axes when the channel axis is kept (PyTorch's exporter
#: writes adaptive average pooling to 1 x 1 as ReduceMean over axes 2 and 3).
REDUCTIONS = frozenset({"ReduceMean", "ReduceMax", "ReduceSum"})


def _matrix(walk: Walk, node: Node, i: int) -> np.ndarray:
    """A dense layer's weight (the node's input ``i``), which must be a matrix."""
    w = walk.weight(node, i)
    if w.ndim != 2:
        raise walk.refuse(node, f"has a {w.ndim}-D weight of shape {shape_text(w.shape)}; a dense layer's "
                                f"weight is a matrix; {REEXPORT}")
    return w


# --------------------------------------------------------------------------- constant folds


def _constant(walk: Walk, proto: NodeProto, attrs: dict) -> bool:
    """``Constant``: its tensor value becomes a constant.

    Parameters
    ----------
    walk : Walk
        The walk's state; the value is added to ``walk.constants``.
    proto : onnx.NodeProto
        The Constant node.
    attrs : dict
        Its attributes.

    Returns
    -------
    bool
        True; a Constant without a tensor ``value`` is refused.
    """
    if "value" in attrs:
        walk.constant(proto.output[0], walk.to_array(attrs["value"]))
        return True
    raise ModelError(f"{walk.source}: node {node_label(proto)} (Constant) holds no tensor value")


def _shared_constant(walk: Walk, proto: NodeProto, attrs: dict) -> bool:
    """``Identity``/``Cast`` of a constant (the legacy exporter's shared weights): the output
    is the same constant.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    proto : onnx.NodeProto
        The node.
    attrs : dict
        Its attributes (unused).

    Returns
    -------
    bool
        Whether the node reads no activation and its input is a constant; else it is handled
        as a pass-through operator.
    """
    if any(name in walk.units for name in proto.input) or proto.input[0] not in walk.constants:
        return False
    walk.constants[proto.output[0]] = walk.constants[proto.input[0]]
    if proto.input[0] in walk.raw:
        walk.raw[proto.output[0]] = walk.raw[proto.input[0]]
    return True


def _shape(walk: Walk, proto: NodeProto, attrs: dict) -> bool:
    """``Shape`` of a tensor whose static shape is known: that shape, a constant (the legacy
    exporter computes ``chunk`` sizes from it).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    proto : onnx.NodeProto
        The Shape node.
    attrs : dict
        Its ``start`` and ``end``.

    Returns
    -------
    bool
        Whether the shape was known; else the node is refused as an unsupported operator.
    """
    shape = walk.shapes.get(proto.input[0])
    if shape is None or any(d is None for d in shape):
        return False
    walk.constant(proto.output[0], np.asarray(shape, np.int64)[attrs.get("start", 0):attrs.get("end", len(shape))])
    return True


#: Operators evaluated when every input is a small constant: the shape arithmetic exporters
#: write (sizes from Shape, split points). Operators that can make large tensors from small
#: inputs (Range, Expand, Tile, ConstantOfShape) are not among them.
SHAPE_ARITHMETIC = frozenset({"Gather", "Add", "Sub", "Mul", "Div", "Unsqueeze", "Squeeze", "Concat", "Slice",
                              "Cast", "Reshape", "Floor", "Ceil", "Equal", "Where", "Min", "Max", "Neg", "Abs", "Mod"})


#: Operators that can make a large constant from small inputs, with the size of their output
#: (computed before they are evaluated): a recurrent layer's initial state, for instance.
GROWING = {
    "Expand": lambda data, shape: int(np.prod(np.broadcast_shapes(data.shape, tuple(int(d) for d in shape)))),
    "ConstantOfShape": lambda shape: int(np.prod(shape.astype(np.int64))),
    "Tile": lambda data, repeats: int(data.size * np.prod(repeats.astype(np.int64))),
    "Range": lambda start, limit, delta: int(max(0, np.ceil((float(limit) - float(start)) / float(delta)))),
}


def _evaluated(walk: Walk, proto: NodeProto) -> bool:
    """Evaluate a shape-arithmetic node whose inputs are all small constants (ONNX's reference
    evaluator); its outputs become constants. False when it is not such a node."""
    names = [n for n in proto.input if n]
    if proto.op_type not in SHAPE_ARITHMETIC | GROWING.keys() or not names or not all(n in walk.raw for n in names):
        return False
    if proto.op_type in GROWING and GROWING[proto.op_type](*(walk.raw[n] for n in names)) > SMALL_CONSTANT:
        raise ModelError(f"{walk.source}: node {node_label(proto)} ({proto.op_type}) would make a constant of more "
                         f"than {SMALL_CONSTANT} elements from shape arithmetic; {REEXPORT}")
    from onnx.reference import ReferenceEvaluator

    try:
        outputs = ReferenceEvaluator(proto).run(None, {n: walk.raw[n] for n in names})
    except Exception as exc:  # the reference evaluator raises many types for bad nodes
        raise ModelError(f"{walk.source}: node {node_label(proto)} ({proto.op_type}) cannot be evaluated "
                         f"({type(exc).__name__}); {REEXPORT}") from None
    for name, value in zip(proto.output, outputs, strict=False):
        if np.size(value) > SMALL_CONSTANT:
            raise ModelError(f"{walk.source}: node {node_label(proto)} ({proto.op_type}) computes a constant of "
                             f"{np.size(value)} elements from shape arithmetic; {REEXPORT}")
        walk.constant(name, np.asarray(value))
    return True


# --------------------------------------------------------------------------- weighted layers


def _gemm(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Gemm``: a dense layer ``alpha * x @ op(B) + beta * C``, B and C constants.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The Gemm node; ``transA=1`` (weights times activations) is refused.

    Returns
    -------
    tuple of (Units, int)
        The layer's output units and rank 2.
    """
    attrs = node.attrs
    if attrs.get("transA", 0):
        raise walk.refuse(node, "transposes its input (transA=1); only activations times weights are supported")
    w = _matrix(walk, node, 1)
    kernel = (w.T if attrs.get("transB", 0) else w) * attrs.get("alpha", 1.0)
    bias = walk.weight(node, 2) * attrs.get("beta", 1.0) if node.has_input(2) else None
    return walk.rec.weighted(walk.layer_name(node), kernel, bias, node.x, linear=True), 2


def _matmul(walk: Walk, node: Node) -> tuple[Units, int]:
    """``MatMul`` of an activation by a weight matrix: a dense layer without bias (a following
    ``Add`` of a constant joins its bias).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The MatMul node; its first input must be the activation, its second a constant.

    Returns
    -------
    tuple of (Units, int)
        The layer's output units and the input's rank.
    """
    if len(node.inputs) != 2 or node.inputs[0] != node.live[0] or node.inputs[1] not in walk.constants:
        raise walk.refuse(node, "must multiply an activation by a weight initialiser")
    if node.axis != node.rank - 1:
        raise walk.refuse(node, "multiplies along an axis that is not the units' (channel) axis")
    kernel = _matrix(walk, node, 1)
    if node.rank == 4:  # a channels-last linear layer over a feature map: a 1 x 1 convolution
        kernel = kernel[None, None]
    return walk.rec.weighted(walk.layer_name(node), kernel, None, node.x, linear=True), node.rank


def _conv(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Conv``: a 1-D to 3-D convolution, grouped or not (depthwise: one group per channel),
    its (out, in / group, *spatial) weights turned into Keras' (*spatial, in / group, out).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The Conv node.

    Returns
    -------
    tuple of (Units, int)
        The layer's output units (its channels) and the input's rank.
    """
    w = walk.weight(node, 1)
    if node.axis != 1:
        raise walk.refuse(node, "reads a tensor whose channels are not on axis 1; transpose it back first")
    if w.ndim not in (3, 4, 5):
        raise walk.refuse(node, f"has a weight of shape {shape_text(w.shape)}; expected a 1-D to 3-D convolution's")
    bias = walk.weight(node, 2) if node.has_input(2) else None
    kernel = w.transpose(*range(2, w.ndim), 1, 0)
    out = walk.rec.weighted(walk.layer_name(node), kernel, bias, node.x, linear=True, groups=node.attrs.get("group", 1))
    return out, node.rank


def _batchnorm(walk: Walk, node: Node) -> tuple[Units, int]:
    """``BatchNormalization`` in inference mode: folded into the layer whose linear output it
    alone reads, else its scale waits for the next layer's rows (method.md §3.3).

    Parameters
    ----------
    walk : Walk
        The walk's state; ``readers`` tells whether the batch norm is its input's only reader.
    node : Node
        The node; its scale, bias, mean and variance must be constants.

    Returns
    -------
    tuple of (Units, int)
        The units (unchanged, or carrying the pending scale) and the input's rank.
    """
    if node.attrs.get("training_mode", 0):
        raise walk.refuse(node, "is in training mode; export the model in eval mode (model.eval())")
    if node.axis != 1:
        raise walk.refuse(node, "normalises a tensor whose channels are not on axis 1")
    gamma, beta, mean, var = (walk.weight(node, i) for i in range(1, 5))
    scale = gamma / np.sqrt(var + node.attrs.get("epsilon", 1e-5))
    sole = walk.readers.get(node.live[0], 0) == 1
    return walk.rec.rescale(node.x, scale, beta - mean * scale, sole), node.rank


def _layernorm(walk: Walk, node: Node) -> tuple[Units, int]:
    """``LayerNormalization`` over the units (the last axis), ``RMSNormalization`` alike: the
    units pass through and the per-unit scale waits for the next layer's rows.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node; it must normalise over the unit axis alone, with a constant scale.

    Returns
    -------
    tuple of (Units, int)
        The units carrying the pending scale, and the input's rank.
    """
    axis = node.attrs.get("axis", -1) % node.rank
    if axis != node.axis or axis != node.rank - 1:
        raise walk.refuse(node, f"normalises from axis {axis}, not over the units (axis {node.axis}) alone")
    gamma = walk.weight(node, 1) if node.has_input(1) else None
    return walk.rec.normalise(node.x, None if gamma is None else gamma.reshape(-1)), node.rank


def _groupnorm(walk: Walk, node: Node) -> tuple[Units, int]:
    """``GroupNormalization``/``InstanceNormalization`` of channels (axis 1): the channels pass
    through and the per-channel scale (per group in opset 18, repeated over its channels)
    waits for the next layer's rows.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node; its scale must be a constant.

    Returns
    -------
    tuple of (Units, int)
        The units carrying the pending scale, and the input's rank.
    """
    if node.axis != 1:
        raise walk.refuse(node, "normalises a tensor whose channels are not on axis 1")
    gamma = walk.weight(node, 1).reshape(-1)
    if gamma.size != node.x.size and node.x.size % max(gamma.size, 1) == 0:
        gamma = np.repeat(gamma, node.x.size // gamma.size)
    return walk.rec.normalise(node.x, gamma), node.rank


# --------------------------------------------------------------------------- element-wise products


#: Operators whose output, multiplied by their input, is an activation: x * sigmoid(x) is SiLU.
GATING_ACTIVATIONS = frozenset({"Sigmoid", "HardSigmoid", "Tanh"})


def _self_gated(walk: Walk, node: Node) -> str | None:
    """The tensor x when the node multiplies x by an activation of x (SiLU, Swish, hard swish
    written as x * hardsigmoid(x)): an activation, not a gate; else None."""
    a, b = node.inputs[:2]
    for x, y in ((a, b), (b, a)):
        proto = walk.protos.get(y)
        if proto is not None and proto.op_type in GATING_ACTIVATIONS and proto.input[0] == x:
            return x
    return None


def _mul(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Mul``/``Div``: by a constant per unit (a layer scale), a rescaling folded into a kernel;
    by a scalar, or x times a function of x (SiLU's x * sigmoid(x), GELU's x * erf(...)), part
    of an activation; of two other activations a gate, which joins unit i of each factor to
    unit i of the product as a sum does (method.md §3.3).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node.

    Returns
    -------
    tuple of (Units, int)
        The product's units and the input's rank.
    """
    rec = walk.rec
    if len(node.inputs) != 2:
        raise walk.refuse(node, f"has {len(node.inputs)} inputs; {node.op} takes 2")
    if len(node.live) > 1:
        gated = _self_gated(walk, node) if node.op == "Mul" else None
        if gated is not None:
            return rec.passthrough(walk.units[gated]), walk.ranks[gated]
        factors = [walk.units[n] for n in node.inputs]
        if len({frozenset(f.sources) for f in factors}) == 1:  # a function of one tensor: GELU's x * erf(...)
            plain = [n for n, f in zip(node.inputs, factors, strict=True) if f.scale is None] or node.inputs
            return rec.passthrough(walk.units[plain[0]]), walk.ranks[plain[0]]
        if node.op == "Div":
            raise walk.refuse(node, "divides one activation by another; not supported")
        return rec.multiply(node.label, factors), max(walk.ranks[n] for n in node.inputs)
    other = next(n for n in node.inputs if n != node.live[0])
    if other not in walk.constants or (node.op == "Div" and node.inputs[0] != node.live[0]):
        raise walk.refuse(node, "multiplies by a tensor that is neither an activation nor a constant")
    if walk.constants[other].size == 1:  # a scalar: part of an activation (GELU's 0.5, x / sqrt(2), x / 6)
        return rec.passthrough(node.x), node.rank
    factor = walk.per_unit(node, walk.constants[other])
    if factor is None:
        raise walk.refuse(node, f"multiplies by a constant of shape {shape_text(walk.constants[other].shape)}, "
                                "which is not one factor per unit")
    factor = 1.0 / factor if node.op == "Div" else factor
    return rec.rescale(node.x, factor, None, walk.readers.get(node.live[0], 0) == 1), node.rank


def _shift(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Sub`` of a constant (a shift, like a bias after the layer) passes units through; the
    difference of two activations joins them as a sum does.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node.

    Returns
    -------
    tuple of (Units, int)
        The output's units and the input's rank.
    """
    if len(node.live) > 1:
        return walk.rec.add(node.label, [walk.units[n] for n in node.inputs]), node.rank
    return walk.rec.passthrough(node.x), node.rank


# --------------------------------------------------------------------------- joins


def _add(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Add``/``Sum``: of two or more activations a residual sum; ``Add`` of an activation and
    a constant a bias.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The Add or Sum node.

    Returns
    -------
    tuple of (Units, int)
        The summed units and the first activation's rank.
    """
    rec, x = walk.rec, node.x
    if len(node.live) > 1:
        return rec.add(node.label, [walk.units[n] for n in node.inputs]), node.rank
    others = [n for n in node.inputs if n != node.live[0]]
    if node.op == "Add" and others and others[0] in walk.constants:
        return rec.add_bias(x, walk.constants[others[0]]), node.rank
    return rec.add(walk.layer_name(node), [x] * len(node.inputs)), node.rank


def _concat(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Concat`` of activations along the channel axis.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The Concat node; another axis, or a constant among its inputs, is refused.

    Returns
    -------
    tuple of (Units, int)
        The joined units and the first activation's rank.
    """
    axis = node.attrs.get("axis", 1) % node.rank
    if axis != node.axis:
        raise walk.refuse(node, f"joins along axis {axis}; only the units' (channel) axis {node.axis} is supported")
    if len(node.live) != len(node.inputs):
        raise walk.refuse(node, "joins a constant to activations; not supported")
    return walk.rec.concat(node.label, [walk.units[n] for n in node.inputs]), node.rank


# --------------------------------------------------------------------------- pooling


def _reduce(walk: Walk, node: Node) -> tuple[Units, int]:
    """``ReduceMean``/``ReduceMax``/``ReduceSum`` over spatial axes: pooling.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node; its axes (attribute, else constant second input, else all) must leave the
        batch and channel axes, else it is refused.

    Returns
    -------
    tuple of (Units, int)
        The pooled units (a feature map pooled is flattened) and the rank after ``keepdims``.
    """
    rec, x, rank = walk.rec, node.x, node.rank
    axes = node.attrs.get("axes")
    if axes is None and node.has_input(1):
        axes = walk.weight(node, 1).astype(int).tolist()
    axes = sorted({int(a) % rank for a in (axes if axes is not None else range(rank))})
    if 0 in axes:
        raise walk.refuse(node, f"reduces over axes {axes}, which mixes samples; only reductions over "
                                "spatial axes (pooling) are supported")
    if node.axis in axes:
        raise walk.refuse(node, f"reduces over axes {axes}, which include the units' axis {node.axis}")
    out = rec.pool(x) if rank > 2 else rec.passthrough(x)
    return out, rank if node.attrs.get("keepdims", 1) else rank - len(axes)


def _global_pool(walk: Walk, node: Node) -> tuple[Units, int]:
    """``GlobalAveragePool``/``GlobalMaxPool``: one unit per channel.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The pooling node.

    Returns
    -------
    tuple of (Units, int)
        The pooled (flattened) units and the input's rank.
    """
    if node.axis != 1:
        raise walk.refuse(node, "pools a tensor whose channels are not on axis 1")
    return walk.rec.pool(node.x), node.rank


def _pass_through(walk: Walk, node: Node) -> tuple[Units, int]:
    """An operator that neither mixes units nor carries weights (:data:`PASS_THROUGH`).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node.

    Returns
    -------
    tuple of (Units, int)
        The input's units, no longer a fresh layer output, and its rank.
    """
    return walk.rec.passthrough(node.x), node.rank


# --------------------------------------------------------------------------- the tables

#: Operators that may define a constant; a fold that returns False leaves the node to OPERATORS.
CONSTANT_FOLDS: dict[str, Fold] = {"Constant": _constant, "Identity": _shared_constant, "Cast": _shared_constant,
                                   "Shape": _shape}
#: Operators that read activations, by ``op_type``.
OPERATORS: dict[str, Handler] = {
    "Gemm": _gemm, "MatMul": _matmul, "Conv": _conv, "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm, "RMSNormalization": _layernorm, "GroupNormalization": _groupnorm,
    "InstanceNormalization": _groupnorm, "Mul": _mul, "Div": _mul, "Sub": _shift, "Transpose": transpose,
    "Gather": gather, "Split": split, "Slice": slice_units,
    "Add": _add, "Sum": _add, "Concat": _concat, "Flatten": flatten, "Reshape": reshape,
    **dict.fromkeys(REDUCTIONS, _reduce), **dict.fromkeys(GLOBAL_POOLS, _global_pool),
    **dict.fromkeys(PASS_THROUGH, _pass_through),
}
SUPPORTED = sorted(CONSTANT_FOLDS.keys() | OPERATORS.keys())
_RECURRENT = ("is recurrent: its units mix through time, so its weights are not edges between units "
              "of a feed-forward graph (method.md §3.3)")
#: Operators refused with their own reason.
REFUSED: dict[str, str] = {
    "LSTM": _RECURRENT, "GRU": _RECURRENT, "RNN": _RECURRENT, "Scan": _RECURRENT, "Loop": _RECURRENT,
    "Attention": "is attention: its mixing weights are computed from the data (method.md §3.3)",
}


def walk_node(walk: Walk, proto: NodeProto) -> None:
    """Follow one node: fold it into a constant, or hand it to its operator's handler and record
    its output; one line for a node that reads no activation or an unsupported operator."""
    op, attrs = proto.op_type, attributes(proto)
    fold = CONSTANT_FOLDS.get(op)
    if fold is not None and fold(walk, proto, attrs):
        return
    live = [name for name in proto.input if name in walk.units]
    if not live and _evaluated(walk, proto):
        return
    if not live:
        raise ModelError(f"{walk.source}: node {node_label(proto)} ({op}) reads no tensor computed from the input; "
                         "fold constant subgraphs before exporting (do_constant_folding=True)")
    handler = OPERATORS.get(op)
    if op in REFUSED:
        raise ModelError(f"{walk.source}: node {node_label(proto)} ({op}) {REFUSED[op]}")
    if handler is None:
        raise ModelError(f"{walk.source}: node {node_label(proto)} uses operator {op_text(op)}, which the graph builder "
                         "does not support (docs/method.md §3.4 lists the operators it follows)")
    node = Node(proto, attrs, live, walk.units[live[0]], walk.ranks[live[0]], walk.axes.get(live[0], 1))
    out, rank = handler(walk, node)
    walk.record(node, out, rank)
