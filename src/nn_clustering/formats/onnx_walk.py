"""The state of a walk over an ONNX graph's nodes, shared by the operator handlers
(:mod:`.onnx_ops`, :mod:`.onnx_layout`): the constants, shapes and units of every tensor, and
how nodes and layers are named in results and errors (PyTorch's module paths where the
exporter recorded them)."""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError, quoted
from .wiring import Units, WiringRecorder

if TYPE_CHECKING:
    from onnx import NodeProto

REEXPORT = "re-export it with torch.onnx.export"
#: Constants up to this many elements keep their own dtype for shape arithmetic.
SMALL_CONSTANT = 4096


@dataclass
class Walk:
    """What the walk over a graph's nodes knows so far; the handlers read and update it.

    ``constants``: initialisers and Constant values (float64) by tensor name; ``shapes``: the
    static shapes of the graph's inputs, outputs and inferred values; ``units``, ``ranks`` and
    ``axes``: the units, rank and unit (channel) axis of every tensor computed from the network
    input (axis 1 for PyTorch's NCHW; a Transpose moves it); ``readers``: how many node inputs
    read each tensor; ``producers`` and ``protos``: the node that computed each tensor (its
    name for errors, itself to recognise SiLU); ``raw``: the small constants with their own
    dtype (shape arithmetic on integers); ``factors``: for a tensor whose units axis a
    reshape split into several axes, (the first of them, the factors' sizes, the original
    index of the factor now at each of them).
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
    factors: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)

    def constant(self, name: str, value: np.ndarray) -> None:
        """Note a constant: as float64 for weights, and as it is (integers kept) when small
        enough to take part in shape arithmetic (:data:`SMALL_CONSTANT` elements)."""
        self.constants[name] = np.asarray(value).astype(np.float64)
        if np.size(value) <= SMALL_CONSTANT:
            self.raw[name] = np.asarray(value)

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


def attributes(node: NodeProto) -> dict:
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
