"""The shuffle test of an activation graph (method.md §5.1): is its n-cut lower than that of the
same edge weights rearranged?

The graph is reduced to its non-isolated units, the weights of its strict upper triangle are
permuted (``edges``: among all pairs, as the successor paper; ``layer_pairs``: among the pairs of
the same two layers only, so every shuffle keeps how alike each layer's units are to each other
and to every other layer's), mirrored, and re-clustered with the same k. Shuffle i draws from
child i + 1 of ``SeedSequence(random_state)`` as the weight shuffle test does, on the same local
processes or dask cluster (:func:`~nn_clustering.core.shuffle.map_seeds`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import ClusteringError
from .activations import ActivationGraph
from .enums import ActivationNull
from .ncut import ncut
from .parameters import checked
from .shuffle import ShuffleConfig, ShuffleTestResult, map_seeds, observed_clustering, shuffle_seeds
from .spectral import SpectralConfig, cluster_adjacency
from .stats import shuffle_stats


def _pair_groups(graph: ActivationGraph, null: ActivationNull) -> np.ndarray | None:
    """Group index of each upper-triangle pair among the live units (None: one group)."""
    keep = graph.active
    layers = graph.layer_of_node[keep]
    rows, cols = np.triu_indices(len(layers), 1)
    if null == ActivationNull.EDGES:
        return None
    n_layers = len(graph.layer_sizes)
    return np.minimum(layers[rows], layers[cols]) * n_layers + np.maximum(layers[rows], layers[cols])


def shuffle_activation_weights(live: np.ndarray, groups: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The live units' weights with the strict upper triangle permuted (within each group of
    pairs, if given) and mirrored."""
    n = live.shape[0]
    rows, cols = np.triu_indices(n, 1)
    values = live[rows, cols].copy()
    if groups is None:
        values = rng.permutation(values)
    else:
        for g in np.unique(groups):
            where = np.flatnonzero(groups == g)
            values[where] = values[rng.permutation(where)]
    out = np.zeros_like(live)
    out[rows, cols] = values
    return out + out.T


def shuffled_activation_ncut(
    live: np.ndarray, groups: np.ndarray | None, spectral: SpectralConfig, seed: np.random.SeedSequence
) -> float:
    """n-cut of one shuffle of the live units' weights, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    shuffled = shuffle_activation_weights(live, groups, rng)
    keep = shuffled.sum(axis=1) > 0
    if spectral.n_clusters >= keep.sum():
        raise ClusteringError(
            f"shuffle {seed.spawn_key[-1]} of the activation graph leaves only {int(keep.sum())} connected units, too "
            f"few for k = {spectral.n_clusters}; choose a smaller k"
        )
    adjacency = shuffled[np.ix_(keep, keep)]
    labels = cluster_adjacency(adjacency, spectral, rng)
    return ncut(adjacency, labels)


def _chunk(live: np.ndarray, groups: np.ndarray | None, spectral: SpectralConfig,
           seeds: Sequence[np.random.SeedSequence]) -> list[float]:
    with threadpool_limits(limits=1):
        return [shuffled_activation_ncut(live, groups, spectral, s) for s in seeds]


def activation_shuffle_test(
    graph: ActivationGraph,
    spectral: SpectralConfig | None = None,
    config: ShuffleConfig | None = None,
    null: ActivationNull = ActivationNull.LAYER_PAIRS,
    progress: bool = True,
) -> ShuffleTestResult:
    """Cluster the activation graph and compare its n-cut with ``config.n_shuffles`` shuffles of
    its edge weights (``config.method``, a weight shuffle method, does not apply)."""
    spectral = spectral or SpectralConfig()
    config = config or ShuffleConfig()
    null = checked("null", null)
    clustering = observed_clustering(graph, spectral, config.random_state)
    live, _ = graph.without_isolated(dense=True)
    task = functools.partial(_chunk, live, _pair_groups(graph, null), spectral)
    values = map_seeds(task, shuffle_seeds(config.random_state, config.n_shuffles), config, f"{null} shuffles", progress)
    return ShuffleTestResult(clustering, values, shuffle_stats(clustering.ncut, values, config.level), config, spectral)
