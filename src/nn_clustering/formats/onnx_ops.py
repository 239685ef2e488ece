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

import ast
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError, quoted
from .limits import shape_text
from .wiring import Units, WiringRecorder

if TYPE_CHECKING:
    from onnx import NodeProto

REEXPORT = "re-export it with torch.onnx.export"
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


# --------------------------------------------------------------------------- the walk's state


@dataclass
class Walk:
    """What the walk over a graph's nodes knows so far; the handlers read and update it.

    ``constants``: initialisers and Constant values (float64) by tensor name; ``shapes``: the
    static shapes of the graph's inputs, outputs and inferred values; ``units``, ``ranks`` and
    ``axes``: the units, rank and unit (channel) axis of every tensor computed from the network
    input (axis 1 for PyTorch's NCHW; a Transpose moves it); ``readers``: how many node inputs
    read each tensor; ``producers`` and ``protos``: the node that computed each tensor (its
    name for errors, itself to recognise SiLU).
    """

    source: str
    rec: WiringRecorder
    to_array: Callable
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple[int | None, ...]]
    readers: Counter[str]
    units: dict[str, Units] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    producers: dict[str, str] = field(default_factory=dict)
    axes: dict[str, int] = field(default_factory=dict)
    protos: dict[str, NodeProto] = field(default_factory=dict)

    def refuse(self, node: Node, text: str) -> ModelError:
        """The one-line error ``{source}: node {label} ({operator}) {text}``."""
        return ModelError(f"{self.source}: node {node.label} ({node.op}) {text}")

    def weight(self, node: Node, i: int) -> np.ndarray:
        """The node's input ``i``, which must be a constant (an initialiser or Constant)."""
        if len(node.inputs) <= i or node.inputs[i] not in self.constants:
            raise self.refuse(node, "takes its weights from a computed tensor, not an initialiser; export with "
                                    "constant weights")
        return self.constants[node.inputs[i]]

    def layer_name(self, node: Node) -> str:
        """A weighted node's layer name, PyTorch's module path (``layer1.0.conv1``) where the
        file says it: its weight's initialiser name without ``.weight``, unless the exporter
        generated that name (``onnx::Conv_650``, ``val_4``: a weight it fused or transposed);
        then the dynamo exporter's name scope, or the legacy exporter's node name
        (``/layer1/layer1.0/conv1/Conv``); else the node's name."""
        weight = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] in self.constants else ""
        if weight and not GENERATED_NAME.match(weight):
            return weight[: -len(".weight")] if weight.endswith(".weight") else weight
        path = module_path(node.proto) or legacy_path(node.proto.name)
        return path[0] if path is not None and path[0] else weight or node.proto.name or node.output

    def record(self, node: Node, out: Units, rank: int) -> None:
        """Note the units, rank and unit axis of the node's output (the input's axis at the same
        rank, 1 for a (batch, units) matrix, unless the handler set it), and its node."""
        self.units[node.output], self.ranks[node.output] = out, rank
        self.axes.setdefault(node.output, node.axis if rank == node.rank else 1 if rank == 2 else node.axis)
        self.producers[node.output] = node.proto.name or node.output
        self.protos[node.output] = node.proto

    def per_unit(self, node: Node, value: np.ndarray) -> np.ndarray | None:
        """A constant operand as one factor per unit of the node's input: a scalar, or a tensor
        whose only axis longer than 1 is the unit axis (broadcast from the right); None otherwise."""
        if value.size == 1:
            return np.full(max(node.x.size, 1), float(value.reshape(-1)[0]))
        dims = (1,) * (node.rank - value.ndim) + value.shape
        if value.ndim > node.rank or value.size != node.x.size or dims[node.axis] != value.size:
            return None
        return value.reshape(-1)


@dataclass
class Node:
    """A node that reads activations: its ``NodeProto``, attributes, the inputs computed from
    the network input (``live``), and the units ``x``, ``rank`` and unit ``axis`` of the first."""

    proto: NodeProto
    attrs: dict
    live: list[str]
    x: Units
    rank: int
    axis: int = 1

    @property
    def op(self) -> str:
        return self.proto.op_type

    @property
    def inputs(self) -> list[str]:
        return list(self.proto.input)

    @property
    def output(self) -> str:
        return self.proto.output[0]

    @property
    def label(self) -> str:
        return node_label(self.proto)

    def has_input(self, i: int) -> bool:
        """Whether optional input ``i`` is given (present and not empty)."""
        return len(self.proto.input) > i and bool(self.proto.input[i])


