"""Transformers from ONNX files (what ``torch.onnx.export`` writes for GPT-2, GPT-NeoX, LLaMA,
BERT or ViT models), read into the same :class:`~nn_clustering.formats.transformer.Block`
description as their checkpoint folders, so that both give one graph (method.md §3.5).

The graph is evaluated on one small input (:mod:`.onnx_eval`): token ids ``1..T`` or a seeded
random image. That fixes every shape, the masks and the positions, and tells which tensors
depend on the input (*live*) and which are constants (the weights, and whatever the exporter
computes from them or from shapes). Then the roles are read off the graph:

* a *weighted* node is a ``MatMul``/``Gemm`` of a live tensor and a constant matrix;
* an *attention* is a ``MatMul`` of two live tensors whose first reads a ``Softmax``: its second
  input holds the values;
* going through the nodes in order, each tensor remembers the weighted nodes whose outputs
  reach it last (no weighted node in between) and the attentions it comes from. A weighted node
  whose input comes from an attention is an output projection; one whose input comes from
  weighted nodes that read the stream is an MLP's down projection (they are its up and gate
  projections: the gate passes a nonlinearity on its way); any other one reads the stream: a
  value projection where it reaches an attention's values, otherwise a query or key projection
  or a head (the unembedding, a pooler, a classifier), none of them part of the graph.

Which columns of a value projection become which head's value dimensions, and which of them
each row of the output projection reads, is found by evaluating the nodes in between on arrays
of positions instead of values (reshapes, transposes, splits, slices and expansions copy
values, so positions go where values go): fused projections (GPT-2's ``c_attn``, GPT-NeoX's
interleaved ``query_key_value``) and grouped-query heads come out as the checkpoint reader
splits them. The per-unit scale of the norm between the stream and a reading projection
(``LayerNormalization``'s scale, RMSNorm's weight) is folded into its rows as there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.graph import NetworkWeights
from ..errors import ModelError, quoted
from .limits import ModelBudget
from .onnx_eval import LAYOUT, evaluate
from .onnx_walk import GENERATED_NAME, attributes, legacy_path, module_path, node_label
from .transformer import Attention, Block, Mlp, transformer_weights

#: Tokens in the evaluated sequence (fewer where the model's input fixes fewer).
TOKENS = 5
#: Operators between an MLP's gate projection and its down projection that make it the gate.
NONLINEAR = frozenset({"Sigmoid", "Tanh", "Erf", "Gelu", "Relu", "Softplus", "HardSigmoid", "Exp"})
#: Weighted operators a transformer's blocks do not hold (a convolution may embed an image's patches).
OTHER_LAYERS = frozenset({"Conv", "ConvTranspose", "LSTM", "GRU", "RNN", "Einsum"})
#: Operators on the way from the stream to a reading projection that leave each unit where it is.
NORM_PATH = frozenset({"LayerNormalization", "Mul", "Div", "Cast", "Identity", "Add", "Sub", "Reshape", "Flatten",
                       "Squeeze", "Unsqueeze"})


def is_attention_graph(graph) -> bool:
    """Whether an ONNX graph holds an attention: a ``MatMul`` that reads (through any nodes) the
    output of a ``Softmax``."""
    after_softmax: set[str] = set()
    for node in graph.node:
        reads = any(name in after_softmax for name in node.input)
        if node.op_type == "MatMul" and reads:
            return True
        if node.op_type == "Softmax" or reads:
            after_softmax.update(node.output)
    return False


@dataclass
class Evaluated:
    """A graph evaluated on one input: every tensor's value, which are live, each node with its
    attributes (tensors as arrays), the node that computed each tensor, and the initialisers."""

    source: str
    values: dict[str, np.ndarray]
    live: set[str]
    nodes: list
    producer: dict[str, int] = field(default_factory=dict)
    attrs: list[dict] = field(default_factory=list)
    initialisers: frozenset[str] = frozenset()

    def label(self, i: int) -> str:
        return node_label(self.nodes[i])

    def refuse(self, i: int, text: str) -> ModelError:
        return ModelError(f"{self.source}: node {self.label(i)} ({self.nodes[i].op_type}) {text}")


def _input_value(graph, source: str, values: dict) -> tuple[str, np.ndarray]:
    """The graph's one input and the value it is evaluated on."""
    constant = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in constant]
    if len(inputs) != 1:
        raise ModelError(f"{source}: the model has {len(inputs)} inputs; a transformer is read from its token ids or "
                         "image alone (export it with the other inputs left out)")
    v = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    if v.type.tensor_type.elem_type in (6, 7):  # int32, int64: token ids
        tokens = dims[-1] or TOKENS
        rows = [n for n in graph.node if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == v.name]
        vocab = min((values[n.input[0]].shape[0] for n in rows if n.input[0] in values), default=tokens + 1)
        shape = [d or 1 for d in dims[:-1]] + [tokens]
        return v.name, (np.arange(1, np.prod(shape) + 1) % max(vocab, 2)).reshape(shape).astype(np.int64)
    if any(d is None for d in dims[1:]):
        raise ModelError(f"{source}: input {quoted(v.name)} has shape {dims}; export the model with a fixed image size")
    return v.name, np.random.default_rng(0).normal(size=[dims[0] or 1, *dims[1:]])


