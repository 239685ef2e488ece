"""What the clustering benchmarks share: random MLP kernels, a timer, a peak-memory reading and the
scikit-learn reference configured as the paper's code configured it."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from functools import partial
from unittest import mock

import numpy as np
from sklearn.cluster import SpectralClustering


def random_kernels(sizes: Sequence[int], sparsity: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Glorot-uniform random kernels of an MLP with layer ``sizes``; the smallest ``sparsity``
    share of each kernel's entries set to 0."""
    kernels = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        limit = np.sqrt(6 / (a + b))
        w = rng.uniform(-limit, limit, size=(a, b))
        if sparsity:
            w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0.0
        kernels.append(w)
    return kernels


def timed(fn):
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peak_rss_gb() -> float:
    """This process's peak resident memory in GB: VmHWM, which starts anew at exec (ru_maxrss
    would carry over the peak of the parent that started this measuring process)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reference(k: int, seed: int) -> SpectralClustering:
    """scikit-learn's spectral clustering as the paper's code ran it."""
    return SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="kmeans",
                              eigen_solver="arpack", n_init=25, random_state=seed)


def report_permutation_ratio(kernels: Sequence[np.ndarray], n_shuffles: int, what: str) -> None:
    """Time ``n_shuffles`` k = 4 ``layer`` shuffles of ``kernels`` in this process, alternately with
    the position draw of large kernels and with a full Fisher-Yates shuffle of every kernel (the
    baseline, same run), and print one line with their ratio."""
    from threadpoolctl import threadpool_limits

    from nn_clustering.core import shuffle
    from nn_clustering.core.graph import mlp_graph
    from nn_clustering.core.spectral import SpectralConfig

    live = shuffle.live_units(mlp_graph(kernels))
    ways = {"draw": shuffle.DRAW_POSITIONS_MIN_ENTRIES, "full": 2**62}
    times = dict.fromkeys(ways, 0.0)
    with threadpool_limits(limits=1):
        for seed in shuffle.shuffle_seeds(1, n_shuffles):
            for name, min_entries in ways.items():
                with mock.patch.object(shuffle, "DRAW_POSITIONS_MIN_ENTRIES", min_entries):
                    _, t = timed(partial(shuffle.shuffled_ncut, kernels, "layer", SpectralConfig(4), seed,
                                         mlp_graph, live))
                times[name] += t / n_shuffles
    print(f"\none shuffle of the {what} in one process, {n_shuffles} alternating pairs: {times['draw']:.3f} s with the "
          f"position draw, {times['full']:.3f} s with full Fisher-Yates shuffles (baseline): "
          f"{times['full'] / times['draw']:.2f}x", flush=True)


def report_shuffle_test(kernels: Sequence[np.ndarray], n_shuffles: int, n_jobs: int, what: str) -> None:
    """Time an ``n_shuffles``-shuffle ``layer`` test of ``kernels`` at k = 4 on ``n_jobs``
    workers and print one line about it."""
    from nn_clustering.core.shuffle import ShuffleConfig, shuffle_test
    from nn_clustering.core.spectral import SpectralConfig

    config = ShuffleConfig(n_shuffles=n_shuffles, method="layer", random_state=1, n_jobs=n_jobs)
    result, t = timed(lambda: shuffle_test(kernels, SpectralConfig(4), config, progress=False))
    print(f"\nshuffle test, {what}: {n_shuffles} layer shuffles at k = 4 with {n_jobs} workers in {t:.1f} s "
          f"({t / n_shuffles * n_jobs:.3f} s per shuffle per worker); n-cut {result.clustering.ncut:.4f}, "
          f"shuffled mean {result.stats.mean:.4f}", flush=True)
