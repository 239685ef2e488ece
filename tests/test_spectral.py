"""Spectral clustering and n-cut against independent oracles."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score

from nn_clustering.core.graph import mlp_graph
from nn_clustering.core.kmeans import kmeans
from nn_clustering.core.ncut import ncut
from nn_clustering.core.spectral import SpectralConfig, cluster_graph, spectral_embedding
from nn_clustering.errors import ClusteringError, ParameterError

MLP_SIZES = (784, 256, 256, 256, 256, 10)


def random_kernels(rng, sizes=MLP_SIZES, sparsity=0.0):
    kernels = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(size=(a, b))
        if sparsity:
            w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0.0
        kernels.append(w)
    return kernels


def test_ncut_by_hand():
    # path a-b (1), b-c (2), c-d (3); clusters {a, b} and {c, d}
    a = np.zeros((4, 4))
    for i, j, w in ((0, 1, 1.0), (1, 2, 2.0), (2, 3, 3.0)):
        a[i, j] = a[j, i] = w
    # cut = 2; vol{a,b} = 1 + 3 = 4; vol{c,d} = 5 + 3 = 8
    assert ncut(sp.csr_matrix(a), np.array([0, 0, 1, 1])) == pytest.approx(2 / 4 + 2 / 8)
    # three clusters {a}, {b, c}, {d}: 1/1 + (1 + 3)/(3 + 5) + 3/3
    assert ncut(a, np.array([0, 1, 1, 2])) == pytest.approx(1 + 0.5 + 1)


@pytest.mark.parametrize("seed", range(10))
def test_ncut_equals_networkx_on_random_bipartitions(seed):
    rng = np.random.default_rng(seed)
    g = nx.gnp_random_graph(30, 0.3, seed=seed)
    for u, v in g.edges:
        g[u][v]["weight"] = float(rng.uniform(0.1, 5.0))
    a = nx.to_scipy_sparse_array(g, nodelist=range(30), weight="weight")
    labels = rng.integers(0, 2, 30)
    s = {i for i in range(30) if labels[i] == 0}
    t = set(range(30)) - s
    expected = nx.normalized_cut_size(g, s, t, weight="weight")
    assert ncut(a, labels) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_bipartite_ncut_equals_networkx(seed):
    """n-cut from the bipartite block alone against networkx's normalized_cut_size on the whole
    graph: two clusters, one side's nodes split between both."""
    from nn_clustering.core.ncut import ncut_bipartite

    rng = np.random.default_rng(seed)
    block = rng.uniform(0.1, 2.0, size=(12, 9)) * (rng.random((12, 9)) < 0.5)
    block[0, 0] = 1.0  # no isolated nodes
    block[np.flatnonzero(block.sum(axis=1) == 0), 0] = 1.0
    block[0, np.flatnonzero(block.sum(axis=0) == 0)] = 1.0
    g = nx.Graph()
    g.add_weighted_edges_from((i, 12 + j, block[i, j]) for i, j in zip(*np.nonzero(block), strict=True))
    rows, cols = rng.integers(0, 2, 12), rng.integers(0, 2, 9)
    s = {i for i in range(12) if rows[i] == 0} | {12 + j for j in range(9) if cols[j] == 0}
    expected = nx.normalized_cut_size(g, s, set(g) - s, weight="weight")
    assert ncut_bipartite(block, rows, cols) == pytest.approx(expected, rel=1e-12)


def test_ncut_ignores_unlabelled_nodes():
    a = np.array([[0, 1, 5], [1, 0, 0], [5, 0, 0]], float)
    assert ncut(a, np.array([0, 1, -1])) == pytest.approx(2.0)  # edge to node 2 left out


