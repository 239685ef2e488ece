"""Graphs of directed acyclic networks (method.md §3): residual sums and concatenations.

A network that is not a single chain of layers is described by its :class:`Wiring`: the
groups of nodes (the network input and the output units or channels of each weighted layer)
and, for each weighted layer that forms part of the graph, which group's units reach which
slice of its input units (:class:`Piece`). A sum (a residual ``Add``) gives a layer's input
units several sources: each summand's units connect to the layer's units with the layer's
weights. A concatenation gives each source its own slice of the input units. The edge block
between a source group and a layer holds |W| of the rows that source feeds (conv kernels
reduced to channel weights first), so a shuffle of the kernel moves every block derived from
it. The builder is :func:`~.graph.dag_graph`; a wiring that is a plain chain gives exactly
the layered :class:`~.graph.Graph`. Pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError
from .nodes import LayeredNodes

#: Entries of one piece of a row group laid out while the adjacency is built (32 MB of float64).
CHUNK_ENTRIES = 2**22


@dataclass(frozen=True)
class Piece:
    """Units ``[start, start + length)`` of group ``group`` arrive at input units
    ``[offset, offset + length)`` of a weighted layer, each multiplied by its ``scale`` (one
    factor per unit; empty: 1), a normalisation applied to this source only (method.md §3.3)."""

    group: int
    start: int
    offset: int
    length: int
    scale: tuple[float, ...] = ()


@dataclass(frozen=True)
class Feed:
    """The input of one weighted layer of the graph: the group its output units form
    (``target``) and the pieces its input units are made of."""

    target: int
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class Wiring:
    """The groups of a network's graph (names and sizes, in order), one :class:`Feed` per
    graph kernel, in kernel order, and (``kernels``) the position of each graph kernel among
    the network's kernels."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    feeds: tuple[Feed, ...]
    kernels: tuple[int, ...] = ()

    def is_chain(self) -> bool:
        """Whether the graph is a plain chain: kernel i joins all of group i to group i + 1."""
        return len(self.sizes) == len(self.feeds) + 1 and all(
            feed.target == i + 1 and feed.pieces == (Piece(i, 0, 0, self.sizes[i]),)
            for i, feed in enumerate(self.feeds)
        )


@dataclass(frozen=True, eq=False)
class DagGraph(LayeredNodes):
    """A weighted graph over the groups of a directed acyclic network.

    ``edges`` holds ``(source, target, block)`` with ``block`` (n_source, n_target) non-negative;
    nodes are ordered group by group. ``wiring`` is the network's, which maps kernels to groups. Unlike a chain's :class:`~.graph.Graph` it need not be
    bipartite, so it is clustered from its normalised adjacency.
    """

    sizes: tuple[int, ...]
    edges: tuple[tuple[int, int, np.ndarray], ...]
    wiring: Wiring | None = None

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Number of nodes per group, in order."""
        return self.sizes

    @cached_property
    def adjacency(self) -> sp.csr_array:
        """The symmetric (n, n) sparse adjacency (blocks between the same pair of groups add),
        in canonical form (sorted column indices, no duplicates, no stored zeros).

        Built row group by row group: the group's blocks (and the transposes of the blocks that
        end in it) are laid side by side in the column order of their groups, in chunks of
        :data:`CHUNK_ENTRIES` entries, and their non-zero entries read off row by row, so the
        cost is one pass over the blocks with no sorting."""
        starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        n = self.n_nodes
        rows_of: dict[int, list[tuple[int, np.ndarray]]] = {}
        for source, target, block in self.edges:
            rows_of.setdefault(source, []).append((target, block))
            rows_of.setdefault(target, []).append((source, block.T))
        nnz = sum(2 * int(np.count_nonzero(block)) for _, _, block in self.edges)
        index = np.int32 if max(n, nnz) < 2**31 else np.int64  # int32: half the memory of int64
        indptr, indices, data = np.zeros(n + 1, index), [], []
        for g in sorted(rows_of):
            neighbours = sorted({h for h, _ in rows_of[g]})
            offset = dict(zip(neighbours, np.cumsum([0] + [self.sizes[h] for h in neighbours[:-1]]), strict=True))
            columns = np.concatenate([np.arange(starts[h], starts[h + 1], dtype=index) for h in neighbours])
            step = max(1, CHUNK_ENTRIES // len(columns))
            for r0 in range(0, self.sizes[g], step):
                r1 = min(r0 + step, self.sizes[g])
                local = np.zeros((r1 - r0, len(columns)))
                for h, block in rows_of[g]:
                    local[:, offset[h] : offset[h] + self.sizes[h]] += block[r0:r1]
                nonzero = local != 0
                if nonzero.all():  # dense blocks (a transformer's): every entry, row by row
                    indices.append(np.tile(columns, r1 - r0))
                    data.append(local.ravel())
                    indptr[starts[g] + r0 + 1 : starts[g] + r1 + 1] = len(columns)
                    continue
                r, c = np.nonzero(nonzero)
                indices.append(columns[c])
                data.append(local[r, c])
                indptr[starts[g] + r0 + 1 : starts[g] + r1 + 1] = np.bincount(r, minlength=r1 - r0)
        np.cumsum(indptr, out=indptr)
        if not data:
            return sp.csr_array((n, n))
        return sp.csr_array((np.concatenate(data), np.concatenate(indices), indptr), shape=(n, n))

    @cached_property
    def degrees(self) -> np.ndarray:
        """Weighted degree of every node."""
        return np.asarray(self.adjacency.sum(axis=1)).ravel()

    @cached_property
    def active(self) -> np.ndarray:
        """Boolean mask of the nodes with non-zero degree (the ones that get clustered)."""
        return self.degrees > 0

    def without_isolated(self, dense: bool = False) -> tuple[sp.csr_array | np.ndarray, np.ndarray]:
        """Adjacency restricted to non-isolated nodes (dense array or CSR), and their groups."""
        keep = np.flatnonzero(self.active)
        sub = self.adjacency if len(keep) == self.n_nodes else self.adjacency[keep][:, keep]
        return (sub.toarray() if dense else sp.csr_array(sub)), self.layer_of_node[keep]

    def without_dead_ends(self) -> DagGraph:
        """The graph without the edges of nodes on no input-to-output path (method.md §8).

        Inputs are the groups that no edge enters, outputs those that no edge leaves; a node of
        any other group with edges on one side only is cut off, until none is left."""
        blocks = [(s, t, b.copy()) for s, t, b in self.edges]
        hidden = {t for _, t, _ in blocks} & {s for s, _, _ in blocks}
        changed = True
        while changed:
            changed = False
            for g in sorted(hidden):
                has_in = np.zeros(self.sizes[g], bool)
                has_out = np.zeros(self.sizes[g], bool)
                for s, t, b in blocks:
                    if t == g:
                        has_in |= b.any(axis=0)
                    if s == g:
                        has_out |= b.any(axis=1)
                dead = has_in != has_out
                if dead.any():
                    for s, t, b in blocks:
                        if t == g:
                            b[:, dead] = 0.0
                        if s == g:
                            b[dead, :] = 0.0
                    changed = True
        return DagGraph(self.sizes, tuple(blocks), self.wiring)

    def kernel_units(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per graph kernel, which of its input units (fed by at least one non-isolated node)
        and output units (its group's nodes) are non-isolated."""
        if self.wiring is None:
            raise GraphError("this graph was built without its wiring; build it with dag_graph")
        active = self.split_by_layer(self.active)
        out = []
        for feed in self.wiring.feeds:
            rows = np.zeros(max(p.offset + p.length for p in feed.pieces), bool)
            for p in feed.pieces:
                rows[p.offset : p.offset + p.length] |= active[p.group][p.start : p.start + p.length]
            out.append((rows, active[feed.target]))
        return out


