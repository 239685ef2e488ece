"""``mlp-clustering`` and ``cnn-clustering``: the shuffle test of every trained instance and
stage (method.md §7), as table rows.

Each shuffle test is cached by the model file's digest and its parameters, so re-running a
notebook does not recompute it (:mod:`nn_clustering.storage.cache`). The stability experiment
(:mod:`.stability`) runs the same tests on the pruned nets at other k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.enums import Architecture, ShuffleMethod, SliceNorm, Stage
from ..core.graph import graph_inputs
from ..core.parameters import checked, validate_fields
from ..core.rows import Row
from ..core.shuffle import (
    SHUFFLE_METHODS,
    nonzero_is_layer,
    observed_clustering,
)
from ..core.spectral import Clustering, SpectralConfig, smallest_cluster
from ..core.stats import cohens_d
from ..errors import NnClusteringError
from ..estimators import ShuffleTest
from ..formats.loader import load_weights
from ..registry import REGISTRY
from ..storage.cache import ResultCache
from ..storage.files import file_digest
from ..storage.provenance import code_version
from ..storage.tables import frame, read_table, save_figure, write_csv, write_table
from ..training.catalog import STAGES, TrainedInstance, find_instances
from .paths import ExperimentPaths, k_suffix


@dataclass(frozen=True)
class ClusteringConfig:
    """What the clustering experiments compute for each model."""

    n_clusters: int = 4
    methods: tuple[ShuffleMethod, ...] = SHUFFLE_METHODS
    stages: tuple[Stage, ...] = STAGES
    n_shuffles: int = 320
    random_state: int = 42
    n_jobs: int = 1
    norm: SliceNorm = SliceNorm.L1
    drop_dead_ends: bool = False  # method.md §8: remove nodes on no input-to-output path first

    def __post_init__(self) -> None:
        validate_fields(self)

    def shuffle_test(self, method: ShuffleMethod, progress: bool) -> ShuffleTest:
        """The estimator that runs this configuration's shuffle test with ``method``."""
        return ShuffleTest(n_clusters=self.n_clusters, n_shuffles=self.n_shuffles, method=method, norm=self.norm,
                           drop_dead_ends=self.drop_dead_ends, n_jobs=self.n_jobs,
                           random_state=self.random_state, progress=progress)


@dataclass(frozen=True)
class ClusteringRow(Row):
    """One row of ``<arch>-clustering.csv``: a shuffle test of one stage of one instance."""

    tag: str
    instance: int
    stage: Stage
    n_clusters: int
    method: ShuffleMethod
    ncut: float
    shuffled_mean: float
    shuffled_sd: float
    z: float | None
    p_value: float
    significant: bool
    n_shuffles: int
    train_accuracy: float | None  # what fit reported, dropout on
    train_accuracy_inference: float | None  # 10,000 training images, dropout off
    test_accuracy: float | None
    test_accuracy_a: float | None  # an A-B mixture's test rows from A (empty otherwise)
    test_accuracy_b: float | None  # ... and from B
    n_nodes: int
    smallest_cluster: int
    drop_dead_ends: bool
    model_seed: int
    random_state: int
    profile: str
    model_sha256: str
    code_version: str


#: Columns of ``results/mlp-clustering.csv``, in order (one row per instance, stage and method).
CLUSTERING_COLUMNS = ClusteringRow.columns()


@dataclass(frozen=True)
class MethodEffectRow(Row):
    """One row of ``<arch>-clustering-cohens-d.csv``: how far apart the two shuffle methods'
    n-cut distributions of one model lie (positive: ``layer`` shuffles have the higher n-cut)."""

    tag: str
    instance: int
    stage: Stage
    n_clusters: int
    layer_mean: float
    layer_nonzero_mean: float
    cohens_d: float


#: What a cached shuffle test must hold.
SHUFFLE_TEST_FIELDS = ("ncut", "labels", "shuffle", "shuffled_ncuts", "layer_sizes", "model_sha256",
                       "code_version")


def shuffle_test_of_file(
    path: str | Path,
    config: ClusteringConfig,
    method: ShuffleMethod | str,
    cache: ResultCache | None = None,
    progress: bool = True,
    digest: str | None = None,
) -> dict:
    """The shuffle test of the model file ``path`` as a JSON-ready dict (cached).

    Holds ``ncut``, ``labels``, ``shuffle`` (statistics), ``shuffled_ncuts``, ``layer_sizes``,
    ``model_sha256`` and the ``code_version`` that computed it.
    """
    method = checked("method", method)
    digest = digest or file_digest(path, "sha256")
    parts = {
        "what": "shuffle_test", "model_sha256": digest, "method": method,
        "n_shuffles": config.n_shuffles, "random_state": config.random_state, "norm": config.norm,
        "spectral": asdict(SpectralConfig(n_clusters=config.n_clusters)),
        **({"drop_dead_ends": True} if config.drop_dead_ends else {}),
    }

    def compute() -> dict:
        weights = load_weights(path)
        kernels, _ = graph_inputs(weights, config.norm, config.drop_dead_ends)
        if method == ShuffleMethod.LAYER_NONZERO and nonzero_is_layer(kernels):  # e.g. a dense net: reuse
            same = shuffle_test_of_file(path, config, ShuffleMethod.LAYER, cache, progress, digest)
            return {**same, "shuffle": {**same["shuffle"], "method": method}}
        test = config.shuffle_test(method, progress).fit(weights)
        return {
            **test.result_.as_dict(),
            "layer_sizes": list(test.graph_.layer_sizes),
            "model_sha256": digest,
            "code_version": code_version(),
        }

    return (cache or ResultCache(None)).get_or_compute(parts, compute, SHUFFLE_TEST_FIELDS)