def evaluate_graph(graph, source: str, to_array: Callable, value: np.ndarray | None = None) -> Evaluated:
    """Every tensor of ``graph`` evaluated on one input (``value``, by default the one of the
    module docstring), under the memory limit for reading a model."""
    budget = ModelBudget(source)
    values: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        a = np.asarray(to_array(t))
        values[t.name] = a.astype(np.float64) if a.dtype.kind == "f" else a
    name, default = _input_value(graph, source, values)
    values[name], live = default if value is None else np.asarray(value), {name}
    ev = Evaluated(source, values, live, list(graph.node), initialisers=frozenset(t.name for t in graph.initializer))
    for i, node in enumerate(graph.node):
        attrs = {k: np.asarray(to_array(v)) if hasattr(v, "data_type") else v for k, v in attributes(node).items()}
        ev.attrs.append(attrs)
        if node.op_type == "Constant":
            a = attrs["value"] if "value" in attrs else np.asarray(
                attrs.get("value_float", attrs.get("value_int", attrs.get("value_ints", 0))))
            outs = [a.astype(np.float64) if a.dtype.kind == "f" else a]
        else:
            inputs = [values.get(n) if n else None for n in node.input]
            outs = evaluate(node.op_type, inputs, attrs, node_label(node), budget)
        for out, v in zip(node.output, outs, strict=False):
            values[out] = np.asarray(v)
            ev.producer[out] = i
        if node.op_type not in ("Shape", "Size") and any(n in live for n in node.input):
            live.update(node.output)
    return ev


@dataclass
class Roles:
    """What each weighted node and attention is (see the module docstring)."""

    weighted: dict[int, tuple[str, np.ndarray]]  # node -> (its live input, its (in, out) matrix)
    outputs: dict[int, int] = field(default_factory=dict)  # output projection -> its attention
    downs: dict[int, list[int]] = field(default_factory=dict)  # down projection -> its up/gate projections
    values: dict[int, int] = field(default_factory=dict)  # attention -> its value projection
    fused: set[int] = field(default_factory=set)  # value projections that also make queries or keys


def _weighted(ev: Evaluated, i: int) -> tuple[str, np.ndarray] | None:
    """(live input, (in, out) matrix) of a MatMul/Gemm of a live tensor and a constant matrix."""
    node = ev.nodes[i]
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
        return None
    x, w = node.input[0], node.input[1]
    if x not in ev.live or w in ev.live or ev.values[w].ndim != 2:
        return None
    a = ev.attrs[i]
    if node.op_type == "Gemm" and a.get("transA", 0):
        raise ev.refuse(i, "transposes its input (transA); re-export it with torch.onnx.export")
    matrix = ev.values[w].T if node.op_type == "Gemm" and a.get("transB", 0) else ev.values[w]
    return x, np.asarray(matrix, np.float64)


