"""Spectral clustering and normalised cut (SPEC section 4): pure numpy/scipy.

The clustering follows scikit-learn's ``SpectralClustering(affinity='precomputed',
assign_labels='kmeans')``: the k eigenvectors of L = I - D^-1/2 A D^-1/2 with the smallest
eigenvalues (equivalently the largest of M = D^-1/2 A D^-1/2), rows divided by sqrt(degree),
then k-means++ with several restarts, best inertia wins.

Two things make it fast without changing the answer:

* A network's layered graph is bipartite (even layers against odd layers), so M = [[0, B],
  [B^T, 0]] and its top eigenvectors are (u, v) / sqrt(2) for the top singular triplets
  B v = s u. We take them from the dense eigendecomposition of the small Gram matrix
  (B^T B, at most ~520 x 520 for the paper's MLP) instead of a shift-invert Lanczos on the
  whole graph. k-means is invariant to rotations of the embedding, so only the spanned
  subspace matters. Other graphs use a dense or Lanczos eigensolver.
* k-means++ seeding and Lloyd iterations run for all restarts at once in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from .errors import ClusteringError
from .graph import Graph

DENSE_LIMIT = 4000  # above this many nodes a non-bipartite graph uses Lanczos (eigsh)


@dataclass(frozen=True)
class SpectralConfig:
    """How to cluster: k clusters, k-means restarts and iteration cap."""

    n_clusters: int = 4
    n_init: int = 25
    max_iter: int = 300
    tol: float = 1e-4


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


# --------------------------------------------------------------------------- n-cut


def _one_hot(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """(n, n_labels) indicator matrix; rows of label -1 stay zero."""
    out = np.zeros((labels.size, n_labels))
    inside = np.flatnonzero(labels >= 0)
    out[inside, labels[inside]] = 1.0
    return out


def _ncut_from_weights(labels: np.ndarray, weight_to: np.ndarray) -> float:
    """n-cut from each node's label and its total edge weight into each cluster."""
    inside = np.flatnonzero(labels >= 0)
    lab, w = labels[inside], weight_to[inside]
    n_labels = weight_to.shape[1]
    vol = np.bincount(lab, weights=w.sum(axis=1), minlength=n_labels)
    within = np.bincount(lab, weights=w[np.arange(lab.size), lab], minlength=n_labels)
    used = vol > 0
    return float(np.sum((vol[used] - within[used]) / vol[used]))


def ncut(adjacency: sp.spmatrix | np.ndarray, labels: np.ndarray) -> float:
    """Normalised cut: sum over clusters of cut(c) / vol(c) (SPEC section 4).

    ``labels`` has one entry per node; nodes labelled -1 are left out with their edges.
    Clusters of zero volume contribute nothing.
    """
    labels = np.asarray(labels)
    n = adjacency.shape[0]
    if labels.shape != (n,):
        raise ClusteringError(f"{labels.shape[0]} labels for a graph of {n} nodes")
    if not np.any(labels >= 0):
        return 0.0
    weight_to = np.asarray(adjacency @ _one_hot(labels, int(labels.max()) + 1))
    return _ncut_from_weights(labels, weight_to)


def ncut_bipartite(block: np.ndarray, row_labels: np.ndarray, col_labels: np.ndarray) -> float:
    """n-cut of a bipartite graph A = [[0, B], [B^T, 0]] given as its block B."""
    n_labels = int(max(row_labels.max(initial=-1), col_labels.max(initial=-1))) + 1
    if n_labels == 0:
        return 0.0
    labels = np.concatenate([row_labels, col_labels])
    weight_to = np.concatenate(
        [block @ _one_hot(col_labels, n_labels), block.T @ _one_hot(row_labels, n_labels)]
    )
    return _ncut_from_weights(labels, weight_to)


# --------------------------------------------------------------------------- embedding