def pruned_clustering(instance: TrainedInstance, n_clusters: int, random_state: int, cache: ResultCache | None = None) -> Clustering:
    """The pruned network's clustering into ``k`` clusters under root ``seed`` (the shuffle
    test's observed clustering), cached by the kernel file's digest."""
    spectral = SpectralConfig(n_clusters=n_clusters)

    def compute() -> dict:
        kernels, builder = graph_inputs(instance.weights(Stage.PRUNED))
        clustering = observed_clustering(builder(kernels), spectral, random_state)
        return {"labels": clustering.labels.tolist(), "ncut": clustering.ncut}

    parts = {"what": "labels", "model_sha256": instance.digest(Stage.PRUNED), "random_state": random_state,
             "spectral": asdict(spectral)}
    value = (cache or ResultCache(None)).get_or_compute(parts, compute, ("labels", "ncut"))
    return Clustering(np.asarray(value["labels"], np.int64), float(value["ncut"]), n_clusters)


@dataclass(frozen=True)
class ModelClustering:
    """One shuffle test of one stage of one instance: its table row and the raw results."""

    row: ClusteringRow
    labels: np.ndarray
    shuffled_ncuts: np.ndarray
    layer_sizes: tuple[int, ...]


def cluster_instance(
    instance: TrainedInstance,
    stage: Stage | str,
    method: ShuffleMethod | str,
    config: ClusteringConfig,
    cache: ResultCache | None = None,
    progress: bool = True,
) -> ModelClustering:
    """The shuffle test of one stage of a trained instance, with its provenance row."""
    stage = checked("stage", stage)
    method = checked("method", method)
    record = shuffle_test_of_file(
        instance.kernels_path(stage), config, method, cache, progress, instance.digest(stage)
    )
    stats = record["shuffle"]
    labels = np.asarray(record["labels"], dtype=np.int64)
    accuracy_a, accuracy_b = instance.source_accuracies(stage)
    row = ClusteringRow(
        tag=instance.tag,
        instance=instance.instance,
        stage=stage,
        n_clusters=config.n_clusters,
        method=method,
        ncut=record["ncut"],
        shuffled_mean=stats["mean"],
        shuffled_sd=stats["sd"],
        z=stats["z"],
        p_value=stats["p_value"],
        significant=bool(stats["below_all"]),  # the paper's criterion (method.md §5)
        n_shuffles=stats["n"],
        train_accuracy=instance.accuracy(stage, "train"),
        train_accuracy_inference=instance.inference_accuracy(stage),
        test_accuracy=instance.accuracy(stage, "test"),
        test_accuracy_a=accuracy_a,
        test_accuracy_b=accuracy_b,
        n_nodes=int(np.sum(labels >= 0)),
        smallest_cluster=smallest_cluster(labels, config.n_clusters),
        drop_dead_ends=config.drop_dead_ends,
        model_seed=instance.seed,
        random_state=config.random_state,
        profile=instance.profile,
        model_sha256=record["model_sha256"],
        code_version=record["code_version"],
    )
    return ModelClustering(
        row, labels, np.asarray(record["shuffled_ncuts"], dtype=np.float64), tuple(record["layer_sizes"])
    )


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
                    f"n-cut {r.ncut:.3f}  shuffles {r.shuffled_mean:.3f} +- {r.shuffled_sd:.3f}  "
                    f"p {r.p_value:.3g}{'  *' if r.significant else ''}{tiny_cluster_note(r.smallest_cluster, r.n_nodes)}"
                )
                out.append(result)
    return out


def clustering_table(results: Sequence[ModelClustering]):
    """The results as a pandas DataFrame with the columns of :class:`ClusteringRow`."""
    return frame([r.row for r in results], ClusteringRow)


def shuffles_table(results: Sequence[ModelClustering]):
    """Every shuffled n-cut in long form: tag, instance, stage, k, method, shuffle, ncut."""
    import pandas as pd

    frames = [
        pd.DataFrame({
            "tag": r.row.tag, "instance": r.row.instance, "stage": str(r.row.stage),
            "n_clusters": r.row.n_clusters, "method": str(r.row.method),
            "shuffle": np.arange(r.shuffled_ncuts.size), "ncut": r.shuffled_ncuts,
        })
        for r in results
    ]
    return pd.concat(frames, ignore_index=True)