def find_roles(ev: Evaluated) -> Roles:
    """The weighted nodes and attentions of an evaluated graph and what each is."""
    softmax_after: set[str] = set()
    roles = Roles({})
    last: dict[str, frozenset[int]] = {}  # tensor -> weighted nodes whose outputs reach it last
    attn: dict[str, frozenset[int]] = {}  # tensor -> attentions it comes from (no weighted node between)
    readers: set[int] = set()
    for i, node in enumerate(ev.nodes):
        live_in = [n for n in node.input if n in ev.live]
        came = frozenset().union(*(last.get(n, frozenset()) for n in live_in))
        via = frozenset().union(*(attn.get(n, frozenset()) for n in live_in))
        weighted = _weighted(ev, i)
        if node.op_type in OTHER_LAYERS and (came or via):
            raise ev.refuse(i, "is a weighted layer between a transformer's blocks; only MatMul and Gemm projections "
                               "are read there (a patch-embedding convolution before the first block is left out)")
        if weighted is not None:
            roles.weighted[i] = weighted
            if via:
                roles.outputs[i] = min(via)
            elif came and came <= readers and not any(j in roles.outputs for j in came):
                roles.downs[i] = sorted(came)
            else:
                readers.add(i)
            came, via = frozenset({i}), frozenset()
        elif node.op_type == "MatMul" and len(live_in) == 2 and node.input[0] in softmax_after:
            (value_from,) = _one(ev, i, last.get(node.input[1], frozenset()), "reads its values from")
            roles.values[i] = value_from
            roles.fused |= {value_from} & set().union(*(last.get(n, frozenset()) for n in _scores(ev, node.input[0])))
            came, via = frozenset(), frozenset({i})
        if node.op_type == "Softmax" or any(n in softmax_after for n in node.input):
            softmax_after.update(node.output)
        for out in node.output:
            last[out], attn[out] = came, via
    return roles


def _one(ev: Evaluated, i: int, found: frozenset[int], what: str) -> tuple[int]:
    if len(found) != 1:
        raise ev.refuse(i, f"{what} {len(found)} weighted layers, not one; it is not an attention this reader follows")
    return (next(iter(found)),)


def _scores(ev: Evaluated, probs: str) -> list[str]:
    """The live inputs of the attention scores' MatMul behind a Softmax's output ``probs``."""
    stack, seen, found = [probs], set(), []
    while stack:
        name = stack.pop()
        if name in seen or name not in ev.producer:
            continue
        seen.add(name)
        node = ev.nodes[ev.producer[name]]
        live = [n for n in node.input if n in ev.live]
        if node.op_type == "MatMul" and len(live) == 2:
            found += live
            continue
        stack += live
    return found


def _path(ev: Evaluated, start: str, end: str) -> list[int]:
    """The nodes, in order, on the paths from tensor ``start`` to tensor ``end``."""
    ahead, forward = {start}, set()
    for i, node in enumerate(ev.nodes):
        if any(n in ahead for n in node.input):
            ahead.update(node.output)
            forward.add(i)
    back, nodes = {end}, []
    for i in range(ev.producer.get(end, -1), -1, -1):
        node = ev.nodes[i]
        if i in forward and any(o in back for o in node.output):
            nodes.append(i)
            back.update(n for n in node.input if n in ahead)
    return nodes[::-1]


def positions(ev: Evaluated, start: str, end: str) -> np.ndarray:
    """Tensor ``end`` evaluated on the positions of tensor ``start``'s values (0, 1, ... in C
    order): which of ``start``'s values each value of ``end`` is a copy of. Only nodes that copy
    values (:data:`~.onnx_eval.LAYOUT`), and adding or multiplying constants (a bias, a scale),
    may lie in between."""
    ids = {start: np.arange(ev.values[start].size).reshape(ev.values[start].shape)}
    budget = ModelBudget(ev.source)
    for i in _path(ev, start, end):
        node = ev.nodes[i]
        live = [n for n in node.input if n in ids]
        if not any(o in ev.live for o in node.output):
            continue  # a shape read off the way (Shape, Size): its value is known
        if node.op_type in LAYOUT:
            inputs = [ids[n] if n in ids else (ev.values[n] if n else None) for n in node.input]
            outs = evaluate(node.op_type, inputs, ev.attrs[i], ev.label(i), budget)
        elif node.op_type in ("Add", "Sub", "Mul", "Div", "Cast") and len(live) == 1 and not any(
                n in ev.live and n not in ids for n in node.input):
            outs = [np.broadcast_to(ids[live[0]], ev.values[node.output[0]].shape)]
        else:
            raise ev.refuse(i, "lies between a value projection and the attention or output projection and changes "
                               "values; not an attention this reader follows")
        ids.update(zip(node.output, outs, strict=False))
    return ids[end]


