"""Shuffles, shuffle-test statistics, and reproducibility across workers and backends."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from nn_clustering.core.graph import mlp_graph
from nn_clustering.core.shuffle import (
    ShuffleConfig,
    nonzero_is_layer,
    shuffle_kernels,
    shuffle_test,
    shuffle_weights,
    shuffled_ncuts,
)
from nn_clustering.core.spectral import SpectralConfig, cluster_graph
from nn_clustering.core.stats import cohens_d, empirical_p, shuffle_stats


def test_layer_shuffle_keeps_the_multiset():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 15))
    w[w < 0.5] = 0.0
    out = shuffle_weights(w, "layer", np.random.default_rng(1))
    assert out.shape == w.shape
    np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(w.ravel()))
    assert not np.array_equal(out != 0, w != 0)  # zeros move too


def test_layer_nonzero_keeps_pattern_and_values():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 15))
    w[np.abs(w) < 1.0] = 0.0
    out = shuffle_weights(w, "layer_nonzero", np.random.default_rng(1))
    np.testing.assert_array_equal(out != 0, w != 0)
    assert Counter(out[out != 0].tolist()) == Counter(w[w != 0].tolist())
    assert not np.array_equal(out, w)


def test_nonzero_shuffle_of_a_net_without_zeros_is_the_layer_shuffle():
    """What lets a dense net's ``layer_nonzero`` test reuse its ``layer`` test."""
    rng = np.random.default_rng(3)
    dense = [rng.normal(size=(9, 7)), rng.normal(size=(3, 3, 4, 5))]
    assert nonzero_is_layer(dense)
    for k in dense:
        by_method = [shuffle_weights(k, m, np.random.default_rng(5)) for m in ("layer", "layer_nonzero")]
        np.testing.assert_array_equal(*by_method)
    sparse = [dense[0].copy(), dense[1].copy()]
    sparse[1][:, :, 2, 3] = 0.0  # one all-zero conv slice is enough
    assert not nonzero_is_layer(sparse) and nonzero_is_layer(sparse[:1])
    sparse[0][4, 2] = 0.0
    assert not nonzero_is_layer(sparse[:1])
    by_method = [shuffle_weights(sparse[0], m, np.random.default_rng(5)) for m in ("layer", "layer_nonzero")]
    assert not np.array_equal(*by_method)


def test_shuffle_stats_against_hand_values():
    shuffled = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    s = shuffle_stats(2.5, shuffled, level=0.5)
    assert s.p_value == pytest.approx(3 / 6)  # two below, (2 + 1) / (5 + 1)
    assert s.mean == 3.0 and s.sd == pytest.approx(math.sqrt(2.0))
    assert s.z == pytest.approx(-0.5 / math.sqrt(2.0))
    assert s.significant and not s.below_all  # p = 0.5 <= level 0.5, but two shuffles lie below
    low = shuffle_stats(0.5, shuffled, level=0.2)
    assert low.p_value == pytest.approx(1 / 6) and low.significant and low.below_all
    assert low.z == pytest.approx(-2.5 / math.sqrt(2.0))
    assert shuffle_stats(5.0, shuffled).p_value == pytest.approx(6 / 6)  # a tie counts against x
    tied = shuffle_stats(2.0, shuffled, level=0.4)  # one below, one tied: (2 + 1) / 6 > 0.4
    assert tied.p_value == pytest.approx(3 / 6) and not tied.significant and not tied.below_all
    all_tied = shuffle_stats(0.0, np.zeros(20))
    assert all_tied.p_value == 1.0 and not all_tied.significant and not all_tied.below_all
    assert math.isnan(all_tied.z) and all_tied.as_dict()["z"] is None  # sd 0: z undefined, not +-inf
    assert math.isnan(shuffle_stats(1.0, np.full(20, 2.0)).z)
    assert empirical_p(3.0, np.array([3.0, 3.0])) == pytest.approx(1 / 3)  # lesions: strictly below


@pytest.mark.parametrize(("n", "level", "reachable"), [(1, 0.05, False), (2, 0.05, False), (18, 0.05, False),
                                                       (19, 0.05, True), (320, 0.05, True), (99, 0.01, True),
                                                       (98, 0.01, False), (1, 0.5, True)])
