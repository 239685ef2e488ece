"""A transformer's weight graph (method.md §3.5), from a framework-neutral description of its
blocks that each model family's reader fills in (:mod:`nn_clustering.formats.hf`).

The graph's groups: the residual stream (``stream``, d_model units, which every block reads
from and writes into), and per block the attention's value units (the heads' value
dimensions) and the MLP's hidden units (for a gated MLP, the gate's and the up projection's
units). Edges: the value projection (stream -> values), the output projection (values ->
stream: query head h reads the value units of its key/value head, so grouped-query heads share
them), the MLP's input projections (stream -> hidden) and its output projection (hidden ->
stream; a gated MLP's down projection reads the gate's and the up projection's unit i at its
input i). A norm's per-unit scale before a reading projection is folded into that projection's
rows (§3.3). Queries and keys set the attention pattern and carry no units forward: they are
not edges. Embeddings, positions and the unembedding are left out, as a CNN's graph leaves the
image and its head out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.dag import Feed, Piece, Wiring
from ..core.enums import Architecture
from ..core.graph import NetworkWeights
from ..errors import ModelError


@dataclass
class Attention:
    """One attention layer: value projection ``v`` (d_model, n_kv_heads * head_dim) and output
    projection ``o`` (n_heads * head_dim, d_model), both (in, out) with head-major columns/rows;
    ``name`` is the module path its value units are reported under."""

    v: np.ndarray
    o: np.ndarray
    n_heads: int
    n_kv_heads: int
    name: str
    o_name: str


@dataclass
class Mlp:
    """One MLP: ``up`` (d_model, d_mlp) and ``down`` (d_mlp, d_model), (in, out); ``gate`` for a
    gated MLP (SwiGLU: down reads gate_i * up_i)."""

    up: np.ndarray
    down: np.ndarray
    up_name: str
    down_name: str
    gate: np.ndarray | None = None
    gate_name: str = ""


@dataclass
class Block:
    """One block in pre-norm form: the per-unit scales of the norms before its attention and
    before its MLP read the stream (None: 1). A post-norm model (BERT) is described this way
    too: the norm after a sum scales the stream's units for the layers that read it next."""

    attention: Attention
    mlp: Mlp
    norm_attention: np.ndarray | None = None
    norm_mlp: np.ndarray | None = None


def _scaled(matrix: np.ndarray, norm: np.ndarray | None) -> np.ndarray:
    """A reading projection with the norm's scale folded into its rows."""
    return matrix if norm is None else matrix * norm[:, None]


def _check(blocks: list[Block], d_model: int, source: str) -> None:
    """The projections' shapes must agree with d_model and the head counts."""
    for i, b in enumerate(blocks):
        a, m = b.attention, b.mlp
        if a.n_heads % a.n_kv_heads or a.v.shape[1] % a.n_kv_heads or a.o.shape[0] != a.v.shape[1] * (a.n_heads // a.n_kv_heads):
            raise ModelError(f"{source}: block {i}: value projection {a.v.shape} and output projection {a.o.shape} "
                             f"do not fit {a.n_heads} heads sharing {a.n_kv_heads} key/value heads")
        shapes = [a.v.shape[0], a.o.shape[1], m.up.shape[0], m.down.shape[1]]
        if any(s != d_model for s in shapes) or m.down.shape[0] != m.up.shape[1] or (
                m.gate is not None and m.gate.shape != m.up.shape):
            raise ModelError(f"{source}: block {i}: projections of shapes {a.v.shape}, {a.o.shape}, {m.up.shape}, "
                             f"{m.down.shape} do not fit a stream of {d_model} units; the config and the tensors "
                             "disagree")


def transformer_weights(blocks: list[Block], d_model: int, source: str) -> NetworkWeights:
    """The :class:`NetworkWeights` of a transformer: its projections as kernels and the wiring
    of the module docstring (the stream is group 0)."""
    if not blocks:
        raise ModelError(f"{source}: the checkpoint has no transformer blocks")
    _check(blocks, d_model, source)
    names, sizes, feeds, kernels, kernel_names = ["stream"], [d_model], [], [], []

    def layer(kernel: np.ndarray, name: str, pieces: tuple[Piece, ...], group: str | None) -> int:
        """Add a kernel whose output is a new group (``group``) or the stream (None)."""
        target = 0
        if group is not None:
            names.append(group)
            sizes.append(kernel.shape[1])
            target = len(names) - 1
        feeds.append(Feed(target, pieces))
        kernels.append(kernel)
        kernel_names.append(name)
        return target

    stream = (Piece(0, 0, 0, d_model),)
    for b in blocks:
        a, m = b.attention, b.mlp
        values = layer(_scaled(a.v, b.norm_attention), a.name, stream, a.name)
        head_dim, repeat = a.v.shape[1] // a.n_kv_heads, a.n_heads // a.n_kv_heads
        layer(a.o, a.o_name, tuple(Piece(values, (h // repeat) * head_dim, h * head_dim, head_dim)
                                   for h in range(a.n_heads)), None)
        hidden = [] if m.gate is None else [layer(_scaled(m.gate, b.norm_mlp), m.gate_name, stream, m.gate_name)]
        hidden.append(layer(_scaled(m.up, b.norm_mlp), m.up_name, stream, m.up_name))
        layer(m.down, m.down_name, tuple(Piece(g, 0, 0, m.up.shape[1]) for g in hidden), None)
    wiring = Wiring(tuple(names), tuple(sizes), tuple(feeds), tuple(range(len(kernels))))
    biases = [np.zeros(k.shape[1]) for k in kernels]
    return NetworkWeights(kernels, biases, Architecture.MLP, source, kernel_names, wiring)
