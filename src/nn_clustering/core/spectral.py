"""Spectral clustering of a network graph (method.md §4): pure numpy/scipy.

The clustering follows scikit-learn's ``SpectralClustering(affinity='precomputed',
assign_labels='kmeans')``: the k eigenvectors of L = I - D^-1/2 A D^-1/2 with the smallest
eigenvalues (equivalently the largest of M = D^-1/2 A D^-1/2), rows divided by sqrt(degree),
then k-means++ with several restarts, best inertia wins.

Two things make it fast without changing the answer:

* A network's layered graph is bipartite (even layers against odd layers), so M = [[0, B],
  [B^T, 0]] and its top eigenvectors are (u, v) / sqrt(2) for the top singular triplets
  B v = s u. Up to :data:`DENSE_LIMIT` (2,000) connected nodes (the paper's MLP has 1,818) we take them
  from the dense eigendecomposition of the smaller Gram matrix (B^T B, at most ~520 x 520 for
  the paper's MLP, computed from B's non-zero layer blocks: :func:`banded_gram`) instead of a
  shift-invert Lanczos on the whole graph. Above it, B is built
  sparse from the non-zero weights and its top singular vectors come from Lanczos (ARPACK) on
  the Gram operator x -> B^T (B x), which needs only sparse products: time and memory grow
  with the edges, not with the cube or square of the nodes. k-means is invariant to rotations
  of the embedding, so only the spanned subspace matters and both paths give the same
  partitions. Other graphs use a dense or Lanczos eigensolver.
* k-means++ seeding and Lloyd iterations run for all restarts at once in numpy
  (:mod:`nn_clustering.core.kmeans`); the partition is scored by :mod:`nn_clustering.core.ncut`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from ..errors import ClusteringError
from .activations import ActivationGraph
from .dag import DagGraph
from .graph import Graph
from .kmeans import kmeans
from .ncut import ncut, ncut_bipartite
from .parameters import validate_fields

#: Up to this many connected nodes a graph's eigenvectors come from dense eigensolvers (the
#: paper's MLP has 1,818 nodes); above it from Lanczos on sparse matrices (the bipartite block
#: of a network, or the adjacency), unless a network's block is so dense that the dense Gram
#: path is cheaper (see choose_solver).
DENSE_LIMIT = 2000
#: Above DENSE_LIMIT, a bipartite block with more than this share of non-zero entries keeps the
#: dense Gram path, as long as the dense block fits in DENSE_BLOCK_LIMIT entries (1 GiB).
SPARSE_DENSITY = 0.2
DENSE_BLOCK_LIMIT = 2**27
#: Relative accuracy of the Lanczos eigenvalues (ARPACK's tol): the embedding's subspace then
#: agrees with the dense path's to about 1e-15, at ~60% of the iterations of machine precision.
LANCZOS_TOL = 1e-8
#: Lanczos basis size of the general (non-bipartite) sparse path: ARPACK's default, 2k + 1 or
#: 20, restarts often on the clustered spectra of network graphs; 40 halves the products with
#: the adjacency on a GPT-2-small graph (529 -> 340 at k = 12, benchmarks/README.md).
LANCZOS_BASIS = 40
EigenSolver = Literal["auto", "dense", "sparse"]


@dataclass(frozen=True)
class SpectralConfig:
    """How to cluster: k clusters, k-means restarts and iteration cap."""

    n_clusters: int = 4
    n_init: int = 25
    max_iter: int = 300
    tol: float = 1e-4

    def __post_init__(self) -> None:
        validate_fields(self)


def check_fits(n_clusters: int, n_nodes: int) -> None:
    """A :class:`~nn_clustering.errors.ClusteringError` unless k is below the graph's
    ``n_nodes`` non-isolated nodes (the parameter itself is checked by the configs)."""
    if n_clusters >= n_nodes:
        raise ClusteringError(
            f"k = {n_clusters} is not below the {n_nodes} non-isolated nodes of the graph; choose a smaller k"
        )


@dataclass(frozen=True)
class Clustering:
    """A clustering of a :class:`Graph`: labels for every node (-1 = isolated) and its n-cut."""

    labels: np.ndarray
    ncut: float
    n_clusters: int

    def sizes_by_layer(self, graph: Graph) -> list[list[int]]:
        """Per layer, the number of nodes in each cluster (isolated nodes not counted)."""
        return [
            np.bincount(layer[layer >= 0], minlength=self.n_clusters).tolist()
            for layer in graph.split_by_layer(self.labels)
        ]


def smallest_cluster(labels: np.ndarray, k: int) -> int:
    """Nodes in the smallest of the k clusters (0 if one is empty; isolated nodes not counted)."""
    labels = np.asarray(labels)
    return int(np.bincount(labels[labels >= 0], minlength=k).min())


# --------------------------------------------------------------------------- embedding


def scaled(matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix * rows[:, None] * cols[None, :]`` (a new array, same rounding) with one
    temporary array instead of two."""
    out = np.multiply(matrix, rows[:, None])
    out *= cols[None, :]
    return out