def method_effect_sizes(results: Sequence[ModelClustering]):
    """Cohen's d between the ``layer`` and ``layer_nonzero`` shuffles of each model and stage
    (positive: ``layer`` shuffles have the higher n-cut), as :class:`MethodEffectRow` rows."""
    by_model: dict[tuple, dict[ShuffleMethod, ModelClustering]] = {}
    for r in results:
        key = (r.row.tag, r.row.instance, r.row.stage, r.row.n_clusters)
        by_model.setdefault(key, {})[r.row.method] = r
    rows = []
    for (tag, instance, stage, n_clusters), methods in by_model.items():
        if set(methods) >= {ShuffleMethod.LAYER, ShuffleMethod.LAYER_NONZERO}:
            a = methods[ShuffleMethod.LAYER].shuffled_ncuts
            b = methods[ShuffleMethod.LAYER_NONZERO].shuffled_ncuts
            rows.append(MethodEffectRow(tag, instance, stage, n_clusters, float(a.mean()), float(b.mean()), cohens_d(a, b)))
    return frame(rows, MethodEffectRow)


def run_clustering(
    paths: ExperimentPaths,
    config: ClusteringConfig,
    arch: Architecture | str = Architecture.MLP,
    tags: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
):
    """``mlp-clustering`` / ``cnn-clustering``: the shuffle test of every trained instance of
    ``arch`` (MLP neuron graphs or CNN channel graphs), dense and pruned, both methods.

    Writes ``<arch>-clustering.csv`` (+ ``.xlsx``), ``<arch>-clustering-shuffles.csv.gz`` (every
    shuffled n-cut) and ``<arch>-clustering-cohens-d.csv``; returns (table, results).
    """
    arch = checked("arch", arch)
    instances = find_instances(paths.models, list(tags) if tags else None, arch=arch)
    wanted = list(tags) if tags else [t for t, spec in REGISTRY.items() if spec.arch == arch]
    missing = [t for t in wanted if t not in {i.tag for i in instances}]
    if missing and instances:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        log(f"{len(missing)} {arch.upper()} tag(s) not trained under {paths.models}, skipped: {shown} "
            "(`make models TAGS=...` trains them; CIFAR-10 tags need the CIFAR-10 download)")
    results = cluster_instances(instances, config, paths.cache, progress, log)
    table = clustering_table(results)
    name = f"{arch}-clustering{k_suffix(config.n_clusters)}"
    write_table(table, paths.results / f"{name}.csv", sheet=f"{arch}-clustering")
    write_csv(shuffles_table(results), paths.results / f"{name}-shuffles.csv.gz")
    write_csv(method_effect_sizes(results), paths.results / f"{name}-cohens-d.csv")
    return table, results


def run_mlp_clustering(paths: ExperimentPaths, config: ClusteringConfig, tags: Sequence[str] | None = None,
                       progress: bool = True, log: Callable[[str], None] = print):
    """``mlp-clustering``: :func:`run_clustering` of the MLPs."""
    return run_clustering(paths, config, Architecture.MLP, tags, progress, log)


def run_cnn_clustering(paths: ExperimentPaths, config: ClusteringConfig, tags: Sequence[str] | None = None,
                       progress: bool = True, log: Callable[[str], None] = print):
    """``cnn-clustering``: :func:`run_clustering` of the CNNs' channel graphs, plus its figures
    (``figures/cnn-shuffle-distributions``, ``figures/cnn-ncut-vs-accuracy``) and, when the MLP
    table exists, ``cnn-vs-mlp.csv`` (:func:`architecture_comparison`)."""
    from . import plots

    table, results = run_clustering(paths, config, Architecture.CNN, tags, progress, log)
    suffix = k_suffix(config.n_clusters)
    save_figure(plots.shuffle_distributions(table, shuffles_table(results), Stage.PRUNED, 0),
                paths.figures / f"cnn-shuffle-distributions{suffix}")
    save_figure(plots.ncut_vs_accuracy(table), paths.figures / f"cnn-ncut-vs-accuracy{suffix}")
    if (paths.results / "mlp-clustering.csv").exists():
        write_csv(architecture_comparison(paths), paths.results / "cnn-vs-mlp.csv")
    return table, results


def architecture_comparison(paths: ExperimentPaths, method: ShuffleMethod | str = ShuffleMethod.LAYER):
    """MLPs next to CNNs: per architecture, tag and stage, the mean n-cut, shuffled mean, z,
    share significant and test accuracy (``method`` shuffles), from the two clustering tables."""
    import pandas as pd

    method = checked("method", method)
    frames = []
    for arch in Architecture:
        table = read_table(paths.results / f"{arch}-clustering.csv", f"{arch}-clustering")
        table = table[(table["method"] == method) & (table["n_clusters"] == 4)]
        frames.append(table.assign(arch=arch.upper(), dataset=table["tag"].str.removeprefix("CNN-")))
    both = pd.concat(frames, ignore_index=True)
    return (both.groupby(["dataset", "arch", "tag", "stage"], sort=False)
            .agg(instances=("ncut", "size"), ncut=("ncut", "mean"), shuffled_mean=("shuffled_mean", "mean"),
                 z=("z", "mean"), significant=("significant", "mean"), test_accuracy=("test_accuracy", "mean"))
            .reset_index().sort_values(["dataset", "stage", "arch"], kind="stable", ignore_index=True))
