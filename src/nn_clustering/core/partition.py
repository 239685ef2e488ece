"""Partitioners other than spectral clustering: Leiden and Louvain maximising Newman's
modularity at a resolution (method.md §4.1), on any graph the project builds (weights or
activations), through igraph (its Leiden, iterated until it no longer improves, and its
multilevel algorithm).

Both draw their node orders from igraph's generator, set to one seeded with the seed for the call,
so the same seed gives the same partition.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import NnClusteringError
from .enums import Partitioner
from .modularity import modularity
from .ncut import ncut
from .rows import Row
from .spectral import SpectralConfig, cluster_graph


@dataclass(frozen=True)
class Partition:
    """Labels of every node (-1 for isolated ones), the number of clusters, the partition's
    n-cut and Newman's modularity Q on the graph it came from."""

    labels: np.ndarray
    n_clusters: int
    ncut: float
    modularity: float
    partitioner: Partitioner


def _int_seed(seed: int | np.random.SeedSequence) -> int:
    if isinstance(seed, np.random.SeedSequence):
        return int(seed.generate_state(1)[0] % 2**31)
    return int(seed) % 2**31


def _igraph(adjacency: sp.spmatrix | sp.sparray | np.ndarray):
    """An undirected weighted igraph of the upper triangle of a symmetric adjacency."""
    try:
        import igraph
    except ImportError:  # pragma: no cover - a regular dependency
        raise NnClusteringError("Leiden and Louvain need igraph: pip install igraph") from None
    upper = sp.triu(sp.coo_array(adjacency, dtype=np.float64), k=1).tocoo()
    graph = igraph.Graph(n=adjacency.shape[0], edges=np.column_stack([upper.row, upper.col]).tolist(), directed=False)
    graph.es["weight"] = upper.data.tolist()
    return graph


def community_labels(
    adjacency: sp.spmatrix | sp.sparray | np.ndarray,
    partitioner: Partitioner,
    resolution: float = 1.0,
    seed: int | np.random.SeedSequence = 0,
) -> np.ndarray:
    """Leiden or Louvain labels (0..c-1) of a graph without isolated nodes: the partition of
    highest modularity the algorithm finds at ``resolution`` (Leiden iterated until it no longer
    improves)."""
    partitioner = Partitioner(partitioner)
    if partitioner not in (Partitioner.LEIDEN, Partitioner.LOUVAIN):
        raise ValueError(f"{partitioner!r} is not a modularity partitioner; use 'leiden' or 'louvain'")
    import igraph

    graph = _igraph(adjacency)
    igraph.set_random_number_generator(random.Random(_int_seed(seed)))
    try:
        if partitioner == Partitioner.LEIDEN:
            found = graph.community_leiden(objective_function="modularity", weights="weight", resolution=resolution,
                                           n_iterations=-1)
        else:
            found = graph.community_multilevel(weights="weight", resolution=resolution)
    finally:
        igraph.set_random_number_generator(random)
    return np.asarray(found.membership, dtype=np.int64)


def partition_graph(graph, partitioner: Partitioner, resolution: float = 1.0,
                    seed: int | np.random.SeedSequence = 0) -> Partition:
    """Leiden or Louvain on a network graph (weights or activations): isolated nodes left out
    (-1), n-cut and Q scored on the rest."""
    adjacency, _ = graph.without_isolated(dense=False)
    labels = community_labels(adjacency, partitioner, resolution, seed)
    n_clusters = int(labels.max()) + 1
    score = ncut(adjacency, labels) if n_clusters > 1 else 0.0
    return Partition(graph.expand_labels(labels), n_clusters, score, modularity(adjacency, labels, resolution),
                     Partitioner(partitioner))


def partition_any(graph, partitioner: Partitioner, n_clusters: int = 12, resolution: float = 1.0,
                  seed: int | np.random.SeedSequence = 0) -> Partition:
    """Any partitioner on any network graph: spectral clustering into ``n_clusters`` (``seed``
    as :func:`~nn_clustering.core.spectral.cluster_graph` takes it), or Leiden / Louvain at
    ``resolution``; scored by n-cut and Q alike."""
    partitioner = Partitioner(partitioner)
    if partitioner != Partitioner.SPECTRAL:
        return partition_graph(graph, partitioner, resolution, seed)
    clustering = cluster_graph(graph, SpectralConfig(n_clusters=n_clusters), seed)
    adjacency, _ = graph.without_isolated(dense=False)
    q = modularity(adjacency, clustering.labels[graph.active])
    return Partition(clustering.labels, n_clusters, clustering.ncut, q, partitioner)


@dataclass(frozen=True)
class LayerPartitionRow(Row):
    """One layer's activation graph partitioned on its own (method.md §3.6)."""

    layer: str
    units: int
    dead: int
    measure: str
    partitioner: str
    resolution: float
    n_clusters: int
    ncut: float
    modularity: float
    random_state: int


def layer_partitions(graphs, partitioner: Partitioner, n_clusters: int = 12, resolution: float = 1.0,
                     random_state: int = 42) -> list[tuple[LayerPartitionRow, np.ndarray]]:
    """Each graph (one per layer) partitioned on its own under the root seed (child i for layer
    i): a row and the layer's labels (-1 for dead units) per layer."""
    seeds = np.random.SeedSequence(random_state).spawn(len(graphs))
    out = []
    for graph, seed in zip(graphs, seeds, strict=True):
        part = partition_any(graph, partitioner, n_clusters, resolution, seed)
        row = LayerPartitionRow(graph.names[0], graph.n_nodes, int((~graph.active).sum()), str(graph.measure),
                                str(Partitioner(partitioner)), float(resolution), part.n_clusters, part.ncut,
                                part.modularity, random_state)
        out.append((row, part.labels))
    return out