#: A handler: the units of a node's output and the output's rank.
Handler = Callable[[Walk, Node], tuple[Units, int]]
#: A constant fold: whether it defined the node's output as a constant.
Fold = Callable[[Walk, "NodeProto", dict], bool]


def _attributes(node: NodeProto) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


#: Where PyTorch's dynamo exporter records a node's module path (``['', 'layer1', 'layer1.0', 'conv2d']``).
NAME_SCOPES = "pkg.torch.onnx.name_scopes"


def module_path(node: NodeProto) -> tuple[str, str] | None:
    """The PyTorch module path of a node exported by the dynamo exporter and the operation's
    own scope name (``("layer1.0.conv1", "conv2d")``), else None."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
            if isinstance(scopes, list) and len(scopes) >= 2 and all(isinstance(x, str) for x in scopes):
                return scopes[-2], scopes[-1]
    return None


#: Initialiser names an exporter generates for weights it fused or transposed.
GENERATED_NAME = re.compile(r"^(?:.*::.*|_?val_\d+)$")


def legacy_path(name: str) -> tuple[str, str] | None:
    """The module path in a legacy exporter's node name (``/features/features.1/block/block.3/
    MatMul`` -> ``features.1.block.3``) and the operation, else None."""
    if not name.startswith("/") or name.count("/") < 2:
        return None
    *segments, op = name[1:].split("/")
    path, previous = "", ""
    for seg in segments:  # an indexed child ("block.3" after "block") replaces its container
        path = path[: len(path) - len(previous)] + seg if previous and seg.startswith(previous + ".") else (
            f"{path}.{seg}" if path else seg)
        previous = seg
    return path, op


def node_label(node: NodeProto) -> str:
    """How an error names a node: its module path and operation where the exporter recorded
    them (``'layer1.0/add'``), else its name, else its first output (``repr``, cut short)."""
    path = module_path(node)
    if path is not None and path[0]:
        return quoted(f"{path[0]}/{path[1]}")
    return quoted(node.name or (node.output[0] if node.output else ""))


def op_text(op: object) -> str:
    """An operator's name for a message: as is when it looks like one, else quoted and cut short."""
    return op if isinstance(op, str) and op.isidentifier() and len(op) <= 60 else quoted(op)


def _matrix(walk: Walk, node: Node, i: int) -> np.ndarray:
    """A dense layer's weight (the node's input ``i``), which must be a matrix."""
    w = walk.weight(node, i)
    if w.ndim != 2:
        raise walk.refuse(node, f"has a {w.ndim}-D weight of shape {shape_text(w.shape)}; a dense layer's "
                                f"weight is a matrix; {REEXPORT}")
    return w


def _flat_size(target: tuple | None, before: tuple | None) -> int | None:
    """Units after flattening a feature map: from the inferred output shape, else the input's
    static shape, else unknown (None)."""
    if target is not None and len(target) == 2 and target[1] is not None:
        return int(target[1])
    if before is not None and all(d is not None for d in before[1:]):
        return int(np.prod(before[1:]))
    return None


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
        walk.constants[proto.output[0]] = walk.to_array(attrs["value"]).astype(np.float64)
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
    if node.inputs[0] != node.live[0] or node.inputs[1] not in walk.constants:
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
        return rec.multiply(node.label, [walk.units[n] for n in node.inputs]), max(walk.ranks[n] for n in node.inputs)
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


# --------------------------------------------------------------------------- layout