def planted_mlp(rng, sizes=(64, 48, 48, 48, 12), modules=4, weak=0.01):
    """Kernels whose cross-module weights are 100x weaker than within-module weights."""
    groups = [np.arange(n) * modules // n for n in sizes]
    kernels = []
    for layer in range(len(sizes) - 1):
        w = np.abs(rng.normal(size=(sizes[layer], sizes[layer + 1]))) + 0.1
        same = groups[layer][:, None] == groups[layer + 1][None, :]
        kernels.append(np.where(same, w, weak * w) * rng.choice([-1, 1], size=w.shape))
    return kernels, groups


@pytest.mark.parametrize("seed", range(3))
def test_planted_modules_are_recovered_exactly(seed):
    rng = np.random.default_rng(seed)
    kernels, groups = planted_mlp(rng)
    clustering = cluster_graph(mlp_graph(kernels), SpectralConfig(n_clusters=4), seed=seed)
    hidden = slice(groups[0].size, groups[0].size + sum(g.size for g in groups[1:-1]))
    truth = np.concatenate(groups)
    assert adjusted_rand_score(truth[hidden], clustering.labels[hidden]) == 1.0
    assert adjusted_rand_score(truth, clustering.labels) == 1.0


def test_embedding_spans_the_reference_eigenspace():
    """Bipartite fast path: same subspace as a dense eigendecomposition of the normalised A."""
    rng = np.random.default_rng(0)
    graph = mlp_graph(random_kernels(rng, (40, 30, 30, 8)))
    adj, layers = graph.without_isolated()
    fast = spectral_embedding(adj, 4, layers)
    slow = spectral_embedding(adj, 4, None)  # general dense path
    deg = np.asarray(adj.sum(axis=1)).ravel()
    qf, _ = np.linalg.qr(fast * np.sqrt(deg)[:, None])
    qs, _ = np.linalg.qr(slow * np.sqrt(deg)[:, None])
    np.testing.assert_allclose(np.linalg.svd(qf.T @ qs, compute_uv=False), 1.0, atol=1e-8)


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    x = np.concatenate([c + rng.normal(size=(50, 2)) for c in centres])
    labels, inertia = kmeans(x, 3, rng, n_init=5)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 50), labels) == 1.0
    assert inertia == pytest.approx(sum(((x[labels == c] - x[labels == c].mean(0)) ** 2).sum() for c in range(3)))


def _textbook_lloyd(x, centres, max_iter=300, tol=1e-4):
    """One restart of Lloyd's algorithm written out plainly (scipy distances, per-cluster
    means, the same stopping rule and empty-cluster repair): the oracle of the batched one."""
    from scipy.spatial.distance import cdist

    tol_abs = tol * np.mean(np.var(x, axis=0))
    labels = None
    for _ in range(max_iter):
        dist = cdist(x, centres, "sqeuclidean")
        new_labels = dist.argmin(axis=1)
        changed = labels is None or np.any(new_labels != labels)
        labels = new_labels
        new = np.array([x[labels == c].mean(axis=0) if np.any(labels == c) else centres[c]
                        for c in range(len(centres))])
        near = dist[np.arange(len(x)), labels]
        for c in np.flatnonzero(np.bincount(labels, minlength=len(centres)) == 0):
            far = int(near.argmax())
            new[c], near[far] = x[far], -1.0
        shift = ((new - centres) ** 2).sum()
        centres = new
        if not changed or shift <= tol_abs:
            break
    final = cdist(x, centres, "sqeuclidean")
    return final.argmin(axis=1), final.min(axis=1).sum()


@pytest.mark.parametrize(("k", "max_iter", "tol", "distinct"),
                         [(3, 300, 1e-4, None), (12, 300, 1e-4, None), (12, 2, 1e-4, None), (12, 300, 0.5, None),
                          (7, 300, 1e-4, 5)])