def banded_gram(b: np.ndarray, col_sizes: Sequence[int] | None = None) -> np.ndarray:
    """B^T B, skipping the zero blocks of a layered B.

    ``col_sizes`` splits B's columns into consecutive groups (a network's layers on one side
    of the bipartite block). A group's non-zero rows lie between its first and last non-zero
    row, and a block of B^T B is the product of two groups over the rows both span: for a chain
    each layer meets only its two neighbours, so this takes ~40% of the products of the whole
    B^T B (one symmetric product over all rows when ``col_sizes`` is None).
    """
    if col_sizes is None or len(col_sizes) < 2:
        return b.T @ b
    bounds = np.cumsum([0, *col_sizes])
    groups = [slice(a, z) for a, z in zip(bounds[:-1], bounds[1:], strict=True)]
    spans = []
    for group in groups:
        rows = np.flatnonzero(b[:, group].any(axis=1))
        spans.append((rows[0], rows[-1] + 1) if rows.size else (0, 0))
    gram = np.zeros((b.shape[1], b.shape[1]))
    for j, (first, (lo_j, hi_j)) in enumerate(zip(groups, spans, strict=True)):
        for second, (lo_l, hi_l) in zip(groups[j:], spans[j:], strict=True):
            lo, hi = max(lo_j, lo_l), min(hi_j, hi_l)
            if lo >= hi:
                continue
            if first == second:  # a X^T X product: one symmetric BLAS product (syrk)
                x = b[lo:hi, first]
                gram[first, first] = x.T @ x
            else:
                product = b[lo:hi, first].T @ b[lo:hi, second]
                gram[first, second], gram[second, first] = product, product.T
    return gram


