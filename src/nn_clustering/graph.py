"""Weights to graph (SPEC section 3): pure numpy/scipy, no TensorFlow.

An MLP with kernels W_0..W_{L-1} (W_l of shape (n_l, n_{l+1})) becomes a graph with one node
per neuron of every layer, inputs and outputs included, ordered layer by layer. The symmetric
adjacency holds |W_l| between layer l and l+1 and nothing else (no biases, no self-loops).
A CNN's conv kernels (h, w, in, out) become the channel graph: the edge between input channel i
and output channel j weighs the entrywise L1 (or L2) norm of the slice K[:, :, i, j].

Nodes of degree 0 are removed before clustering; :class:`Graph` keeps the mask that maps
labels back to every neuron (-1 for removed nodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from .errors import GraphError

SliceNorm = Literal["l1", "l2"]


@dataclass(frozen=True)
class Graph:
    """A layered weighted graph over the neurons (or channels) of a network.

    ``adjacency`` is the symmetric (n, n) CSR matrix over *all* nodes; ``layer_sizes`` gives
    the number of nodes per layer in order. Derived views drop isolated nodes.
    """

    adjacency: sp.csr_matrix
    layer_sizes: tuple[int, ...]

    @property
    def n_nodes(self) -> int:
        """Number of nodes, isolated ones included."""
        return int(sum(self.layer_sizes))

    @property
    def layer_of_node(self) -> np.ndarray:
        """Layer index of every node."""
        return np.repeat(np.arange(len(self.layer_sizes)), self.layer_sizes)

    @property
    def degrees(self) -> np.ndarray:
        """Weighted degree of every node."""
        return np.asarray(self.adjacency.sum(axis=1)).ravel()

    @property
    def active(self) -> np.ndarray:
        """Boolean mask of the nodes with non-zero degree (the ones that get clustered)."""
        return self.degrees > 0

    def without_isolated(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The adjacency restricted to non-isolated nodes, and the layer of each kept node."""
        keep = self.active
        idx = np.flatnonzero(keep)
        return self.adjacency[idx][:, idx].tocsr(), self.layer_of_node[keep]

    def expand_labels(self, labels: np.ndarray) -> np.ndarray:
        """Map labels of the non-isolated nodes back to every node, -1 for isolated ones."""
        keep = self.active
        if len(labels) != int(keep.sum()):
            raise ValueError(f"{len(labels)} labels for {int(keep.sum())} non-isolated nodes")
        full = np.full(self.n_nodes, -1, dtype=np.int64)
        full[keep] = labels
        return full

    def split_by_layer(self, values: np.ndarray) -> list[np.ndarray]:
        """Split a per-node array into one array per layer."""
        return np.split(np.asarray(values), np.cumsum(self.layer_sizes)[:-1])


def check_kernels(kernels: Sequence[np.ndarray], what: str = "kernel") -> list[np.ndarray]:
    """Validate a chain of 2-D weight matrices: finite, non-empty, not all zero, shapes chain.

    Returns them as float64 arrays. Raises :class:`GraphError` naming the first bad matrix.
    """
    if len(kernels) == 0:
        raise GraphError(f"no {what}s given; pass at least one weight matrix")
    out = []
    for i, k in enumerate(kernels):
        arr = np.asarray(k, dtype=np.float64)
        if arr.ndim != 2:
            raise GraphError(f"{what} {i} has shape {arr.shape}; expected a 2-D (inputs, outputs) matrix")
        if arr.size == 0:
            raise GraphError(f"{what} {i} is empty (shape {arr.shape}); every layer needs at least one unit")
        bad = ~np.isfinite(arr)
        if bad.any():
            raise GraphError(
                f"{what} {i} has {int(bad.sum())} NaN/inf weights; the model diverged or the file "
                "is corrupt: retrain or re-save it"
            )
        if not arr.any():
            raise GraphError(f"{what} {i} is all zeros; the layer disconnects the network, so there is nothing to cluster")
        if out and out[-1].shape[1] != arr.shape[0]:
            raise GraphError(
                f"{what}s do not chain: {what} {i - 1} has {out[-1].shape[1]} outputs but {what} {i} "
                f"has {arr.shape[0]} inputs; pass the kernels in layer order"
            )
        out.append(arr)
    return out


def layered_graph(matrices: Sequence[np.ndarray]) -> Graph:
    """Build the symmetric layered graph with |M_l| between consecutive layers."""
    mats = check_kernels(matrices)
    sizes = (mats[0].shape[0],) + tuple(m.shape[1] for m in mats)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows, cols, vals = [], [], []
    for layer, m in enumerate(mats):
        r, c = np.nonzero(m)
        rows.append(r + offsets[layer])
        cols.append(c + offsets[layer + 1])
        vals.append(np.abs(m[r, c]))
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    v = np.concatenate(vals)
    n = int(offsets[-1])
    upper = sp.coo_matrix((v, (r, c)), shape=(n, n))
    adjacency = (upper + upper.T).tocsr()
    return Graph(adjacency, sizes)


def mlp_graph(kernels: Sequence[np.ndarray]) -> Graph:
    """The neuron graph of an MLP from its Dense kernels in layer order (SPEC section 3)."""
    return layered_graph(kernels)


def conv_channel_weights(kernel: np.ndarray, norm: SliceNorm = "l1") -> np.ndarray:
    """(in, out) edge weights of a conv kernel (h, w, in, out): norm of each K[:, :, i, j]."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 4:
        raise GraphError(f"conv kernel has shape {k.shape}; expected (height, width, in, out)")
    if norm == "l1":
        return np.abs(k).sum(axis=(0, 1))
    if norm == "l2":
        return np.sqrt((k * k).sum(axis=(0, 1)))
    raise GraphError(f"unknown slice norm {norm!r}; use 'l1' or 'l2'")


def cnn_graph(conv_kernels: Sequence[np.ndarray], norm: SliceNorm = "l1") -> Graph:
    """The channel graph of a CNN from its conv-to-conv kernels in order (SPEC section 3)."""
    return layered_graph([conv_channel_weights(k, norm) for k in conv_kernels])