def top_singular_pairs(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-k left and right singular vectors of a (normalised) block from its Gram matrix.

    For M = [[0, B], [B^T, 0]] the top-k eigenvectors are (u_i, v_i) / sqrt(2). Returns None
    when the problem is degenerate (k above the smaller side, or a zero singular value).
    """
    transpose = block.shape[1] > block.shape[0]
    b = block.T if transpose else block
    n_small = b.shape[1]
    if k > n_small:
        return None
    gram = b.T @ b
    values, v = scipy.linalg.eigh(gram, subset_by_index=[n_small - k, n_small - 1], driver="evx")
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
    pairs = top_singular_pairs(block * d_inv_sqrt[left, None] * d_inv_sqrt[None, right], k)
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
        norm_adj = adjacency * d_inv_sqrt[:, None] * d_inv_sqrt[None, :]
        _, vectors = scipy.linalg.eigh(norm_adj, subset_by_index=[n - k, n - 1])
        return vectors
    scale = sp.diags(d_inv_sqrt)
    # M + I has eigenvalues in [0, 2], so 'largest algebraic' is well posed even for
    # (near-)bipartite graphs whose spectrum is symmetric about 0.
    shifted = scale @ adjacency @ scale + sp.identity(n, format="csr")
    _, vectors = scipy.sparse.linalg.eigsh(shifted, k=k, which="LA", v0=rng.uniform(-1, 1, n))
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


# --------------------------------------------------------------------------- k-means


def _sq_dists(x: np.ndarray, xx: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distances between rows of x (n, d) and centres (r, c, d), as (n, r, c).

    One BLAS product of [x, |x|^2, 1] with [-2 c, 1, |c|^2], in less time than three steps.
    A BLAS that accumulates the inner sum in order (OpenBLAS's kernels do) adds -2 x.c, then
    |x|^2, then |c|^2: the same rounding as the three steps done apart.
    """
    r, c, dim = centres.shape
    flat = centres.reshape(r * c, dim)
    x_aug = np.column_stack([x, xx, np.ones(len(x))])
    c_aug = np.column_stack([-2.0 * flat, np.ones(r * c), np.einsum("kd,kd->k", flat, flat)])
    d = x_aug @ c_aug.T
    return np.maximum(d, 0.0, out=d).reshape(len(x), r, c)


def _first_argmin(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores.argmin(axis=1)`` and the minima of an (r, c, n) array, faster than argmin
    along a middle axis: the minimum, then the smallest index attaining it (both reductions
    run along the contiguous last axis)."""
    best = scores.min(axis=1)
    c = scores.shape[1]
    index = np.arange(c, dtype=np.min_scalar_type(c))[None, :, None]
    labels = np.where(scores == best[:, None, :], index, index.dtype.type(c)).min(axis=1)
    return labels.astype(np.intp), best


def _scores(x1: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """|c|^2 - 2 x.c for every restart, centre and point, as (r, c, n), from one BLAS product.

    ``x1`` is the points with a column of ones appended; the product with [-2 c, |c|^2] takes
    about half the time of adding |c|^2 afterwards, with the same rounding when the BLAS
    accumulates the inner sum in order (scaling by -2 is exact).
    """
    r, c, dim = centres.shape
    flat = centres.reshape(r * c, dim)
    c_aug = np.column_stack([-2.0 * flat, np.einsum("kd,kd->k", flat, flat)])
    return (c_aug @ x1.T).reshape(r, c, -1)


def _nearest(x1: np.ndarray, xx: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every point for each restart: (labels, squared distances), (r, n) each.

    ``x1`` is the points with a column of ones appended (see :func:`_scores`), ``centres``
    is (r, c, d).
    """
    labels, best = _first_argmin(_scores(x1, centres))
    return labels, _distances(best, xx)


def _distances(best: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Squared distances to the nearest centre, (r, n), from the label step's minimum scores
    ``best`` (|c|^2 - 2 x.c) and the points' squared norms ``xx``."""
    return np.maximum(best + xx[None, :], 0.0)


def kmeans_plus_plus(x: np.ndarray, k: int, n_init: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn: 2 + log k local trials), n_init restarts at once."""
    n, dim = x.shape
    trials = 2 + int(np.log(k))
    xx = np.einsum("nd,nd->n", x, x)
    rows = np.arange(n_init)
    centres = np.empty((n_init, k, dim))
    centres[:, 0] = x[rng.integers(0, n, size=n_init)]
    closest = _sq_dists(x, xx, centres[:, :1])[:, :, 0].T  # (r, n)
    for c in range(1, k):
        cum = np.cumsum(closest, axis=1)
        draws = rng.random((n_init, trials)) * cum[:, -1:]
        # shift row r by r * stride so that all rows form one increasing sequence
        offsets = (rows * (cum[:, -1].max() + 1.0))[:, None]
        flat = np.searchsorted((cum + offsets).ravel(), (draws + offsets).ravel())
        cand = np.minimum(flat.reshape(n_init, trials) - rows[:, None] * n, n - 1)
        cand_d = _sq_dists(x, xx, x[cand])  # (n, r, t)
        new_closest = np.minimum(closest.T[:, :, None], cand_d)  # (n, r, t)
        best = new_closest.sum(axis=0).argmin(axis=1)  # (r,)
        centres[:, c] = x[cand[rows, best]]
        closest = new_closest[:, rows, best].T
    return centres


def _centre_means(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per restart, the mean of each cluster's points (r, k, d) and the counts (r, k)."""
    r, n = labels.shape
    one_hot = np.zeros((r, k, n))
    one_hot[np.arange(r)[:, None], labels, np.arange(n)[None, :]] = 1.0
    flat = (labels + k * np.arange(r)[:, None]).ravel()
    counts = np.bincount(flat, minlength=r * k).reshape(r, k).astype(float)
    return (one_hot @ x) / np.maximum(counts, 1.0)[:, :, None], counts


def kmeans(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    n_init: int = 25,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> tuple[np.ndarray, float]:
    """Lloyd's k-means from k-means++ seeds, all restarts at once; best inertia wins.

    A restart stops when its labels no longer change or its centres move less than ``tol``
    (relative to the mean per-feature variance, as in scikit-learn). Empty clusters take the
    point farthest from its centre. Returns (labels, inertia) of the best restart.
    """
    n = x.shape[0]
    xx = np.einsum("nd,nd->n", x, x)
    x1 = np.column_stack([x, np.ones(n)])
    centres = kmeans_plus_plus(x, k, n_init, rng)
    tol_abs = tol * float(np.mean(np.var(x, axis=0)))
    labels = np.full((n_init, n), -1, dtype=np.int64)
    active = np.arange(n_init)
    for _ in range(max_iter):
        if active.size == 0:
            break
        new_labels, best = _first_argmin(_scores(x1, centres[active]))  # (a, n) each
        changed = np.any(new_labels != labels[active], axis=1)
        labels[active] = new_labels
        new, counts = _centre_means(x, new_labels, k)
        empty = np.nonzero(counts == 0)
        if empty[0].size:  # distances only when a cluster needs the farthest point
            dist = _distances(best, xx)
            for r, c in zip(*empty, strict=True):
                far = int(dist[r].argmax())
                new[r, c] = x[far]
                dist[r, far] = -1.0
        shift = ((new - centres[active]) ** 2).sum(axis=(1, 2))
        centres[active] = new
        active = active[changed & (shift > tol_abs)]
    final, dist = _nearest(x1, xx, centres)
    inertia = dist.sum(axis=1)
    best = int(inertia.argmin())
    return final[best].copy(), float(inertia[best])


# --------------------------------------------------------------------------- clustering


def check_k(k: int, n_active: int) -> None:
    """k must satisfy 2 <= k < number of non-isolated nodes."""
    if k < 2:
        raise ClusteringError(f"k = {k}: need at least 2 clusters")
    if k >= n_active:
        raise ClusteringError(
            f"k = {k} is not below the {n_active} non-isolated nodes of the graph; choose a smaller k"
        )


def cluster_adjacency(
    adjacency: sp.spmatrix,
    config: SpectralConfig,
    seed: int | np.random.SeedSequence | np.random.Generator,
    layers: np.ndarray | None = None,
) -> np.ndarray:
    """Spectral clustering of a graph without isolated nodes; returns one label per node."""
    if not isinstance(adjacency, np.ndarray):
        adjacency = sp.csr_matrix(adjacency)
    check_k(config.n_clusters, adjacency.shape[0])
    rng = np.random.default_rng(seed)
    embedding = spectral_embedding(adjacency, config.n_clusters, layers, rng)
    labels, _ = kmeans(embedding, config.n_clusters, rng, config.n_init, config.max_iter, config.tol)
    return labels


def cluster_graph(
    graph: Graph,
    config: SpectralConfig | None = None,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
) -> Clustering:
    """Cluster a network graph: isolated nodes removed, labels mapped back (-1), n-cut scored.

    A network graph is bipartite between even and odd layers by construction, so for graphs
    of up to :data:`DENSE_LIMIT` nodes everything works on the even-by-odd block alone.
    """
    config = config or SpectralConfig()
    n_active = int(graph.active.sum())
    check_k(config.n_clusters, n_active)
    rng = np.random.default_rng(seed)
    if n_active <= DENSE_LIMIT:
        block, even, odd = graph.bipartite_block()
        d_inv_sqrt = 1.0 / np.sqrt(graph.degrees[graph.active])
        pairs = top_singular_pairs(
            block * d_inv_sqrt[even, None] * d_inv_sqrt[None, odd], config.n_clusters
        )
        if pairs is not None:
            vectors = np.zeros((n_active, config.n_clusters))
            vectors[even], vectors[odd] = pairs
            embedding = vectors * d_inv_sqrt[:, None]  # the 1/sqrt(2) scale does not matter
            labels, _ = kmeans(embedding, config.n_clusters, rng, config.n_init, config.max_iter, config.tol)
            score = ncut_bipartite(block, labels[even], labels[odd])
            return Clustering(graph.expand_labels(labels), score, config.n_clusters)
    adjacency, layers = graph.without_isolated(dense=n_active <= DENSE_LIMIT)
    labels = cluster_adjacency(adjacency, config, rng, layers)
    return Clustering(graph.expand_labels(labels), ncut(adjacency, labels), config.n_clusters)