def top_singular_pairs(
    block: np.ndarray, k: int, layer_sizes: tuple[Sequence[int], Sequence[int]] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-k left and right singular vectors of a (normalised) block from its Gram matrix.

    For M = [[0, B], [B^T, 0]] the top-k eigenvectors are (u_i, v_i) / sqrt(2). Returns None
    when the problem is degenerate (k above the smaller side, or a zero singular value).
    ``layer_sizes`` (the sizes of the layers along B's rows and along its columns) lets the
    Gram matrix skip B's zero blocks (:func:`banded_gram`).
    """
    transpose = block.shape[1] > block.shape[0]
    b = block.T if transpose else block
    n_small = b.shape[1]
    if k > n_small:
        return None
    col_sizes = None if layer_sizes is None else layer_sizes[0 if transpose else 1]
    gram = banded_gram(b, col_sizes)  # finite (validated weights, entries of a normalised block): no check
    values, v = scipy.linalg.eigh(gram, subset_by_index=[n_small - k, n_small - 1], driver="evx",
                                  overwrite_a=True, check_finite=False)
    s = np.sqrt(np.clip(values, 0.0, None))
    if np.any(s <= 1e-12):
        return None
    u = (b @ v) / s
    return (v, u) if transpose else (u, v)


def sparse_singular_pairs(block: sp.csr_array, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-k left and right singular vectors of a sparse (normalised) block, by ARPACK's
    Lanczos on the smaller side's Gram operator, to a relative accuracy of :data:`LANCZOS_TOL`
    (transposes are views: no copy of the block). None when k is not below the smaller side
    or a singular value is zero (the caller then falls back)."""
    transpose = block.shape[1] > block.shape[0]
    b = block.T if transpose else block
    bt = b.T
    n_small = b.shape[1]
    if k >= n_small:
        return None
    gram = scipy.sparse.linalg.LinearOperator((n_small, n_small), matvec=lambda x: bt @ (b @ x), dtype=np.float64)
    values, v = scipy.sparse.linalg.eigsh(gram, k=k, which="LA", tol=LANCZOS_TOL, v0=rng.uniform(-1.0, 1.0, n_small))
    order = np.argsort(values)
    values, v = values[order], v[:, order]
    s = np.sqrt(np.clip(values, 0.0, None))
    if np.any(s <= 1e-12):
        return None
    u = (b @ v) / s
    return (v, u) if transpose else (u, v)


def _bipartite_top_eigvecs(
    adjacency: sp.csr_matrix | np.ndarray, d_inv_sqrt: np.ndarray, side: np.ndarray, k: int
) -> np.ndarray | None:
    """Top-k eigenvectors of a bipartite M from the singular vectors of its off-diagonal block."""
    left, right = np.flatnonzero(side), np.flatnonzero(~side)
    if isinstance(adjacency, np.ndarray):
        block = adjacency[np.ix_(left, right)]
    else:
        block = adjacency[left][:, right].toarray()
    pairs = top_singular_pairs(scaled(block, d_inv_sqrt[left], d_inv_sqrt[right]), k)
    if pairs is None:
        return None
    vectors = np.zeros((len(side), k))
    vectors[left], vectors[right] = pairs
    return vectors / np.sqrt(2.0)


def _general_top_eigvecs(
    adjacency: sp.csr_matrix | np.ndarray, d_inv_sqrt: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    n = len(d_inv_sqrt)
    if isinstance(adjacency, np.ndarray):
        norm_adj = scaled(adjacency, d_inv_sqrt, d_inv_sqrt)
        _, vectors = scipy.linalg.eigh(norm_adj, subset_by_index=[n - k, n - 1])
        return vectors
    # M + I has eigenvalues in [0, 2], so 'largest algebraic' is well posed even for
    # (near-)bipartite graphs whose spectrum is symmetric about 0; as an operator, no copy of A
    def shifted(x: np.ndarray) -> np.ndarray:
        x = np.ravel(x)
        return d_inv_sqrt * (adjacency @ (d_inv_sqrt * x)) + x

    operator = scipy.sparse.linalg.LinearOperator((n, n), matvec=shifted, dtype=np.float64)
    ncv = min(n - 1, max(2 * k + 1, LANCZOS_BASIS))
    _, vectors = scipy.sparse.linalg.eigsh(operator, k=k, which="LA", tol=LANCZOS_TOL, v0=rng.uniform(-1, 1, n),
                                           ncv=ncv)
    return vectors


def two_colouring(adjacency: sp.spmatrix | np.ndarray, layers: np.ndarray | None) -> np.ndarray | None:
    """Side of each node (even layer or not) if edges only join even to odd layers, else None."""
    if layers is None:
        return None
    side = (np.asarray(layers) % 2) == 0
    if isinstance(adjacency, np.ndarray):
        same_side = adjacency[np.ix_(side, side)].any() or adjacency[np.ix_(~side, ~side)].any()
        return None if same_side else side
    a = sp.csr_matrix(adjacency)
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    return side if np.all(side[rows] != side[a.indices]) else None


def spectral_embedding(
    adjacency: sp.spmatrix | np.ndarray,
    k: int,
    layers: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Rows of the k top eigenvectors of D^-1/2 A D^-1/2, divided by sqrt(degree).

    ``adjacency`` (dense array or sparse) must have no isolated nodes. ``layers`` (layer
    index per node) enables the bipartite fast path when edges only join consecutive layers.
    Sparse graphs of up to :data:`DENSE_LIMIT` nodes are densified.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    if not isinstance(adjacency, np.ndarray):
        adjacency = sp.csr_matrix(adjacency)
        if adjacency.shape[0] <= DENSE_LIMIT:
            adjacency = adjacency.toarray()
    deg = np.asarray(adjacency.sum(axis=1)).ravel()
    d_inv_sqrt = 1.0 / np.sqrt(deg)
    side = two_colouring(adjacency, layers)
    vectors = _bipartite_top_eigvecs(adjacency, d_inv_sqrt, side, k) if side is not None else None
    if vectors is None:
        vectors = _general_top_eigvecs(adjacency, d_inv_sqrt, k, rng)
    return vectors * d_inv_sqrt[:, None]


# --------------------------------------------------------------------------- clustering


def cluster_adjacency(
    adjacency: sp.spmatrix,
    config: SpectralConfig,
    seed: int | np.random.SeedSequence | np.random.Generator,
    layers: np.ndarray | None = None,
) -> np.ndarray:
    """Spectral clustering of a graph without isolated nodes; returns one label per node."""
    if not isinstance(adjacency, np.ndarray):
        adjacency = sp.csr_matrix(adjacency)
    check_fits(config.n_clusters, adjacency.shape[0])
    rng = np.random.default_rng(seed)
    embedding = spectral_embedding(adjacency, config.n_clusters, layers, rng)
    labels, _ = kmeans(embedding, config.n_clusters, rng, config.n_init, config.max_iter, config.tol)
    return labels


def choose_solver(graph: Graph) -> Literal["dense", "sparse"]:
    """The eigen path for a network graph (method.md §4): ``dense`` (the Gram matrix of the
    bipartite block) up to :data:`DENSE_LIMIT` connected nodes, or above it for a block with more
    than :data:`SPARSE_DENSITY` of its entries non-zero that fits in :data:`DENSE_BLOCK_LIMIT`
    entries; ``sparse`` (Lanczos on the sparse block) otherwise."""
    active = np.split(graph.active, np.cumsum(graph.layer_sizes)[:-1])
    n_active = int(graph.active.sum())
    if n_active <= DENSE_LIMIT:
        return "dense"
    sides = [sum(int(a.sum()) for a in active[parity::2]) for parity in (0, 1)]
    entries = sides[0] * sides[1]
    edges = sum(int(np.count_nonzero(block)) for block in graph.blocks)
    return "dense" if entries <= DENSE_BLOCK_LIMIT and edges > SPARSE_DENSITY * entries else "sparse"


def cluster_dag(
    graph: DagGraph | ActivationGraph, config: SpectralConfig, rng: np.random.Generator, solver: EigenSolver = "auto"
) -> Clustering:
    """Cluster a :class:`DagGraph` or an :class:`ActivationGraph` (not bipartite in general) from
    its normalised adjacency:
    a dense eigensolver up to :data:`DENSE_LIMIT` connected nodes, Lanczos on the sparse
    adjacency above (``solver`` forces either)."""
    n_active = int(graph.active.sum())
    dense = solver == "dense" or (solver == "auto" and n_active <= DENSE_LIMIT)
    adjacency, _ = graph.without_isolated(dense=dense)
    embedding = spectral_embedding(adjacency, config.n_clusters, None, rng)
    labels, _ = kmeans(embedding, config.n_clusters, rng, config.n_init, config.max_iter, config.tol)
    return Clustering(graph.expand_labels(labels), ncut(adjacency, labels), config.n_clusters)


def cluster_graph(
    graph: Graph | DagGraph | ActivationGraph,
    config: SpectralConfig | None = None,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
    solver: EigenSolver = "auto",
) -> Clustering:
    """Cluster a network graph: isolated nodes removed, labels mapped back (-1), n-cut scored.

    A chain's graph is bipartite between even and odd layers by construction, so everything
    works on the even-by-odd block alone: dense up to :data:`DENSE_LIMIT` connected nodes,
    sparse above (see the module's docstring). A :class:`DagGraph` (residual sums,
    concatenations) is clustered from its adjacency (:func:`cluster_dag`).
    """
    config = config or SpectralConfig()
    n_active = int(graph.active.sum())
    check_fits(config.n_clusters, n_active)
    rng = np.random.default_rng(seed)
    if solver not in ("auto", "dense", "sparse"):
        raise ValueError(f"solver = {solver!r}: use 'auto', 'dense' or 'sparse'")
    if isinstance(graph, (DagGraph, ActivationGraph)):
        return cluster_dag(graph, config, rng, solver)
    dense = (choose_solver(graph) if solver == "auto" else solver) == "dense"
    sqrt_degree = np.sqrt(graph.degrees[graph.active])
    d_inv_sqrt = 1.0 / sqrt_degree
    if dense:  # the normalised block D^-1/2 B D^-1/2, built so; n-cut weights undo the scaling
        block, even, odd = graph.bipartite_block(scale=d_inv_sqrt)
        weights = sqrt_degree[even], sqrt_degree[odd]
        sizes = [int(a.sum()) for a in np.split(graph.active, np.cumsum(graph.layer_sizes)[:-1])]
        pairs = top_singular_pairs(block, config.n_clusters, (sizes[0::2], sizes[1::2]))
    else:
        block, even, odd = graph.sparse_bipartite_block()
        weights = None, None
        scale = np.repeat(d_inv_sqrt[even], np.diff(block.indptr))
        scale *= d_inv_sqrt[odd][block.indices]
        scale *= block.data  # the normalised block shares the block's index arrays
        normalised = sp.csr_array((scale, block.indices, block.indptr), shape=block.shape)
        pairs = sparse_singular_pairs(normalised, config.n_clusters, rng)
    if pairs is not None:
        vectors = np.zeros((n_active, config.n_clusters))
        vectors[even], vectors[odd] = pairs
        embedding = vectors * d_inv_sqrt[:, None]  # the 1/sqrt(2) scale does not matter
        labels, _ = kmeans(embedding, config.n_clusters, rng, config.n_init, config.max_iter, config.tol)
        score = ncut_bipartite(block, labels[even], labels[odd], *weights)
        return Clustering(graph.expand_labels(labels), score, config.n_clusters)
    adjacency, layers = graph.without_isolated(dense=dense)
    labels = cluster_adjacency(adjacency, config, rng, layers)
    return Clustering(graph.expand_labels(labels), ncut(adjacency, labels), config.n_clusters)
