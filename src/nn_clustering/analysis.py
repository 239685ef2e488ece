"""Clustering trained models: the shuffle test of every instance and stage, as table rows.

This is what the ``mlp-clustering`` and ``mlp-clustering-stability`` notebooks call. Each
shuffle test is cached by the model file's digest and its parameters, so re-running a notebook
does not recompute it (:mod:`nn_clustering.cache`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from .cache import ResultCache
from .catalog import STAGES, TrainedInstance
from .errors import NnClusteringError
from .fileio import file_digest
from .graph import Graph, cnn_graph, mlp_graph
from .model_io import NetworkWeights, load_weights
from .provenance import code_version
from .shuffle import (
    SHUFFLE_METHODS,
    ShuffleConfig,
    nonzero_is_layer,
    observed_clustering,
    shuffle_test,
)
from .spectral import Clustering, SpectralConfig
from .stats import cohens_d

#: Columns of ``results/mlp-clustering.csv``, in order (one row per instance, stage and method).
CLUSTERING_COLUMNS = [
    "tag", "instance", "stage", "k", "method", "ncut", "shuffled_mean", "shuffled_sd", "z",
    "p_value", "significant", "n_shuffles", "train_accuracy", "train_accuracy_inference", "test_accuracy",
    "test_accuracy_a", "test_accuracy_b", "n_nodes", "smallest_cluster", "drop_dead_ends", "model_seed", "shuffle_seed", "profile", "model_sha256", "code_version",
]


def graph_inputs(
    weights: NetworkWeights, norm: str = "l1", drop_dead_ends: bool = False
) -> tuple[list[np.ndarray], Callable[[Sequence[np.ndarray]], Graph]]:
    """The kernels that form the graph and its builder: all MLP kernels, or the conv-to-conv
    kernels of a CNN (SPEC section 3); with ``drop_dead_ends`` the builder also removes the
    nodes on no input-to-output path (:meth:`Graph.without_dead_ends`, not in SPEC)."""
    if weights.kind == "cnn":
        conv = weights.conv_kernels
        if len(conv) < 2:
            raise NnClusteringError(
                f"{weights.source}: a CNN needs at least two conv layers for a channel graph "
                f"(found {len(conv)}); only conv-to-conv kernels form it"
            )
        kernels, builder = list(conv[1:]), partial(cnn_graph, norm=norm)
    else:
        kernels, builder = list(weights.kernels), mlp_graph
    return kernels, partial(_live_graph, builder) if drop_dead_ends else builder


def _live_graph(builder: Callable[[Sequence[np.ndarray]], Graph], kernels: Sequence[np.ndarray]) -> Graph:
    """``builder(kernels)`` without its dead ends (a module-level function, so it pickles)."""
    return builder(kernels).without_dead_ends()


@dataclass(frozen=True)
class ClusteringConfig:
    """What the clustering experiments compute for each model."""

    n_clusters: int = 4
    methods: tuple[str, ...] = SHUFFLE_METHODS
    stages: tuple[str, ...] = STAGES
    n_shuffles: int = 320
    seed: int = 42
    n_jobs: int = 1
    norm: str = "l1"
    drop_dead_ends: bool = False  # not in SPEC: remove nodes on no input-to-output path first
    spectral: SpectralConfig = field(default_factory=SpectralConfig)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in SHUFFLE_METHODS]
        if unknown:
            raise NnClusteringError(f"unknown shuffle method {unknown[0]!r}; use {', '.join(SHUFFLE_METHODS)}")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise NnClusteringError(f"unknown stage {unknown[0]!r}; use {', '.join(STAGES)}")
        if self.n_shuffles < 1:
            raise NnClusteringError(f"n_shuffles = {self.n_shuffles}: need at least 1 shuffle")


def shuffle_test_of_file(
    path: str | Path,
    config: ClusteringConfig,
    method: str,
    cache: ResultCache | None = None,
    progress: bool = True,
    digest: str | None = None,
) -> dict:
    """The shuffle test of the model file ``path`` as a JSON-ready dict (cached).

    Holds ``ncut``, ``labels``, ``shuffle`` (statistics), ``shuffled_ncuts``, ``layer_sizes``,
    ``model_sha256`` and the ``code_version`` that computed it.
    """
    digest = digest or file_digest(path, "sha256")
    spectral = replace(config.spectral, n_clusters=config.n_clusters)
    parts = {
        "what": "shuffle_test", "model_sha256": digest, "method": method,
        "n_shuffles": config.n_shuffles, "seed": config.seed, "norm": config.norm,
        "spectral": asdict(spectral),
        **({"drop_dead_ends": True} if config.drop_dead_ends else {}),  # older entries stay valid
    }

    def compute() -> dict:
        weights = load_weights(path)
        kernels, builder = graph_inputs(weights, config.norm, config.drop_dead_ends)
        if method == "layer_nonzero" and nonzero_is_layer(kernels):  # e.g. a dense net: reuse
            same = shuffle_test_of_file(path, config, "layer", cache, progress, digest)
            return {**same, "shuffle": {**same["shuffle"], "method": method}}
        shuffle = ShuffleConfig(config.n_shuffles, method, config.seed, config.n_jobs)  # type: ignore[arg-type]
        result = shuffle_test(kernels, spectral, shuffle, builder, progress=progress)
        return {
            **result.as_dict(),
            "layer_sizes": list(builder(kernels).layer_sizes),
            "model_sha256": digest,
            "code_version": code_version(),
        }

    return (cache or ResultCache(None)).get_or_compute(parts, compute)


def pruned_clustering(instance: TrainedInstance, k: int, seed: int, cache: ResultCache | None = None) -> Clustering:
    """The pruned network's clustering into ``k`` clusters under root ``seed`` (the shuffle
    test's observed clustering), cached by the kernel file's digest."""
    spectral = SpectralConfig(n_clusters=k)

    def compute() -> dict:
        kernels, builder = graph_inputs(instance.weights("pruned"))
        clustering = observed_clustering(builder(kernels), spectral, seed)
        return {"labels": clustering.labels.tolist(), "ncut": clustering.ncut}

    parts = {"what": "labels", "model_sha256": instance.digest("pruned"), "seed": seed,
             "spectral": asdict(spectral)}
    value = (cache or ResultCache(None)).get_or_compute(parts, compute)
    return Clustering(np.asarray(value["labels"], np.int64), float(value["ncut"]), k)


@dataclass(frozen=True)
class ModelClustering:
    """One shuffle test of one stage of one instance: its table row and the raw results."""

    row: dict
    labels: np.ndarray
    shuffled_ncuts: np.ndarray
    layer_sizes: tuple[int, ...]


def cluster_instance(
    instance: TrainedInstance,
    stage: str,
    method: str,
    config: ClusteringConfig,
    cache: ResultCache | None = None,
    progress: bool = True,
) -> ModelClustering:
    """The shuffle test of one stage of a trained instance, with its provenance row."""
    record = shuffle_test_of_file(
        instance.kernels_path(stage), config, method, cache, progress, instance.digest(stage)
    )
    stats = record["shuffle"]
    labels = np.asarray(record["labels"], dtype=np.int64)
    accuracy_a, accuracy_b = instance.source_accuracies(stage)
    row = {
        "tag": instance.tag,
        "instance": instance.instance,
        "stage": stage,
        "k": config.n_clusters,
        "method": method,
        "ncut": record["ncut"],
        "shuffled_mean": stats["mean"],
        "shuffled_sd": stats["sd"],
        "z": stats["z"],
        "p_value": stats["p_value"],
        "significant": bool(stats["significant"]),
        "n_shuffles": stats["n"],
        "train_accuracy": instance.accuracy(stage, "train"),
        "train_accuracy_inference": instance.inference_accuracy(stage),
        "test_accuracy": instance.accuracy(stage, "test"),
        # an A-B mixture's test accuracy on the rows from A and from B (empty otherwise)
        "test_accuracy_a": accuracy_a,
        "test_accuracy_b": accuracy_b,
        "n_nodes": int(np.sum(labels >= 0)),
        "smallest_cluster": smallest_cluster(labels, config.n_clusters),
        "drop_dead_ends": config.drop_dead_ends,
        "model_seed": instance.seed,
        "shuffle_seed": config.seed,
        "profile": instance.profile,
        "model_sha256": record["model_sha256"],
        "code_version": record["code_version"],
    }
    return ModelClustering(
        row, labels, np.asarray(record["shuffled_ncuts"], dtype=np.float64), tuple(record["layer_sizes"])
    )


def smallest_cluster(labels: np.ndarray, k: int) -> int:
    """Nodes in the smallest of the k clusters (0 if one is empty; isolated nodes not counted)."""
    return int(np.bincount(labels[labels >= 0], minlength=k).min())


def tiny_cluster_note(smallest: int, n_nodes: int) -> str:
    """A warning when a cluster holds under 1% of the nodes. Seen in practice: the 10 output
    units as a cluster of their own (dense nets, k >= 7), and a few weakly attached
    low-degree nodes, such as a hidden unit left without outgoing weights and the pixels
    feeding it (pruned nets); a cluster whose volume is nearly all cut adds about 1 to the
    n-cut, which can then exceed the shuffles'."""
    if smallest >= 0.01 * n_nodes:
        return ""
    return f"  (!) smallest cluster: {smallest} node{'' if smallest == 1 else 's'}"