def test_batched_kmeans_equals_textbook_lloyd_per_restart(k, max_iter, tol, distinct):
    """All restarts at once (work buffers, weighted first-minimum, membership products, final
    cluster sums updated by the moved points) give each restart's textbook Lloyd result from the
    same k-means++ seeds: the best restart's labels exactly (one of the restarts tied at the best inertia), its inertia to rounding; also when
    restarts stop at ``max_iter`` or by a coarse ``tol`` while their labels still change, and with fewer distinct points than clusters (duplicate seeds,
    empty clusters repaired every iteration)."""
    from nn_clustering.core.kmeans import kmeans_plus_plus

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(size=(40, 6)) + 3.0 * rng.normal(size=6) for _ in range(k)])
    if distinct:
        x = np.repeat(x[:distinct], 20, axis=0)
    seeds = kmeans_plus_plus(x, k, 7, np.random.default_rng(11))
    results = [_textbook_lloyd(x, s, max_iter, tol) for s in seeds]
    best = int(np.argmin([inertia for _, inertia in results]))
    labels, inertia = kmeans(x, k, np.random.default_rng(11), n_init=7, max_iter=max_iter, tol=tol)
    if distinct:  # every restart reaches inertia 0 (to rounding): the same partition, any labels
        assert adjusted_rand_score(labels, results[best][0]) == 1.0 and len(np.unique(labels)) == distinct
        assert inertia == pytest.approx(0.0, abs=1e-9)
        return
    # restarts that reach the same optimum tie to the last bit, and summation order (BLAS kernels
    # differ between CPUs) decides which of them is the best: the labels are those of one of them
    tied = [r for r, (_, value) in enumerate(results) if value <= results[best][1] * (1 + 1e-12)]
    assert any(np.array_equal(labels, results[r][0]) for r in tied), f"labels of none of restarts {tied}"
    assert inertia == pytest.approx(results[best][1], rel=1e-10)


@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_mean_ncut_no_worse_than_sklearn_reference(sparsity):
    """20 random MLP-shaped graphs: our mean n-cut within 1% of (or below) scikit-learn's."""
    rng = np.random.default_rng(123)
    ours, ref = [], []
    for i in range(10):
        graph = mlp_graph(random_kernels(rng, sparsity=sparsity))
        adj, _ = graph.without_isolated()
        ours.append(cluster_graph(graph, SpectralConfig(n_clusters=4), seed=i).ncut)
        labels = SpectralClustering(
            n_clusters=4, affinity="precomputed", assign_labels="kmeans",
            eigen_solver="arpack", n_init=25, random_state=i,
        ).fit(adj).labels_
        ref.append(ncut(adj, labels))
    assert np.mean(ours) <= 1.01 * np.mean(ref)


@pytest.mark.parametrize("k", [1, 0, 12])
def test_bad_k_is_a_clear_error(k):
    graph = mlp_graph([np.ones((6, 3)), np.ones((3, 2))])  # 11 nodes
    if k == 12:
        with pytest.raises(ClusteringError, match="k = 12 is not below the 11 non-isolated nodes"):
            cluster_graph(graph, SpectralConfig(n_clusters=k))
    else:
        with pytest.raises(ParameterError, match=f"n_clusters must be at least 2, not {k}"):
            SpectralConfig(n_clusters=k)


def test_same_seed_same_labels():
    rng = np.random.default_rng(5)
    graph = mlp_graph(random_kernels(rng, (50, 40, 40, 10)))
    a = cluster_graph(graph, SpectralConfig(n_clusters=4), seed=7)
    b = cluster_graph(graph, SpectralConfig(n_clusters=4), seed=7)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_bipartite_fast_path_equals_generic_path():
    """cluster_graph works on the even-by-odd block; the generic dense eigensolver on the full
    adjacency must give the same labels (k-means only sees distances, which rotations and
    uniform scaling of the embedding preserve) and the same n-cut."""
    from nn_clustering.core.ncut import ncut_bipartite
    from nn_clustering.core.spectral import cluster_adjacency

    rng = np.random.default_rng(3)
    kernels = random_kernels(rng, (60, 40, 40, 40, 8), sparsity=0.5)
    kernels[0][:5] = 0.0  # isolated inputs
    graph = mlp_graph(kernels)
    fast = cluster_graph(graph, SpectralConfig(n_clusters=5), seed=4)
    adjacency, _ = graph.without_isolated(dense=True)
    generic = cluster_adjacency(adjacency, SpectralConfig(n_clusters=5), 4, layers=None)
    np.testing.assert_array_equal(fast.labels[graph.active], generic)
    assert fast.ncut == pytest.approx(ncut(adjacency, generic), rel=1e-12)
    block, even, odd = graph.bipartite_block()
    assert ncut_bipartite(block, generic[even], generic[odd]) == pytest.approx(ncut(adjacency, generic), rel=1e-12)