def check_wiring(wiring: Wiring, matrices: Sequence[np.ndarray]) -> None:
    """The (in, out) weight matrices must match the wiring: one per feed, as many outputs as
    the target group has units, and every piece inside its group and the layer's inputs."""
    if len(matrices) != len(wiring.feeds):
        raise GraphError(f"{len(matrices)} kernels for a wiring of {len(wiring.feeds)} layers; pass one "
                         "kernel per weighted layer of the graph")
    for i, (feed, m) in enumerate(zip(wiring.feeds, matrices, strict=True)):
        name = wiring.names[feed.target]
        if m.shape[1] != wiring.sizes[feed.target]:
            raise GraphError(f"kernel {i} ({name}) has {m.shape[1]} outputs but its group has "
                             f"{wiring.sizes[feed.target]} units")
        for p in feed.pieces:
            if p.start + p.length > wiring.sizes[p.group] or p.offset + p.length > m.shape[0]:
                raise GraphError(f"kernel {i} ({name}): a piece of {wiring.names[p.group]} reaches "
                                 f"past its units or the kernel's {m.shape[0]} inputs")


def dag_blocks(matrices: Sequence[np.ndarray], wiring: Wiring) -> list[tuple[int, int, np.ndarray]]:
    """The edge blocks of a wiring from its (non-negative) weight matrices: per feed and source
    group, the rows of the matrix that group feeds, placed at the group's units (blocks of the
    same pair of groups summed). A group whose kernels are all zero (a zero-initialised
    residual branch) outputs constants, so it passes nothing on: its nodes get no edges
    (method.md §3.3). A group that several kernels write (a transformer's stream) is silent only
    when every one of them is zero."""
    writes: dict[int, bool] = {}
    for feed, m in zip(wiring.feeds, matrices, strict=True):
        writes[feed.target] = writes.get(feed.target, False) or bool(m.any())
    silent = {group for group, writing in writes.items() if not writing}
    blocks: dict[tuple[int, int], np.ndarray] = {}
    for feed, m in zip(wiring.feeds, matrices, strict=True):
        for p in (p for p in feed.pieces if p.group not in silent and feed.target not in silent):
            key = (p.group, feed.target)
            if key not in blocks:
                blocks[key] = np.zeros((wiring.sizes[p.group], m.shape[1]))
            rows = m[p.offset : p.offset + p.length]
            blocks[key][p.start : p.start + p.length] += np.abs(np.asarray(p.scale))[:, None] * rows if p.scale else rows
    return [(s, t, b) for (s, t), b in blocks.items()]