def _value_heads(ev: Evaluated, attention: int, projection: str) -> np.ndarray:
    """Per head of the attention (rows), the projection output's column each value dimension
    is (a copy of): read at the first key position, the same at every other."""
    values = ev.nodes[attention].input[1]
    width = ev.values[projection].shape[-1]
    ids = positions(ev, projection, values)
    column = ids % width
    if ids.ndim < 2 or not (column == column[..., :1, :]).all():
        raise ev.refuse(attention, "reads values whose projection columns differ between positions; not an "
                                   "attention this reader follows")
    return column[..., 0, :].reshape(-1, ids.shape[-1])


def _output_rows(ev: Evaluated, attention: int, output_input: str) -> np.ndarray:
    """Per input row of the output projection, (head, value dimension) of the attention output
    it reads, read at the first position."""
    out = ev.nodes[attention].output[0]
    shape = ev.values[out].shape
    ids = positions(ev, out, output_input).reshape(-1, ev.values[output_input].shape[-1])[0]
    index = np.unravel_index(ids, shape)
    head = np.ravel_multi_index(index[:-2], shape[:-2]) if len(shape) > 2 else np.zeros_like(ids)
    if np.any(index[-2] != 0):
        raise ModelError(f"{ev.source}: the output projection after attention {ev.label(attention)} mixes positions; "
                         "not an attention this reader follows")
    return np.stack([head, index[-1]], axis=1)


def reading_scale(ev: Evaluated, tensor: str) -> np.ndarray | None:
    """The per-unit scale of the norm between the stream and a projection reading ``tensor``:
    a ``LayerNormalization``'s scale or a constant vector multiplied in (RMSNorm's weight); the
    normalisation itself (dividing by a per-position statistic, subtracting the mean, adding a
    bias) leaves units in place."""
    scale, width = None, ev.values[tensor].shape[-1]
    while tensor in ev.producer:
        node = ev.nodes[ev.producer[tensor]]
        live = [n for n in node.input if n in ev.live]
        if node.op_type not in NORM_PATH or not live:
            break
        if node.op_type == "LayerNormalization":
            gamma = ev.values[node.input[1]].reshape(-1)
            return gamma if scale is None else scale * gamma
        constant = [ev.values[n] for n in node.input if n and n not in ev.live]
        per_unit = [c for c in constant if c.size == width and c.shape[-1] == width]
        full = [n for n in live if ev.values[n].shape[-1] == width]
        if len(full) != 1:
            break  # a sum of two activations is the stream (a residual sum); a product of two, a gate
        if node.op_type == "Mul" and per_unit:
            scale = per_unit[0].reshape(-1) if scale is None else scale * per_unit[0].reshape(-1)
        tensor = full[0]
    return scale


def _name(ev: Evaluated, i: int, weight_name: str) -> str:
    """A weighted node's module path: its weight's name without ``.weight`` unless generated,
    else the exporter's name scope or node name."""
    if weight_name and not GENERATED_NAME.match(weight_name) and weight_name in ev.initialisers:
        return weight_name[: -len(".weight")] if weight_name.endswith(".weight") else weight_name
    node = ev.nodes[i]
    path = module_path(node) or legacy_path(node.name)
    return path[0] if path is not None and path[0] else node.name or node.output[0]