def test_first_argmin_equals_numpy_argmin_with_ties():
    """The k-means label step's argmin along the centre axis, ties resolved to the first index."""
    from nn_clustering.core.kmeans import _first_argmin

    rng = np.random.default_rng(3)
    for c in (2, 12, 300):
        scores = rng.integers(0, 4, size=(5, c, 40)).astype(float)  # many ties
        labels, best = _first_argmin(scores)
        np.testing.assert_array_equal(labels, scores.argmin(axis=1))
        np.testing.assert_array_equal(best, scores.min(axis=1))


def test_augmented_distance_products_equal_direct_distances():
    """k-means' one-product distances (points and centres augmented with norms and ones) against
    scipy's cdist: squared distances, and scores that differ from them by |x|^2 only."""
    from scipy.spatial.distance import cdist

    from nn_clustering.core.kmeans import _augmented, _scores, _sq_dists

    rng = np.random.default_rng(8)
    x = rng.normal(size=(60, 5))
    centres = rng.normal(size=(3, 4, 5))
    direct = np.stack([cdist(x, c, "sqeuclidean") for c in centres], axis=1)  # (n, r, c)
    xx = (x**2).sum(axis=1)
    np.testing.assert_allclose(_sq_dists(_augmented(x, xx), centres), direct.transpose(1, 2, 0), rtol=1e-12, atol=1e-12)
    scores = _scores(np.column_stack([x, np.ones(len(x))]), centres)  # (r, c, n)
    np.testing.assert_allclose(scores + xx, direct.transpose(1, 2, 0), rtol=1e-12, atol=1e-12)
    upper = rng.uniform(0.0, 20.0, size=(3, 1, 60))
    np.testing.assert_allclose(_sq_dists(_augmented(x, xx), centres, upper=upper),
                               np.minimum(direct.transpose(1, 2, 0), upper), rtol=1e-12, atol=1e-12)


def _float64_labels(x, centres):
    """The float64 label step written out: numpy's argmin (first minimum) of |c|^2 - 2 x.c."""
    from nn_clustering.core.kmeans import _scores

    return _scores(np.column_stack([x, np.ones(len(x))]), centres).argmin(axis=1)


def _label_step(x, centres):
    from nn_clustering.core.kmeans import _label_step, _Points

    shape = (centres.shape[0], centres.shape[1], len(x))
    points = _Points(x, np.einsum("nd,nd->n", x, x))
    return _label_step(points, centres, np.empty(shape, np.float32), np.empty(shape, bool), np.empty(shape))


