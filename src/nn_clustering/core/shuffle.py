"""The shuffle test (method.md §5): is the network more clusterable than its shuffles?

Each weight matrix (or conv kernel, slice by slice) is permuted independently (``layer``: the
kernel reduced to the units of the trained graph's non-isolated nodes), the graph rebuilt, isolated
nodes removed, the graph re-clustered from scratch with the same k and its n-cut computed.
Shuffle i draws everything from child i + 1 of ``numpy.random.SeedSequence(seed)`` (child 0
clusters the unshuffled network), and the work is cut into fixed chunks by shuffle index, so
the result is identical for any number of workers and any backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import joblib
import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import ClusteringError
from .dag import DagGraph
from .enums import ShuffleMethod
from .graph import Graph, GraphBuilder, mlp_graph
from .parallel import execution
from .parameters import checked, validate_fields
from .progress import progress_bar
from .spectral import Clustering, SpectralConfig, cluster_graph
from .stats import DEFAULT_LEVEL, ShuffleStats, shuffle_stats

#: The methods an experiment runs by default (``layer_full`` on request only).
SHUFFLE_METHODS: tuple[ShuffleMethod, ...] = (ShuffleMethod.LAYER, ShuffleMethod.LAYER_NONZERO)
#: Per graph kernel, the (input units, output units) that belong to non-isolated nodes.
LiveUnits = list[tuple[np.ndarray, np.ndarray]]
#: A matrix of at least this many entries (beyond the paper's nets, whose largest has 200,704)
#: is permuted by drawing its non-zero values' positions, not by swapping every entry
#: (:func:`permute_entries`, method.md §5).
DRAW_POSITIONS_MIN_ENTRIES = 2**20


@dataclass(frozen=True)
class ShuffleConfig:
    """A shuffle test: how many shuffles, which method, the root seed and where to run."""

    n_shuffles: int = 320
    method: ShuffleMethod = ShuffleMethod.LAYER
    random_state: int = 42
    n_jobs: int = 1
    scheduler: str | None = None
    level: float = DEFAULT_LEVEL  # significance level of the claim (method.md §5)

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class ShuffleTestResult:
    """The observed clustering, every shuffled n-cut, and their statistics."""

    clustering: Clustering
    shuffled_ncuts: np.ndarray
    stats: ShuffleStats
    config: ShuffleConfig
    spectral: SpectralConfig

    def as_dict(self) -> dict:
        """JSON-ready summary (labels and the raw shuffled n-cuts included)."""
        return {
            "ncut": self.clustering.ncut,
            "n_clusters": self.clustering.n_clusters,
            "labels": self.clustering.labels.tolist(),
            "shuffle": {
                **{k: v for k, v in asdict(self.config).items() if k not in ("n_jobs", "scheduler")},
                **self.stats.as_dict(),
            },
            "shuffled_ncuts": self.shuffled_ncuts.tolist(),
            "spectral": asdict(self.spectral),
        }


def shuffle_weights(
    weights: np.ndarray, method: ShuffleMethod, rng: np.random.Generator,
    live: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Permute one weight matrix, or the kernel slices of one conv kernel.

    ``layer``: a uniform permutation of the entries of the reduced kernel, zeros included: the
    rows and columns of the input and output units in ``live`` (the units of non-isolated
    nodes; all when None). Dead units' rows and columns, all zero, stay zero, so the shuffled
    graph has the trained graph's node set, as in the paper's code (method.md §5).
    ``layer_full``: the same over the whole kernel, dead units included. ``layer_nonzero``: the
    non-zero values permuted among the non-zero positions (keeps the sparsity pattern).
    A conv kernel (h, w, in, out) is shuffled as the (in, out) matrix of its slices
    K[:, :, i, j]: whole slices move together, so the channel graph's edge weights are
    permuted exactly as a dense layer's are (``layer_nonzero`` moves the slices that are not
    all zero among the positions of such slices).
    """
    w = np.asarray(weights)
    method = checked("method", method)
    if method == ShuffleMethod.LAYER and live is not None and not (live[0].all() and live[1].all()):
        return _shuffle_reduced(w, live, rng)
    units = _units(w)
    if method != ShuffleMethod.LAYER_NONZERO and w.ndim == 2:
        return permute_entries(w.ravel(), rng).reshape(w.shape)
    if method != ShuffleMethod.LAYER_NONZERO:
        return units[:, rng.permutation(units.shape[1])].reshape(w.shape)
    out = np.zeros_like(units)
    positions = np.flatnonzero(units.any(axis=0))
    out[:, positions] = units[:, rng.permutation(positions)]
    return out.reshape(w.shape)