def _attention(ev: Evaluated, roles: Roles, out_node: int) -> tuple[Attention, np.ndarray | None]:
    """The :class:`Attention` of the output projection ``out_node``, and the scale of the norm
    before its value projection."""
    attention = roles.outputs[out_node]
    v_node = roles.values[attention]
    v_input, v_matrix = roles.weighted[v_node]
    heads = _value_heads(ev, attention, ev.nodes[v_node].output[0])
    o_input, o_matrix = roles.weighted[out_node]
    rows = _output_rows(ev, attention, o_input)
    kv: list[tuple[int, ...]] = []
    for h in heads:
        if tuple(h) not in kv:
            kv.append(tuple(h))
    n_heads, head_dim = heads.shape
    repeat = n_heads // len(kv) if n_heads % len(kv) == 0 else 0
    if not repeat or any(kv.index(tuple(h)) != i // repeat for i, h in enumerate(heads)):
        raise ev.refuse(attention, "shares value heads between query heads other than in consecutive groups; not an "
                                   "attention this reader follows")
    order = np.argsort(rows[:, 0] * head_dim + rows[:, 1], kind="stable")
    if not np.array_equal(rows[order, 0] * head_dim + rows[order, 1], np.arange(n_heads * head_dim)):
        raise ModelError(f"{ev.source}: the output projection {quoted(_name(ev, out_node, ''))} does not read every "
                         "value dimension of every head once; not an attention this reader follows")
    columns = np.concatenate([np.asarray(k) for k in kv])
    name = _name(ev, v_node, ev.nodes[v_node].input[1])
    return Attention(v_matrix[:, columns], o_matrix[order], n_heads, len(kv),
                     f"{name}.v" if v_node in roles.fused else name,
                     _name(ev, out_node, ev.nodes[out_node].input[1])), reading_scale(ev, v_input)


def _mlp(ev: Evaluated, roles: Roles, down: int) -> tuple[Mlp, np.ndarray | None]:
    """The :class:`Mlp` of down projection ``down`` and the scale of the norm before it."""
    ups = roles.downs[down]
    d_input, d_matrix = roles.weighted[down]
    gates = [u for u in ups if any(ev.nodes[i].op_type in NONLINEAR
                                   for i in _path(ev, ev.nodes[u].output[0], d_input))]
    if len(ups) > 2 or (len(ups) == 2 and len(gates) != 1):
        raise ev.refuse(down, f"reads {len(ups)} projections of the stream; an MLP reads one, or a gate and an up "
                              "projection")
    up = next(u for u in ups if u not in gates or len(ups) == 1)
    gate = gates[0] if len(ups) == 2 else None
    name = _name(ev, up, ev.nodes[up].input[1])
    mlp = Mlp(roles.weighted[up][1], d_matrix, name, _name(ev, down, ev.nodes[down].input[1]),
              None if gate is None else roles.weighted[gate][1],
              "" if gate is None else _name(ev, gate, ev.nodes[gate].input[1]))
    return mlp, reading_scale(ev, roles.weighted[up][0])


def transformer_of_onnx_graph(graph, source: str, to_array: Callable) -> NetworkWeights:
    """The weight graph's :class:`NetworkWeights` of the transformer in an ONNX ``GraphProto``
    (see the module docstring)."""
    ev = evaluate_graph(graph, source, to_array)
    roles = find_roles(ev)
    attentions = [_attention(ev, roles, o) for o in sorted(roles.outputs)]
    mlps = [_mlp(ev, roles, d) for d in sorted(roles.downs)]
    if not attentions or len(attentions) != len(mlps):
        raise ModelError(f"{source}: found {len(attentions)} attention and {len(mlps)} MLP layers; a transformer's "
                         "blocks have one of each")
    blocks = [Block(a, m, a_scale, m_scale) for (a, a_scale), (m, m_scale) in zip(attentions, mlps, strict=True)]
    return transformer_weights(blocks, blocks[0].attention.v.shape[0], source)


def mlp_unit_tensors(graph, source: str, to_array: Callable) -> list[tuple[str, str, int]]:
    """Where each MLP's hidden units live in a transformer's ONNX graph: per block, in order,
    (the tensor its down projection reads, the MLP's name as the weight graph names its units,
    the number of units), found as :func:`transformer_of_onnx_graph` finds the MLPs."""
    ev = evaluate_graph(graph, source, to_array)
    roles = find_roles(ev)
    out = []
    for down in sorted(roles.downs):
        mlp, _ = _mlp(ev, roles, down)
        tensor, matrix = roles.weighted[down]
        out.append((tensor, mlp.up_name, int(matrix.shape[0])))
    if not out:
        raise ModelError(f"{source}: no MLP found in this transformer; activation graphs of transformers are built from "
                         "their MLP units")
    return out