@pytest.mark.parametrize("case", ["random", "ties", "near-ties", "outlier", "tiny", "huge"])
def test_float32_label_step_gives_the_float64_labels(case):
    """The label step decided in float32 where a rounding bound proves it gives the float64 first
    nearest centre everywhere: exact ties (first index), gaps that float32 cannot resolve (where a
    unique float32 minimum is wrong), a far outlier centre that loosens the bound for
    every point, and scales that underflow or overflow in float32."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 6))
    centres = rng.normal(size=(3, 12, 6))
    if case == "ties":  # integer points and centres: many exact ties, and exact float64 scores
        x, centres = rng.integers(-2, 3, size=(500, 6)).astype(float), rng.integers(-1, 2, size=(3, 12, 6)).astype(float)
    elif case == "near-ties":  # a few points almost halfway between centres 0 and 1 of a restart
        mid = (centres[:, 0] + centres[:, 1]) / 2
        x = np.concatenate([rng.normal(size=(1500, 6)), mid[rng.integers(0, 3, 60)] + 1e-7 * rng.normal(size=(60, 6))])
        centres[:, 2:] += 50.0
    elif case == "outlier":
        centres[:, 5] = 1e6
    elif case in ("tiny", "huge"):
        scale = 1e-25 if case == "tiny" else 1e25
        x, centres = x * scale, centres * scale
    expected = _float64_labels(x, centres)
    np.testing.assert_array_equal(_label_step(x, centres), expected)
    if case == "near-ties":  # a unique float32 minimum would be wrong for some of these points
        flat = centres.reshape(-1, 6)
        c_aug = np.column_stack([-2.0 * flat, (flat**2).sum(axis=1)]).astype(np.float32)
        scores = (c_aug @ np.column_stack([x, np.ones(len(x))]).astype(np.float32).T).reshape(3, 12, -1)
        lowest = np.sort(scores, axis=1)
        assert np.any((scores.argmin(axis=1) != expected) & (lowest[:, 0] < lowest[:, 1]))


def test_moved_point_updates_equal_recomputed_cluster_sums():
    """Cluster sums and sizes updated by the moved points alone against the membership products
    of the old and the new labels."""
    from nn_clustering.core.kmeans import _cluster_sums, _moved_sums

    rng = np.random.default_rng(2)
    r, k, n = 4, 7, 300
    x = rng.normal(size=(n, 5))
    old = rng.integers(0, k, size=(r, n)).astype(np.uint8)
    new = old.copy()
    moving = rng.random((r, n)) < 0.1
    new[moving] = rng.integers(0, k, size=moving.sum())
    work = (np.empty((r, k, n), bool), np.empty((r, k, n)))
    old_sums, old_sizes = _cluster_sums(x, old, k, work)
    new_sums, new_sizes = _cluster_sums(x, new, k, work)
    delta_sums, delta_sizes = _moved_sums(x, old, new, new != old, k)
    np.testing.assert_allclose(old_sums + delta_sums, new_sums, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(old_sizes + delta_sizes, new_sizes)
    expected = np.array([[x[new[i] == c].sum(axis=0) for c in range(k)] for i in range(r)])
    np.testing.assert_allclose(new_sums, expected, rtol=1e-12, atol=1e-12)


def test_banded_gram_equals_the_full_gram():
    """B^T B from the non-zero blocks of a chain's bipartite block (a layer with isolated nodes
    included) equals the product of the whole block; so does an unstructured matrix split into
    column groups, where every block is non-zero."""
    from nn_clustering.core.spectral import banded_gram

    rng = np.random.default_rng(6)
    kernels = random_kernels(rng, (50, 30, 20, 40, 8), sparsity=0.3)
    kernels[1][:, :4] = 0.0
    kernels[2][:4] = 0.0  # the first 4 nodes of layer 2 are isolated
    graph = mlp_graph(kernels)
    block, _, _ = graph.bipartite_block()
    sizes = [int(a.sum()) for a in np.split(graph.active, np.cumsum(graph.layer_sizes)[:-1])]
    assert sizes[2] == 16
    for b, cols in ((block, sizes[1::2]), (block.T, sizes[0::2])):
        np.testing.assert_allclose(banded_gram(b, cols), b.T @ b, rtol=1e-13, atol=1e-13)
    dense = rng.normal(size=(40, 25))
    np.testing.assert_allclose(banded_gram(dense, [10, 5, 10]), dense.T @ dense, rtol=1e-13, atol=1e-13)


def planted_network(width: int, modules: int, sparsity: float, seed: int = 0, leak: float = 0.02):
    """Kernels of a 784-width^4-10 net made of ``modules`` blocks (weak weights between them),
    pruned at random to ``sparsity``; and every node's planted module."""
    rng = np.random.default_rng(seed)
    sizes = (784, width, width, width, width, 10)
    groups = [np.arange(n) * modules // n for n in sizes]
    kernels = []
    for a, b in zip(groups[:-1], groups[1:], strict=True):
        w = rng.uniform(0.5, 1.0, (a.size, b.size)) * np.where(a[:, None] == b[None, :], 1.0, leak)
        w[rng.random(w.shape) < sparsity] = 0.0
        kernels.append(w)
    return kernels, np.concatenate(groups)


@pytest.mark.parametrize("k", [4, 7])
def test_sparse_path_equals_the_dense_path(k):
    """On graphs where both eigen paths run, the sparse Lanczos path gives the dense Gram path's
    labels (ARI 1.0) and n-cut (to 1e-9): k-means only sees the embedding's subspace."""
    kernels, _ = planted_network(400, k, 0.5, seed=k)
    graph = mlp_graph(kernels)
    dense = cluster_graph(graph, SpectralConfig(k), seed=3, solver="dense")
    sparse = cluster_graph(graph, SpectralConfig(k), seed=3, solver="sparse")
    assert adjusted_rand_score(dense.labels, sparse.labels) == 1.0
    assert sparse.ncut == pytest.approx(dense.ncut, abs=1e-9)


def test_planted_modules_are_recovered_on_a_large_graph():
    from nn_clustering.core.spectral import choose_solver

    kernels, planted = planted_network(1200, 4, 0.9, seed=1)  # 5,594 nodes, about 0.5M edges
    graph = mlp_graph(kernels)
    assert choose_solver(graph) == "sparse"
    clustering = cluster_graph(graph, SpectralConfig(4), seed=0)
    assert adjusted_rand_score(planted, clustering.labels) == 1.0


def test_the_sparse_path_memory_grows_with_the_edges():
    """Clustering an 8,794-node graph allocates a small multiple of its edges and nodes, nowhere
    near the dense even-by-odd block (784 + 2 x 2000 by 2 x 2000 + 10 entries) of the dense path."""
    import tracemalloc

    kernels, _ = planted_network(2000, 4, 0.97, seed=2)
    graph = mlp_graph(kernels)
    edges = sum(int(np.count_nonzero(k)) for k in kernels)
    dense_block_bytes = (784 + 4000) * 4010 * 8
    tracemalloc.start()
    cluster_graph(graph, SpectralConfig(4), seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kmeans_buffers = 6 * 25 * 4 * graph.n_nodes * 8  # a few (restarts, k, nodes) float arrays
    assert peak < 64 * edges + kmeans_buffers  # CSR copies of the edges, and k-means
    assert peak < dense_block_bytes / 3  # the dense path needs the block and its Gram matrix


def test_the_solver_rule():
    from nn_clustering.core import spectral

    small = mlp_graph(random_kernels(np.random.default_rng(0)))
    assert spectral.choose_solver(small) == "dense"  # the paper's MLP: today's path
    sparse_kernels, _ = planted_network(1200, 4, 0.9)
    assert spectral.choose_solver(mlp_graph(sparse_kernels)) == "sparse"
    dense_kernels, _ = planted_network(1200, 4, 0.0)
    assert spectral.choose_solver(mlp_graph(dense_kernels)) == "dense"  # a dense block: Gram is cheaper
    with pytest.raises(ValueError, match="solver"):
        cluster_graph(small, SpectralConfig(4), solver="qr")


@pytest.mark.slow
def test_scaling_benchmark_runs():
    """A smoke run of benchmarks/bench_scaling.py: two small widths, one graph each, a tiny
    shuffle test; every row reports both sides and the slope line is printed."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "bench_scaling.py"
    out = subprocess.run([sys.executable, str(script), "--widths", "512", "600", "--graphs", "1", "--shuffles", "2",
                          "--jobs", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    import re

    rows = [line for line in out.stdout.splitlines() if re.match(r"^\s*(dense|90% sparse)\s+\d+\s", line)]
    assert len(rows) == 8 and all(re.search(r"\d\.\dx ", row) for row in rows)  # both sides ran
    assert out.stdout.count("our time grows like edges^") == 4 and "shuffle test" in out.stdout