def _transpose(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Transpose``: the same units, their axis moved (to channels-last and back).

    Parameters
    ----------
    walk : Walk
        The walk's state; the output's unit axis is set here.
    node : Node
        The node.

    Returns
    -------
    tuple of (Units, int)
        The input's units (a fresh layer output stays fresh: the values are the same) and rank.
    """
    perm = [int(p) for p in node.attrs.get("perm", range(node.rank - 1, -1, -1))]
    walk.axes[node.output] = perm.index(node.axis)
    return node.x, node.rank


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


# --------------------------------------------------------------------------- reshaping and pooling


def _flattened(walk: Walk, node: Node) -> tuple[Units, int]:
    """The units of a tensor flattened to (batch, features) (shared by Flatten and Reshape);
    a feature map's size comes from the inferred shapes (:func:`_flat_size`)."""
    x, rank = node.x, node.rank
    size = _flat_size(walk.shapes.get(node.output), walk.shapes.get(node.live[0])) if rank > 2 else x.size
    if size is None and x.sources and all(src.producer < 0 for src in x.sources):
        raise walk.refuse(node, "flattens the input of unknown shape; export with a fixed input size")
    return walk.rec.flatten(x, -1 if size is None else size, rank > 2), 2


def _flatten(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Flatten`` at axis 1.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The Flatten node; another axis is refused.

    Returns
    -------
    tuple of (Units, int)
        The flattened units and rank 2.
    """
    if node.attrs.get("axis", 1) != 1:
        raise walk.refuse(node, f"uses axis {node.attrs['axis']}; only axis 1 is supported")
    return _flattened(walk, node)


def _kept_axis(before: tuple, axis: int, after: tuple) -> int | None:
    """The axis of ``after`` that holds the units of ``before``'s ``axis`` unchanged (the same
    size, and the same number of elements before it, so unit c stays unit c in memory order),
    else None. Unknown sizes (None) must match one for one."""
    def lead(dims: tuple) -> tuple[int, int] | None:
        known = [d for d in dims if d is not None]
        return int(np.prod(known)) if known else 1, len(dims) - len(known)

    size = before[axis]
    if size is None:
        return None
    for j, d in enumerate(after):
        if d == size and lead(before[:axis]) == lead(after[:j]):
            return j
    return None


def _reshape(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Reshape``: one that keeps the units on one axis (a pooled map to (batch, channels) and
    back, (N, C, H, W) to (N, C, H * W)) passes them through; else a flatten to (batch,
    features).

    Parameters
    ----------
    walk : Walk
        The walk's state; the inferred shapes of the input and output decide.
    node : Node
        The Reshape node.

    Returns
    -------
    tuple of (Units, int)
        The units (passed through, or flattened) and the output's rank.
    """
    target, before = walk.shapes.get(node.output), walk.shapes.get(node.live[0])
    kept = None if target is None or before is None else _kept_axis(before, node.axis, target)
    if kept is not None:
        walk.axes[node.output] = kept
        return walk.rec.passthrough(node.x), len(target)
    if target is None or len(target) != 2:
        raise walk.refuse(node, "neither keeps the units on one axis nor flattens to (batch, features)")
    return _flattened(walk, node)


def _gather(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Gather`` of a vector of units by a constant arange (the dynamo exporter's
    ``as_strided`` after a pooling): the same units, reshaped.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node; any other gather (an embedding, a selection of units) is refused.

    Returns
    -------
    tuple of (Units, int)
        The units and the rank of the indices.
    """
    indices = walk.constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
    size = node.x.size
    if node.rank != 1 or indices is None or indices.size != size or not np.array_equal(indices.reshape(-1), np.arange(size)):
        raise walk.refuse(node, "selects or embeds units by index; only a gather that keeps every unit in order is followed")
    walk.axes[node.output] = int(np.argmax(np.asarray(indices.shape) == size))
    return walk.rec.passthrough(node.x), indices.ndim


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
CONSTANT_FOLDS: dict[str, Fold] = {"Constant": _constant, "Identity": _shared_constant, "Cast": _shared_constant}
#: Operators that read activations, by ``op_type``.
OPERATORS: dict[str, Handler] = {
    "Gemm": _gemm, "MatMul": _matmul, "Conv": _conv, "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm, "RMSNormalization": _layernorm, "GroupNormalization": _groupnorm,
    "InstanceNormalization": _groupnorm, "Mul": _mul, "Div": _mul, "Sub": _shift, "Transpose": _transpose,
    "Gather": _gather,
    "Add": _add, "Sum": _add, "Concat": _concat, "Flatten": _flatten, "Reshape": _reshape,
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
    op, attrs = proto.op_type, _attributes(proto)
    fold = CONSTANT_FOLDS.get(op)
    if fold is not None and fold(walk, proto, attrs):
        return
    live = [name for name in proto.input if name in walk.units]
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