def _shuffle_reduced(w: np.ndarray, live: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A ``layer`` shuffle of the kernel restricted to the live input and output units."""
    rows, cols = (np.asarray(m, bool) for m in live)
    if (len(rows), len(cols)) != w.shape[-2:]:
        raise ValueError(f"live units ({len(rows)}, {len(cols)}) do not match a kernel of shape {w.shape}")
    out = np.zeros_like(w)
    if w.ndim == 2:
        sub = permute_entries(w[np.ix_(rows, cols)].ravel(), rng)
        out[np.ix_(rows, cols)] = sub.reshape(int(rows.sum()), int(cols.sum()))
        return out
    units, moved = _units(w), _units(out)
    positions = np.flatnonzero(np.outer(rows, cols).ravel())
    moved[:, positions] = units[:, positions[rng.permutation(positions.size)]]
    return out


def permute_entries(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform random permutation of the 1-D array ``values``, as a new array.

    Below :data:`DRAW_POSITIONS_MIN_ENTRIES` entries, or without any zero entry, a copy is
    shuffled in place: exactly the swaps of ``rng.permutation(n)``, so ``out[j] = values[perm[j]]``
    (the draws that make ``layer`` and ``layer_nonzero`` shuffles of a dense net identical).
    Larger arrays with zeros draw a uniformly random ordered sample of m of the n positions
    (``Generator.choice`` without replacement: a partial Fisher-Yates shuffle, or Floyd's
    algorithm below 2% density; about m random draws instead of n) and put the m non-zero values there in their order. Every arrangement of the values
    is equally likely under both, so the two are the same permutation test; a pruned kernel's
    shuffle costs a fraction of a full one (method.md §5).
    """
    flat = np.asarray(values).ravel()
    if flat.size >= DRAW_POSITIONS_MIN_ENTRIES:
        nonzero = np.flatnonzero(flat)
        if nonzero.size < flat.size:
            out = np.zeros_like(flat)
            out[rng.choice(flat.size, nonzero.size, replace=False)] = flat[nonzero]
            return out
    out = flat.copy()
    rng.shuffle(out)
    return out


def _units(w: np.ndarray) -> np.ndarray:
    """The units that move, as columns: one per entry of a matrix, one per slice K[:, :, i, j]."""
    return w.reshape(-1, w.shape[2] * w.shape[3]) if w.ndim == 4 else w.reshape(1, -1)


def nonzero_is_layer(kernels: Sequence[np.ndarray]) -> bool:
    """Whether ``layer_nonzero`` shuffles of ``kernels`` are their ``layer`` shuffles.

    True when no unit (entry, or conv kernel slice) is all zero: then the non-zero positions are
    every position, and the same generator draws the same permutation for both methods, so the
    two shuffle tests agree number for number (a dense net's test need not run twice).
    """
    return all(bool(_units(np.asarray(k)).any(axis=0).all()) for k in kernels)


def shuffle_kernels(
    kernels: Sequence[np.ndarray], method: ShuffleMethod, rng: np.random.Generator,
    live: LiveUnits | None = None,
) -> list[np.ndarray]:
    """Shuffle every kernel independently (biases are never part of the graph); ``live``: the
    live units of each kernel for ``layer`` shuffles (:func:`live_units`)."""
    if live is None:
        return [shuffle_weights(k, method, rng) for k in kernels]
    return [shuffle_weights(k, method, rng, units) for k, units in zip(kernels, live, strict=True)]


def live_units(graph) -> LiveUnits:
    """Per graph kernel, the (input, output) units of the graph's non-isolated nodes: what a
    ``layer`` shuffle permutes (method.md §5)."""
    return graph.kernel_units()


def shuffled_ncut(
    kernels: Sequence[np.ndarray],
    method: ShuffleMethod,
    spectral: SpectralConfig,
    seed: np.random.SeedSequence,
    builder: GraphBuilder = mlp_graph,
    live: LiveUnits | None = None,
) -> float:
    """n-cut of one shuffled network, everything drawn from ``seed`` (child i of the root seed
    for shuffle i). A shuffle that leaves too few connected nodes for k clusters is a
    :class:`ClusteringError` naming that shuffle."""
    rng = np.random.default_rng(seed)
    graph = builder(shuffle_kernels(kernels, method, rng, live))
    n_active = int(graph.active.sum())
    if spectral.n_clusters >= n_active:
        raise ClusteringError(
            f"shuffle {seed.spawn_key[-1]} of the network leaves only {n_active} connected nodes, too few "
            f"for k = {spectral.n_clusters} clusters (the network itself has enough): its weights are too "
            "sparse for this k in a random arrangement; choose a smaller k"
        )
    return cluster_graph(graph, spectral, rng).ncut


def _chunk(
    kernels: Sequence[np.ndarray],
    method: ShuffleMethod,
    spectral: SpectralConfig,
    seeds: Sequence[np.random.SeedSequence],
    builder: GraphBuilder = mlp_graph,
    live: LiveUnits | None = None,
) -> list[float]:
    with threadpool_limits(limits=1):  # small dense problems: one BLAS thread is fastest
        return [shuffled_ncut(kernels, method, spectral, s, builder, live) for s in seeds]


def shuffle_seeds(seed: int, n_shuffles: int) -> list[np.random.SeedSequence]:
    """Children 1..N of the root SeedSequence (child 0 is the observed clustering's)."""
    return np.random.SeedSequence(seed).spawn(n_shuffles + 1)[1:]


def observed_seed(seed: int) -> np.random.SeedSequence:
    """Child 0 of the root SeedSequence: the seed of the unshuffled clustering."""
    return np.random.SeedSequence(seed).spawn(1)[0]


def observed_clustering(graph: Graph, spectral: SpectralConfig, seed: int) -> Clustering:
    """The unshuffled network's clustering under root ``seed`` (child 0), one BLAS thread."""
    with threadpool_limits(limits=1):
        return cluster_graph(graph, spectral, observed_seed(seed))


#: Networks with more weights than this are shuffled one shuffle per task (a shuffle then takes
#: seconds, and the progress bar moves with each).
LARGE_NETWORK = 2**22


def shuffled_ncuts(
    kernels: Sequence[np.ndarray],
    spectral: SpectralConfig,
    config: ShuffleConfig,
    builder: GraphBuilder = mlp_graph,
    progress: bool = True,
    chunk_size: int | None = None,
    graph: Graph | DagGraph | None = None,
) -> np.ndarray:
    """The N shuffled n-cuts, in shuffle order, computed locally or on a dask cluster
    (``graph``: the unshuffled network's, when already built). Shuffles go to the workers
    ``chunk_size`` at a time: by default 4 (small networks: less overhead per task), or one at a
    time for networks of more than :data:`LARGE_NETWORK` weights, so that the progress bar moves
    with every shuffle of a long test."""
    kernels = [np.asarray(k) for k in kernels]
    if chunk_size is None:
        chunk_size = 1 if sum(k.size for k in kernels) > LARGE_NETWORK else 4
    live = live_units(graph if graph is not None else builder(kernels)) if config.method == ShuffleMethod.LAYER else None
    task = functools.partial(_chunk, kernels, config.method, spectral, builder=builder, live=live)
    return map_seeds(task, shuffle_seeds(config.random_state, config.n_shuffles), config, f"{config.method} shuffles",
                     progress, chunk_size)


def map_seeds(
    task: Callable[[Sequence[np.random.SeedSequence]], list[float]],
    seeds: Sequence[np.random.SeedSequence],
    config: ShuffleConfig,
    desc: str,
    progress: bool = True,
    chunk_size: int = 4,
) -> np.ndarray:
    """``task`` (a picklable function of a chunk of seeds, returning one value per seed) over
    every seed, ``chunk_size`` seeds per task, on ``config``'s local processes or dask cluster;
    the values in seed order (so the same for any number of workers)."""
    chunks = [seeds[i : i + chunk_size] for i in range(0, len(seeds), chunk_size)]
    out: list[float] = []
    with (
        execution(config.n_jobs, config.scheduler) as parallel_kwargs,
        progress_bar(total=len(seeds), desc=desc, unit="shuffle", enabled=progress) as bar,
    ):
        parallel = joblib.Parallel(return_as="generator", **parallel_kwargs)
        for values in parallel(joblib.delayed(task)(c) for c in chunks):
            out.extend(values)
            bar.update(len(values))
    return np.asarray(out, dtype=np.float64)


def shuffle_test(
    kernels: Sequence[np.ndarray],
    spectral: SpectralConfig | None = None,
    config: ShuffleConfig | None = None,
    builder: GraphBuilder = mlp_graph,
    progress: bool = True,
    graph: Graph | DagGraph | None = None,
) -> ShuffleTestResult:
    """Cluster the network and compare its n-cut with ``config.n_shuffles`` shuffles of it
    (``graph``: ``builder(kernels)`` when the caller has already built it)."""
    spectral = spectral or SpectralConfig()
    config = config or ShuffleConfig()
    graph = builder(kernels) if graph is None else graph
    clustering = observed_clustering(graph, spectral, config.random_state)
    values = shuffled_ncuts(kernels, spectral, config, builder, progress, graph=graph)
    return ShuffleTestResult(clustering, values, shuffle_stats(clustering.ncut, values, config.level), config, spectral)