def cluster_instances(
    instances: Sequence[TrainedInstance],
    config: ClusteringConfig,
    cache: ResultCache | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[ModelClustering]:
    """Shuffle tests of every instance x stage x method of ``config`` (cached), in order."""
    if not instances:
        raise NnClusteringError("no trained models to cluster; run `make models` first")
    out = []
    for inst in instances:
        for stage in config.stages:
            for method in config.methods:
                result = cluster_instance(inst, stage, method, config, cache, progress)
                r = result.row
                log(
                    f"{inst.tag}/{inst.instance} {stage:6s} k={config.n_clusters} {method:13s} "
                    f"n-cut {r['ncut']:.3f}  shuffles {r['shuffled_mean']:.3f} +- {r['shuffled_sd']:.3f}  "
                    f"p {r['p_value']:.3g}{'  *' if r['significant'] else ''}{tiny_cluster_note(r['smallest_cluster'], r['n_nodes'])}"
                )
                out.append(result)
    return out


def clustering_table(results: Sequence[ModelClustering]):
    """The results as a pandas DataFrame with :data:`CLUSTERING_COLUMNS`."""
    import pandas as pd

    return pd.DataFrame([r.row for r in results], columns=CLUSTERING_COLUMNS)


def shuffles_table(results: Sequence[ModelClustering]):
    """Every shuffled n-cut in long form: tag, instance, stage, k, method, shuffle, ncut."""
    import pandas as pd

    frames = [
        pd.DataFrame({
            "tag": r.row["tag"], "instance": r.row["instance"], "stage": r.row["stage"],
            "k": r.row["k"], "method": r.row["method"],
            "shuffle": np.arange(r.shuffled_ncuts.size), "ncut": r.shuffled_ncuts,
        })
        for r in results
    ]
    return pd.concat(frames, ignore_index=True)


def method_effect_sizes(results: Sequence[ModelClustering]):
    """Cohen's d between the ``layer`` and ``layer_nonzero`` shuffles of each model and stage
    (positive: ``layer`` shuffles have the higher n-cut)."""
    import pandas as pd

    by_model: dict[tuple, dict[str, ModelClustering]] = {}
    for r in results:
        key = (r.row["tag"], r.row["instance"], r.row["stage"], r.row["k"])
        by_model.setdefault(key, {})[r.row["method"]] = r
    rows = []
    for (tag, instance, stage, k), methods in by_model.items():
        if set(methods) >= {"layer", "layer_nonzero"}:
            a, b = methods["layer"].shuffled_ncuts, methods["layer_nonzero"].shuffled_ncuts
            rows.append({
                "tag": tag, "instance": instance, "stage": stage, "k": k,
                "layer_mean": float(a.mean()), "layer_nonzero_mean": float(b.mean()),
                "cohens_d": cohens_d(a, b),
            })
    return pd.DataFrame(rows, columns=["tag", "instance", "stage", "k", "layer_mean",
                                       "layer_nonzero_mean", "cohens_d"])
