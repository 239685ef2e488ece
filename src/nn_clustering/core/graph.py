"""Weights to graph (method.md §3): pure numpy/scipy, no TensorFlow.

Every reader of :mod:`nn_clustering.formats` produces a :class:`NetworkWeights`, the one
framework-neutral description of a network (kernels in layer order, and a
:class:`~nn_clustering.core.dag.Wiring` where it is not a chain); :func:`graph_inputs` says which
of its kernels form the graph and which builder makes it.

An MLP with kernels W_0..W_{L-1} (W_l of shape (n_l, n_{l+1})) becomes a graph with one node
per neuron of every layer, inputs and outputs included, ordered layer by layer. The symmetric
adjacency holds |W_l| between layer l and l+1 and nothing else (no biases, no self-loops).
A CNN's conv kernels (h, w, in, out) become the channel graph: the edge between input channel i
and output channel j weighs the entrywise L1 (or L2) norm of the slice K[:, :, i, j].

Nodes of degree 0 are removed before clustering; :class:`Graph` keeps the mask that maps
labels back to every neuron (-1 for removed nodes). As an option beyond the paper (method.md §8), nodes on no
input-to-output path can be removed the same way (:meth:`Graph.without_dead_ends`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError, ModelError
from .dag import DagGraph, Wiring, check_wiring, dag_blocks
from .enums import Architecture, SliceNorm
from .nodes import LayeredNodes

GraphBuilder = Callable[[Sequence[np.ndarray]], "Graph"]


@dataclass
class NetworkWeights:
    """Kernels (and biases where known) in layer order, and the network kind.

    ``kind`` is :attr:`Architecture.MLP` for Dense kernels (in, out) only and
    :attr:`Architecture.CNN` when conv kernels (h, w, in, out) come first. ``names`` are the
    layers' names where the file records them. ``wiring`` describes a network that is not a
    single chain (residual sums, concatenations); None for a chain of layers.
    """

    kernels: list[np.ndarray]
    biases: list[np.ndarray] = field(default_factory=list)
    kind: Architecture = Architecture.MLP
    source: str = ""
    names: list[str] = field(default_factory=list)
    wiring: Wiring | None = None

    @classmethod
    def from_arrays(cls, kernels, biases=(), source: str = "") -> NetworkWeights:
        """Weights from kernels in layer order (the kind follows from their ranks)."""
        kernels = [np.asarray(k) for k in kernels]
        return cls(kernels, [np.asarray(b) for b in biases], network_kind(kernels, source), source)

    def layer_name(self, i: int) -> str:
        """The name of weighted layer i (``kernel_i`` where the file records none)."""
        return self.names[i] if i < len(self.names) else f"kernel_{i}"

    @property
    def conv_kernels(self) -> list[np.ndarray]:
        """The conv kernels (4-D), in order; empty for an MLP."""
        return [k for k in self.kernels if np.ndim(k) == 4]


def network_kind(kernels: list[np.ndarray], source: str = "") -> Architecture:
    """``cnn`` if there are conv kernels (which must come before any dense one), else ``mlp``."""
    dims = [np.ndim(k) for k in kernels]
    if 4 not in dims:
        return Architecture.MLP
    if dims != sorted(dims, reverse=True) or set(dims) - {2, 4}:
        raise ModelError(
            f"{source or 'weights'}: kernel ranks {dims}; expected conv kernels (4-D) followed by dense "
            "ones (2-D), in layer order"
        )
    return Architecture.CNN


@dataclass(frozen=True, eq=False)
class Graph(LayeredNodes):
    """A layered weighted graph over the neurons (or channels) of a network.

    ``blocks[l]`` holds the (non-negative) edge weights between layer l and layer l + 1, of
    shape (n_l, n_{l+1}); there are no other edges, so the graph is bipartite between even
    and odd layers. Nodes are ordered layer by layer. The symmetric adjacency, dense or
    sparse, is derived from the blocks.
    """

    blocks: tuple[np.ndarray, ...]

    @cached_property
    def layer_sizes(self) -> tuple[int, ...]:
        """Number of nodes per layer, in order."""
        return _layer_sizes(self.blocks)

    @cached_property
    def degrees(self) -> np.ndarray:
        """Weighted degree of every node."""
        per_layer = [np.zeros(n) for n in self.layer_sizes]
        for layer, block in enumerate(self.blocks):
            per_layer[layer] += block.sum(axis=1)
            per_layer[layer + 1] += block.sum(axis=0)
        return np.concatenate(per_layer)

    @cached_property
    def active(self) -> np.ndarray:
        """Boolean mask of the nodes with non-zero degree (the ones that get clustered)."""
        return self.degrees > 0

    @cached_property
    def adjacency(self) -> sp.csr_matrix:
        """The symmetric (n, n) sparse adjacency over all nodes."""
        return _sparse_adjacency(self.blocks)

    def active_blocks(self) -> list[np.ndarray]:
        """The blocks restricted to non-isolated nodes (a block without isolated nodes is
        returned itself, not copied: read, do not write)."""
        keep = np.split(self.active, np.cumsum(self.layer_sizes)[:-1])
        return [
            b if keep[i].all() and keep[i + 1].all() else b[np.ix_(keep[i], keep[i + 1])]
            for i, b in enumerate(self.blocks)
        ]

    def without_isolated(self, dense: bool = False) -> tuple[sp.csr_matrix | np.ndarray, np.ndarray]:
        """Adjacency restricted to non-isolated nodes (dense array or CSR), and their layers."""
        blocks = self.active_blocks()
        layers = self.layer_of_node[self.active]
        if not dense:
            return _sparse_adjacency(blocks), layers
        offsets = np.concatenate([[0], np.cumsum(_layer_sizes(blocks))])
        out = np.zeros((offsets[-1], offsets[-1]))
        for layer, block in enumerate(blocks):
            rows = slice(offsets[layer], offsets[layer + 1])
            cols = slice(offsets[layer + 1], offsets[layer + 2])
            out[rows, cols] = block
            out[cols, rows] = block.T
        return out, layers

    def bipartite_block(self, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph as one bipartite block over its non-isolated nodes.

        Returns ``(B, even, odd)``: B[i, j] is the edge weight between the i-th node of the
        even layers and the j-th node of the odd layers, times ``scale`` of both nodes when
        given (one factor per non-isolated node, layer order: the row node's factor first,
        then the column node's, as :func:`~nn_clustering.core.spectral.scaled` multiplies);
        ``even`` and ``odd`` are those nodes' positions among the non-isolated nodes.
        """
        blocks = self.active_blocks()
        sizes = _layer_sizes(blocks)
        factors = None if scale is None else np.split(scale, np.cumsum(sizes)[:-1])
        position = {}  # layer -> slice inside its side
        side_size = [0, 0]
        for layer, size in enumerate(sizes):
            side = layer % 2
            position[layer] = slice(side_size[side], side_size[side] + size)
            side_size[side] += size
        out = np.zeros((side_size[0], side_size[1]))
        for layer, block in enumerate(blocks):
            row, col = (layer, layer + 1) if layer % 2 == 0 else (layer + 1, layer)
            piece = block if layer % 2 == 0 else block.T
            if factors is not None:
                piece = piece * factors[row][:, None] * factors[col][None, :]
            out[position[row], position[col]] = piece
        parity = self.layer_of_node[self.active] % 2
        return out, np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)

    def sparse_bipartite_block(self) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
        """:meth:`bipartite_block` as a sparse CSR matrix, built from the non-zero entries alone
        (no dense block and no dense copy of a layer): memory grows with the edges."""
        sizes = self.layer_sizes
        active = np.split(self.active, np.cumsum(sizes)[:-1])
        position = [np.cumsum(a) - 1 for a in active]  # node -> its index among the layer's active ones
        offset = [0, 0]
        start = []
        for layer, a in enumerate(active):
            start.append(offset[layer % 2])
            offset[layer % 2] += int(a.sum())
        rows, cols, values = [], [], []
        for layer, block in enumerate(self.blocks):
            r, c = np.nonzero(block)  # every edge joins two active nodes
            values.append(block[r, c])
            r, c = position[layer][r] + start[layer], position[layer + 1][c] + start[layer + 1]
            if layer % 2:
                r, c = c, r
            rows.append(r)
            cols.append(c)
        out = sp.csr_array((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(offset[0], offset[1]))
        parity = self.layer_of_node[self.active] % 2
        return out, np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)

    def kernel_units(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per block (kernel) l, which of its input units (layer l) and output units (layer
        l + 1) are non-isolated nodes."""
        active = self.split_by_layer(self.active)
        return [(active[i], active[i + 1]) for i in range(len(self.blocks))]

    def without_dead_ends(self) -> Graph:
        """The graph without the edges of nodes that lie on no input-to-output path.

        A hidden node with no edge to the next layer, or none from the previous one, cannot
        affect the output; its edges are removed, which may strand further nodes, until none
        is left. The removed nodes then have degree 0 and get label -1 like isolated ones.
        (Pruning to 90% leaves dozens, mostly last-hidden-layer units whose few outgoing
        weights were all pruned; the spectral embedding, divided by sqrt(degree), can give
        such weakly attached units and the pixels feeding them clusters of their own.)
        """
        blocks = [b.copy() for b in self.blocks]
        changed = True
        while changed:
            changed = False
            for layer in range(len(blocks) - 1):  # nodes of hidden layer layer + 1
                into, out_of = blocks[layer], blocks[layer + 1]
                has_in, has_out = into.any(axis=0), out_of.any(axis=1)
                dead = has_in != has_out  # an edge on one side only
                if dead.any():
                    into[:, dead] = 0.0
                    out_of[dead, :] = 0.0
                    changed = True
        return Graph(tuple(blocks))


def _layer_sizes(blocks: Sequence[np.ndarray]) -> tuple[int, ...]:
    """Nodes per layer of a chain of blocks (n_0, n_1), (n_1, n_2), ..."""
    return (blocks[0].shape[0],) + tuple(b.shape[1] for b in blocks)


def _sparse_adjacency(blocks: Sequence[np.ndarray]) -> sp.csr_matrix:
    """Symmetric CSR adjacency with each block between consecutive layers."""
    sizes = _layer_sizes(blocks)
    grid: list[list] = [[None] * len(sizes) for _ in sizes]
    for layer, size in enumerate(sizes):  # sized empty diagonal blocks keep every layer
        grid[layer][layer] = sp.csr_matrix((size, size))
    for layer, block in enumerate(blocks):
        grid[layer][layer + 1] = sp.csr_matrix(block)
        grid[layer + 1][layer] = sp.csr_matrix(block.T)
    return sp.csr_matrix(sp.bmat(grid, format="csr"))


def check_kernels(kernels: Sequence[np.ndarray], what: str = "kernel", chain: bool = True,
                  names: Sequence[str] | None = None) -> list[np.ndarray]:
    """Validate 2-D weight matrices: real numbers, finite, non-empty, and (with ``chain``)
    shapes that chain and none all zero (in a chain it disconnects the network; elsewhere a
    zero kernel, such as a zero-initialised residual branch, only leaves its units without
    those edges). Returns them as float64 arrays. Raises :class:`GraphError` naming the first
    bad matrix (by ``names``, when given)."""
    if len(kernels) == 0:
        raise GraphError(f"no {what}s given; pass at least one weight matrix")
    out = []
    for i, k in enumerate(kernels):
        label = f"{what} {i}" if names is None else f"{what} {i} ({names[i]})"
        arr = _checked_matrix(k, label)
        if chain and not arr.any():
            raise GraphError(f"{label} is all zeros; the layer disconnects the network, so there is nothing to cluster")
        if chain and out and out[-1].shape[1] != arr.shape[0]:
            raise GraphError(
                f"{what}s do not chain: {what} {i - 1} has {out[-1].shape[1]} outputs but {what} {i} "
                f"has {arr.shape[0]} inputs; pass the kernels in layer order"
            )
        out.append(arr)
    if not any(m.any() for m in out):
        raise GraphError(f"every {what} is all zeros; the network has no edges, so there is nothing to cluster")
    return out


def _checked_matrix(k: np.ndarray, label: str) -> np.ndarray:
    """One weight matrix as float64: real, numeric, 2-D, non-empty and finite."""
    raw = np.asarray(k)
    if np.iscomplexobj(raw):
        raise GraphError(f"{label} has complex weights ({raw.dtype}); a weight graph needs real "
                         "weights: pass the real kernels of the network")
    if raw.dtype == bool or not np.issubdtype(raw.dtype, np.number):
        raise GraphError(f"{label} holds {raw.dtype} values, not numbers; save the kernels as "
                         "float arrays (numpy.savez(path, *kernels))")
    arr = raw.astype(np.float64, copy=False)
    if arr.ndim != 2:
        raise GraphError(f"{label} has shape {arr.shape}; expected a 2-D (inputs, outputs) matrix")
    if arr.size == 0:
        raise GraphError(f"{label} is empty (shape {arr.shape}); every layer needs at least one unit")
    if not np.isfinite(arr).all():
        raise GraphError(f"{label} has {int(np.count_nonzero(~np.isfinite(arr)))} NaN/inf weights; the model "
                         "diverged or the file is corrupt: retrain or re-save it")
    return arr


#: Weights whose largest magnitude lies outside 2**-EXPONENT_LIMIT .. 2**EXPONENT_LIMIT are rescaled.
EXPONENT_LIMIT = 100


def exact_scale(matrices: Sequence[np.ndarray]) -> int:
    """An even exponent s such that 2**s brings the largest |w| of ``matrices`` near 1 when it
    lies outside 2**-100 .. 2**100 (else 0).

    Scaling every weight of a graph by one constant changes no clustering and no n-cut (the
    normalised adjacency and every cut / volume ratio are invariant), and scaling by an even power
    of two is exact in floating point, square roots of degrees included. It keeps the spectral
    embedding, which divides by sqrt(degree), finite for subnormal or huge weights."""
    top = max(max(abs(float(m.max())), abs(float(m.min()))) for m in matrices)
    exponent = int(np.frexp(top)[1])
    return 0 if abs(exponent) <= EXPONENT_LIMIT else -2 * (exponent // 2)


def layered_graph(matrices: Sequence[np.ndarray]) -> Graph:
    """Build the symmetric layered graph with |M_l| between consecutive layers (rescaled by
    :func:`exact_scale` when the weights are extremely small or large)."""
    checked = check_kernels(matrices)
    shift = exact_scale(checked)  # np.ldexp multiplies by 2**shift exactly, even for subnormals
    return Graph(tuple(np.ldexp(np.abs(m), shift) if shift else np.abs(m) for m in checked))


def mlp_graph(kernels: Sequence[np.ndarray]) -> Graph:
    """The neuron graph of an MLP from its Dense kernels in layer order (method.md §3)."""
    return layered_graph(kernels)


def conv_channel_weights(kernel: np.ndarray, norm: SliceNorm | str = SliceNorm.L1) -> np.ndarray:
    """(in, out) edge weights of a conv kernel (h, w, in, out): norm of each K[:, :, i, j]."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 4:
        raise GraphError(f"conv kernel has shape {k.shape}; expected (height, width, in, out)")
    if norm == SliceNorm.L1:
        return np.abs(k).sum(axis=(0, 1))
    if norm == SliceNorm.L2:
        return np.sqrt((k * k).sum(axis=(0, 1)))
    if norm == SliceNorm.INDUCED_L1:
        return np.abs(k).sum(axis=0).max(axis=0)
    raise GraphError(f"unknown slice norm {norm!r}; use one of {', '.join(SliceNorm.values())}")


def cnn_graph(conv_kernels: Sequence[np.ndarray], norm: SliceNorm | str = SliceNorm.L1) -> Graph:
    """The channel graph of a CNN from its conv-to-conv kernels in order (method.md §3)."""
    return layered_graph([conv_channel_weights(k, norm) for k in conv_kernels])


def dag_graph(kernels: Sequence[np.ndarray], wiring: Wiring, norm: SliceNorm | str = SliceNorm.L1):
    """The graph of a directed acyclic network from its graph kernels and wiring.

    Conv kernels (h, w, in, out) become (in, out) channel weights (``norm`` of each slice) as in
    a chain's channel graph. A chain wiring gives exactly :func:`layered_graph`'s
    :class:`Graph`; anything else a :class:`DagGraph`.
    """
    matrices = [conv_channel_weights(k, norm) if np.ndim(k) == 4 else k for k in kernels]
    if wiring.is_chain():
        return layered_graph(matrices)
    checked = check_kernels(matrices, chain=False, names=[wiring.names[f.target] for f in wiring.feeds])
    check_wiring(wiring, checked)
    shift = exact_scale(checked)
    absolute = [np.ldexp(np.abs(m), shift) if shift else np.abs(m) for m in checked]
    return DagGraph(tuple(wiring.sizes), tuple(dag_blocks(absolute, wiring)), wiring)


def graph_inputs(
    weights: NetworkWeights, norm: SliceNorm | str = SliceNorm.L1, drop_dead_ends: bool = False
) -> tuple[list[np.ndarray], GraphBuilder]:
    """The kernels that form the graph and its builder: all MLP kernels, or the conv-to-conv
    kernels of a CNN (method.md §3); with ``drop_dead_ends`` the builder also removes the
    nodes on no input-to-output path (:meth:`Graph.without_dead_ends`, method.md §8)."""
    if weights.wiring is not None:
        kernels = [weights.kernels[i] for i in weights.wiring.kernels]
        builder = partial(dag_graph, wiring=weights.wiring, norm=norm)
    elif weights.kind == Architecture.CNN:
        conv = weights.conv_kernels
        if len(conv) < 2:
            raise GraphError(
                f"{weights.source}: a CNN needs at least two conv layers for a channel graph "
                f"(found {len(conv)}); only conv-to-conv kernels form it"
            )
        kernels, builder = list(conv[1:]), partial(cnn_graph, norm=norm)
    else:
        kernels, builder = list(weights.kernels), mlp_graph
    return kernels, partial(_live_graph, builder) if drop_dead_ends else builder


def group_names(weights: NetworkWeights) -> list[str]:
    """The name of each group of nodes of the network's graph, in node order: the network
    input (``input``) and each weighted layer's outputs under the layer's name (method.md §3)."""
    if weights.wiring is not None:
        return list(weights.wiring.names)
    if weights.kind == Architecture.CNN:
        conv = [i for i, k in enumerate(weights.kernels) if np.ndim(k) == 4]
        return [weights.layer_name(i) for i in conv]
    return ["input"] + [weights.layer_name(i) for i in range(len(weights.kernels))]


def _live_graph(builder: GraphBuilder, kernels: Sequence[np.ndarray]) -> Graph:
    """``builder(kernels)`` without its dead ends (a module-level function, so it pickles)."""
    return builder(kernels).without_dead_ends()