def test_below_all_shuffles_is_a_claim_only_where_n_reaches_the_level(n, level, reachable):
    """x below all N shuffles gives p = 1/(N+1): significant at `level` only when 1/(N+1) <= level."""
    s = shuffle_stats(0.0, np.arange(1.0, n + 1.0), level=level)
    assert s.below_all and s.p_value == pytest.approx(1 / (n + 1))
    assert s.reachable == reachable == s.significant
    assert ("no significance claim" in s.verdict()) == (not reachable)
    if not reachable:  # the note names a shuffle count that does reach the level, and no fewer
        needed = int(s.verdict().split("use at least ")[1].split()[0])
        assert 1 / (needed + 1) <= level < 1 / needed


def test_cohens_d_by_hand():
    assert cohens_d(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])) == pytest.approx(-3.0)
    # unequal sizes: pooled SD = sqrt((2*1 + 1*2) / 3)
    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, 6.0])
    assert cohens_d(a, b) == pytest.approx((2.0 - 5.0) / math.sqrt(4 / 3))


def small_kernels(seed=0, sizes=(30, 20, 20, 6)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


def test_planted_network_is_significant_and_shuffles_are_not():
    from test_spectral import planted_mlp

    kernels, _ = planted_mlp(np.random.default_rng(0))
    result = shuffle_test(kernels, SpectralConfig(4), ShuffleConfig(n_shuffles=20, random_state=3), progress=False)
    assert result.stats.significant and result.stats.below_all and result.stats.p_value == pytest.approx(1 / 21)
    # each cluster keeps 1/4 of a node's weight at full strength and sends 3/4 at 1%:
    # cut/vol = 0.0075 / 0.2575 per cluster, about 0.117 for four clusters
    assert result.clustering.ncut == pytest.approx(4 * 0.0075 / 0.2575, rel=0.15)
    assert result.shuffled_ncuts.min() > 1.0
    assert result.shuffled_ncuts.shape == (20,)


@pytest.mark.parametrize("method", ["layer", "layer_nonzero"])
def test_same_seed_same_ncuts_for_one_and_two_workers(method):
    kernels = small_kernels()
    kernels[0][np.abs(kernels[0]) < 0.8] = 0.0
    spectral = SpectralConfig(4)
    one = shuffled_ncuts(kernels, spectral, ShuffleConfig(n_shuffles=10, method=method, random_state=11, n_jobs=1), progress=False)
    two = shuffled_ncuts(kernels, spectral, ShuffleConfig(n_shuffles=10, method=method, random_state=11, n_jobs=2), progress=False)
    np.testing.assert_array_equal(one, two)
    other = shuffled_ncuts(kernels, spectral, ShuffleConfig(n_shuffles=10, method=method, random_state=12), progress=False)
    assert not np.array_equal(one, other)
    # a longer run extends a shorter one: shuffle i depends only on (seed, i)
    longer = shuffled_ncuts(kernels, spectral, ShuffleConfig(n_shuffles=14, method=method, random_state=11), progress=False)
    np.testing.assert_array_equal(longer[:10], one)


@pytest.mark.slow
def test_dask_local_cluster_gives_identical_results():
    pytest.importorskip("dask.distributed")
    kernels = small_kernels(1)
    spectral = SpectralConfig(4)
    local = shuffled_ncuts(kernels, spectral, ShuffleConfig(n_shuffles=8, random_state=5, n_jobs=1), progress=False)
    dask = shuffled_ncuts(
        kernels, spectral, ShuffleConfig(n_shuffles=8, random_state=5, n_jobs=2, scheduler="local"), progress=False
    )
    np.testing.assert_array_equal(local, dask)


def test_layer_shuffle_of_a_matrix_is_the_permutation_of_its_entries():
    """The in-place shuffle equals indexing by the same generator's permutation, entry for entry
    (the shuffled networks, and so every published shuffle test, are those of that definition)."""
    w = np.random.default_rng(9).normal(size=(37, 23))
    w[w < 0.3] = 0.0
    expected = w.ravel()[np.random.default_rng(4).permutation(w.size)].reshape(w.shape)
    np.testing.assert_array_equal(shuffle_weights(w, "layer", np.random.default_rng(4)), expected)


def pruned_net_with_dead_units(seed: int = 0) -> list[np.ndarray]:
    """A small pruned MLP: dead input pixels (rows of zeros), a fully pruned hidden unit."""
    rng = np.random.default_rng(seed)
    kernels = [rng.normal(size=(30, 12)), rng.normal(size=(12, 10)), rng.normal(size=(10, 4))]
    for k in kernels:
        k[rng.random(k.shape) < 0.3] = 0.0
    kernels[0][[0, 1, 2, 29]] = 0.0  # dead input pixels
    kernels[0][:, 5] = 0.0  # hidden unit 5 of layer 1: no weight in, none out
    kernels[1][5] = 0.0
    return kernels


def test_layer_shuffles_keep_the_trained_node_set_and_each_reduced_kernels_values():
    from nn_clustering.core.shuffle import live_units

    kernels = pruned_net_with_dead_units()
    graph = mlp_graph(kernels)
    live = live_units(graph)
    assert not graph.active[[0, 1, 2, 29]].any() and not graph.active[30 + 5]
    for i in range(20):
        rng = np.random.default_rng(i)
        shuffled = shuffle_kernels(kernels, "layer", rng, live)
        np.testing.assert_array_equal(mlp_graph(shuffled).active, graph.active)
        for k, s, (rows, cols) in zip(kernels, shuffled, live, strict=True):
            reduced, moved = k[np.ix_(rows, cols)], s[np.ix_(rows, cols)]
            np.testing.assert_array_equal(np.sort(moved.ravel()), np.sort(reduced.ravel()))
            assert not s[~rows].any() and not s[:, ~cols].any()
        full = shuffle_kernels(kernels, "layer_full", np.random.default_rng(i))
        assert mlp_graph(full).active[[0, 1, 2, 29]].any()  # the old order gives dead pixels weights


def test_layer_shuffle_of_a_net_without_dead_units_is_the_full_kernel_shuffle():
    """Where no node is isolated, the reduced kernel is the kernel: same draws as layer_full."""
    rng = np.random.default_rng(3)
    kernels = [rng.normal(size=(8, 6)), rng.normal(size=(6, 3))]
    live = [(np.ones(8, bool), np.ones(6, bool)), (np.ones(6, bool), np.ones(3, bool))]
    a = shuffle_kernels(kernels, "layer", np.random.default_rng(1), live)
    b = shuffle_kernels(kernels, "layer_full", np.random.default_rng(1))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_conv_layer_shuffles_move_slices_among_live_channels_only():
    from nn_clustering.core.graph import cnn_graph
    from nn_clustering.core.shuffle import live_units

    rng = np.random.default_rng(4)
    kernels = [rng.normal(size=(3, 3, 5, 6)), rng.normal(size=(3, 3, 6, 4))]
    kernels[0][:, :, 1] = 0.0  # input channel 1 is dead
    kernels[0][:, :, :, 2] = 0.0  # channel 2 of the middle layer is dead
    kernels[1][:, :, 2] = 0.0
    graph = cnn_graph(kernels)
    live = live_units(graph)
    shuffled = shuffle_kernels(kernels, "layer", np.random.default_rng(0), live)
    np.testing.assert_array_equal(cnn_graph(shuffled).active, graph.active)
    slices = lambda k: sorted(map(tuple, k.reshape(9, -1).T.round(12)))  # noqa: E731
    for k, s in zip(kernels, shuffled, strict=True):
        assert slices(k) == slices(s)  # whole slices move, zero slices stay at dead channels


def test_shuffle_test_uses_the_reduced_kernels_of_the_trained_net():
    """The shuffled n-cuts are those of graphs built from reduced-kernel shuffles drawn from
    children 1..N of the root seed."""
    from nn_clustering.core.shuffle import live_units, shuffle_seeds

    kernels = pruned_net_with_dead_units(1)
    spectral = SpectralConfig(3)
    result = shuffle_test(kernels, spectral, ShuffleConfig(n_shuffles=3, method="layer", random_state=5), progress=False)
    live = live_units(mlp_graph(kernels))
    for value, seed in zip(result.shuffled_ncuts, shuffle_seeds(5, 3), strict=True):
        rng = np.random.default_rng(seed)
        graph = mlp_graph(shuffle_kernels(kernels, "layer", rng, live))
        assert value == cluster_graph(graph, spectral, rng).ncut


def arrangement_counts(values: np.ndarray, draws: int, seed: int) -> Counter:
    """How often :func:`permute_entries` gives each arrangement of ``values``."""
    from nn_clustering.core.shuffle import permute_entries

    rng = np.random.default_rng(seed)
    return Counter(tuple(permute_entries(values, rng).tolist()) for _ in range(draws))


@pytest.mark.parametrize("min_entries", [1, 2**62], ids=["position draw", "full shuffle"])
def test_both_permutations_give_every_arrangement_equally_often(monkeypatch, min_entries):
    """The position draw of large kernels and the full shuffle are the same uniform permutation:
    the 12 arrangements of (0, 0, 1, 2) come out equally often (chi-square against uniform)."""
    from scipy.stats import chisquare

    from nn_clustering.core import shuffle

    monkeypatch.setattr(shuffle, "DRAW_POSITIONS_MIN_ENTRIES", min_entries)
    counts = arrangement_counts(np.array([0.0, 0.0, 1.0, 2.0]), 12_000, seed=3)
    assert len(counts) == 12
    assert chisquare(list(counts.values())).pvalue > 1e-3


def test_position_draw_of_a_large_sparse_kernel_is_a_uniform_permutation(monkeypatch):
    """Partial Fisher-Yates regime (10% non-zero of 20,000): values kept, each value's position
    uniform over the array, and any two values equally likely in either order."""
    from scipy.stats import chisquare

    from nn_clustering.core import shuffle

    rng = np.random.default_rng(0)
    values = np.zeros(20_000)
    values[rng.choice(values.size, 2_000, replace=False)] = np.arange(1.0, 2_001.0)
    first, before = np.zeros(10, int), 0
    draw = np.random.default_rng(1)
    monkeypatch.setattr(shuffle, "DRAW_POSITIONS_MIN_ENTRIES", 1)
    for _ in range(400):
        out = shuffle.permute_entries(values, draw)
        np.testing.assert_array_equal(np.sort(out), np.sort(values))
        where = np.flatnonzero(out)
        pos = dict(zip(out[where].tolist(), where.tolist(), strict=True))
        first[pos[1.0] * 10 // values.size] += 1
        before += pos[1.0] < pos[2.0]
    assert chisquare(first).pvalue > 1e-3
    assert 160 < before < 240  # 400 draws of a fair coin: 200 +- 2.5 sd


def test_large_kernels_draw_positions_and_dense_ones_keep_the_nonzero_equivalence():
    """At 2**20 entries a pruned kernel's ``layer`` shuffle draws its non-zero positions (other
    draws than a full shuffle, the same multiset); a kernel without zeros is still shuffled in
    full, so ``layer`` and ``layer_nonzero`` agree draw for draw."""
    from nn_clustering.core.shuffle import DRAW_POSITIONS_MIN_ENTRIES

    rng = np.random.default_rng(2)
    dense = rng.normal(size=(1024, DRAW_POSITIONS_MIN_ENTRIES // 1024))
    pruned = np.where(rng.random(dense.shape) < 0.9, 0.0, dense)
    out = shuffle_weights(pruned, "layer", np.random.default_rng(4))
    np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(pruned.ravel()))
    full = pruned.ravel()[np.random.default_rng(4).permutation(pruned.size)].reshape(pruned.shape)
    assert not np.array_equal(out, full)
    assert abs(np.count_nonzero(out[:512]) - np.count_nonzero(out[512:])) < 5 * np.sqrt(pruned.size * 0.09)
    assert nonzero_is_layer([dense])
    by_method = [shuffle_weights(dense, m, np.random.default_rng(5)) for m in ("layer", "layer_nonzero")]
    np.testing.assert_array_equal(*by_method)
