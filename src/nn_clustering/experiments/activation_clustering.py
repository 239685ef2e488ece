"""``mlp-activation-clustering``: the paper's MLPs clustered by their activations and by Leiden
as well as by spectral clustering of their weights, and how far the partitions agree (method.md
§3.6, §4.1, §4.2, §5.1).

For each trained instance and stage: the weight graph's spectral partition (k clusters) and
Leiden partition; the activation graph over the instance's test set, its spectral partition,
its shuffle test against the chosen null, and its Leiden partition; Newman's Q beside every
n-cut; the adjusted Rand index and NMI between the weight and activation partitions of the hidden
units, and between spectral and Leiden on each graph. Each model's result is cached by the model
file's and the dataset's digests and the parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.activation_shuffle import activation_shuffle_test
from ..core.agreement import adjusted_rand_index, normalised_mutual_info
from ..core.enums import ActivationNull, Measure, Partitioner, Stage
from ..core.graph import graph_inputs
from ..core.modularity import modularity
from ..core.ncut import ncut
from ..core.parameters import validate_fields
from ..core.partition import partition_any
from ..core.rows import Row
from ..core.shuffle import ShuffleConfig, observed_seed
from ..core.spectral import SpectralConfig
from ..data import load_dataset
from ..data.build import ensure_dataset
from ..errors import NnClusteringError
from ..formats.activations import build_activation_graph
from ..formats.loader import load_weights
from ..storage.cache import ResultCache
from ..storage.files import file_digest
from ..storage.provenance import code_version
from ..storage.tables import frame, save_figure, write_table
from ..training.catalog import STAGES, TrainedInstance, find_instances
from .paths import ExperimentPaths, k_suffix, project_root

#: The paper's MLPs: the tags the notebook clusters by default.
PAPER_MLPS = ("MNIST", "MNIST+DROPOUT", "FASHION", "FASHION+DROPOUT")


@dataclass(frozen=True)
class ActivationConfig:
    """What ``mlp-activation-clustering`` computes for each model."""

    n_clusters: int = 12
    measure: Measure = Measure.SPEARMAN
    null: ActivationNull = ActivationNull.LAYER_PAIRS
    n_shuffles: int = 50
    resolution: float = 1.0
    random_state: int = 42
    n_jobs: int = 1
    stages: tuple[Stage, ...] = STAGES

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class ActivationClusteringRow(Row):
    """One row of ``mlp-activation-clustering-kK.csv``: one stage of one instance."""

    tag: str
    instance: int
    stage: Stage
    data: str  # the dataset whose test split the network ran on
    measure: Measure
    null: ActivationNull
    n_clusters: int
    n_shuffles: int
    units: int  # hidden units
    dead_units: int  # constant over the data
    weight_ncut: float
    weight_modularity: float
    activation_ncut: float
    activation_modularity: float
    shuffled_mean: float
    shuffled_sd: float
    z: float | None
    p_value: float
    significant: bool  # below all shuffles (the paper's criterion)
    transfer_ncut: float  # the activation graph's n-cut under the weight partition (the successor's)
    ari_weight_activation: float
    nmi_weight_activation: float
    leiden_weight_clusters: int
    leiden_weight_modularity: float
    leiden_weight_ncut: float
    leiden_activation_clusters: int
    leiden_activation_modularity: float
    leiden_activation_ncut: float
    ari_spectral_leiden_weights: float
    ari_spectral_leiden_activations: float
    ari_leiden_weight_activation: float
    nmi_leiden_weight_activation: float
    resolution: float
    test_accuracy: float | None
    model_seed: int
    random_state: int
    profile: str
    model_sha256: str
    data_sha256: str
    code_version: str


#: The implementation of Leiden and Louvain behind a cached result (part of its key).
PARTITIONERS = "igraph community_leiden (n_iterations=-1) and community_multilevel"
#: What a cached result must hold.
CACHED_FIELDS = ("units", "dead_units", "weight_ncut", "activation_ncut", "shuffled_ncuts", "labels", "code_version")


def _hidden(graph, labels: np.ndarray) -> np.ndarray:
    """The labels of the hidden layers' units (the weight graph's inner layers)."""
    return np.concatenate(graph.split_by_layer(labels)[1:-1])


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    both = (a >= 0) & (b >= 0)
    if both.sum() < 2:
        return float("nan"), float("nan")
    return adjusted_rand_index(a, b), normalised_mutual_info(a, b)


def analyse_model(path: Path, x: np.ndarray, config: ActivationConfig, progress: bool = False) -> dict:
    """Every partition of one model file's weight and activation graphs over inputs ``x``, as a
    JSON-ready dict (what the cache holds)."""
    seed = config.random_state
    kernels, builder = graph_inputs(load_weights(path))
    weights_graph = builder(kernels)
    w_spec = partition_any(weights_graph, Partitioner.SPECTRAL, config.n_clusters, seed=observed_seed(seed))
    w_leid = partition_any(weights_graph, Partitioner.LEIDEN, resolution=config.resolution, seed=seed)
    graph = build_activation_graph(path, x, config.measure, progress=progress)
    spectral = SpectralConfig(n_clusters=config.n_clusters)
    shuffle = ShuffleConfig(n_shuffles=config.n_shuffles, random_state=seed, n_jobs=config.n_jobs)
    test = activation_shuffle_test(graph, spectral, shuffle, config.null, progress)
    a_labels = test.clustering.labels
    a_leid = partition_any(graph, Partitioner.LEIDEN, resolution=config.resolution, seed=seed)
    w_hidden, wl_hidden = _hidden(weights_graph, w_spec.labels), _hidden(weights_graph, w_leid.labels)
    adjacency, _ = graph.without_isolated(dense=False)
    transfer_labels = w_hidden[graph.active]  # -1 where the weight graph isolates a unit the data keeps alive
    transfer = ncut(adjacency, transfer_labels) if (transfer_labels >= 0).any() else None
    return {
        "units": graph.n_nodes, "dead_units": int((~graph.active).sum()),
        "weight_ncut": w_spec.ncut, "weight_modularity": w_spec.modularity,
        "activation_ncut": test.clustering.ncut,
        "activation_modularity": modularity(adjacency, a_labels[graph.active]),
        "shuffle": test.stats.as_dict(),
        "shuffled_ncuts": test.shuffled_ncuts.tolist(),
        "transfer_ncut": transfer,
        "leiden_weight": [w_leid.n_clusters, w_leid.modularity, w_leid.ncut],
        "leiden_activation": [a_leid.n_clusters, a_leid.modularity, a_leid.ncut],
        "labels": {"weight_spectral": w_hidden.tolist(), "weight_leiden": wl_hidden.tolist(),
                   "activation_spectral": a_labels.tolist(), "activation_leiden": a_leid.labels.tolist()},
        "code_version": code_version(),
    }


@dataclass
class DatasetInputs:
    """A dataset's test images, read once when first needed, and its file's digest."""

    name: str
    data_dir: Path
    sha256: str = ""
    _x: np.ndarray | None = None

    def __post_init__(self) -> None:
        ensure_dataset(self.name, self.data_dir)
        self.sha256 = file_digest(self.data_dir / f"{self.name}.npz", "sha256")

    @property
    def x(self) -> np.ndarray:
        if self._x is None:
            self._x = load_dataset(self.name, self.data_dir).x_test
        return self._x


def model_row(instance: TrainedInstance, stage: Stage, data: DatasetInputs, config: ActivationConfig,
              cache: ResultCache | None = None, progress: bool = False) -> ActivationClusteringRow:
    """The row of one stage of one instance (computed once, then read from the cache)."""
    model_digest, data_digest = instance.digest(stage), data.sha256
    parts = {"what": "activation_clustering", "model_sha256": model_digest, "data_sha256": data_digest,
             "partitioners": PARTITIONERS,
             **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()
                if k not in ("n_jobs", "stages")}}

    def compute() -> dict:
        return analyse_model(instance.kernels_path(stage), data.x, config, progress)

    r = (cache or ResultCache(None)).get_or_compute(parts, compute, CACHED_FIELDS)
    labels = {k: np.asarray(v, np.int64) for k, v in r["labels"].items()}
    ari, nmi = _agreement(labels["weight_spectral"], labels["activation_spectral"])
    ari_l, nmi_l = _agreement(labels["weight_leiden"], labels["activation_leiden"])
    stats = r["shuffle"]
    return ActivationClusteringRow(
        tag=instance.tag, instance=instance.instance, stage=stage, data=data.name, measure=config.measure,
        null=config.null, n_clusters=config.n_clusters, n_shuffles=config.n_shuffles, units=r["units"],
        dead_units=r["dead_units"], weight_ncut=r["weight_ncut"], weight_modularity=r["weight_modularity"],
        activation_ncut=r["activation_ncut"], activation_modularity=r["activation_modularity"],
        shuffled_mean=stats["mean"], shuffled_sd=stats["sd"], z=stats["z"], p_value=stats["p_value"],
        significant=bool(stats["below_all"]), transfer_ncut=r["transfer_ncut"],
        ari_weight_activation=ari, nmi_weight_activation=nmi,
        leiden_weight_clusters=int(r["leiden_weight"][0]), leiden_weight_modularity=r["leiden_weight"][1],
        leiden_weight_ncut=r["leiden_weight"][2], leiden_activation_clusters=int(r["leiden_activation"][0]),
        leiden_activation_modularity=r["leiden_activation"][1], leiden_activation_ncut=r["leiden_activation"][2],
        ari_spectral_leiden_weights=_agreement(labels["weight_spectral"], labels["weight_leiden"])[0],
        ari_spectral_leiden_activations=_agreement(labels["activation_spectral"], labels["activation_leiden"])[0],
        ari_leiden_weight_activation=ari_l, nmi_leiden_weight_activation=nmi_l, resolution=config.resolution,
        test_accuracy=instance.accuracy(stage, "test"), model_seed=instance.seed, random_state=config.random_state,
        profile=instance.profile, model_sha256=model_digest, data_sha256=data_digest, code_version=r["code_version"],
    )


def run_activation_clustering(paths: ExperimentPaths, config: ActivationConfig, tags: Sequence[str] | None = None,
                              data_dir: str | Path | None = None, progress: bool = True,
                              log: Callable[[str], None] = print):
    """``mlp-activation-clustering``: every trained instance of ``tags`` (default: the paper's
    four MLPs) and stage; writes ``mlp-activation-clustering-kK.csv`` (+ ``.xlsx``) and its
    figure; returns the table."""
    wanted = list(tags) if tags else list(PAPER_MLPS)
    instances = find_instances(paths.models, wanted)
    if not instances:
        raise NnClusteringError(f"no trained models of {', '.join(wanted)} under {paths.models}; run `make models`")
    data_dir = Path(data_dir) if data_dir else project_root() / "datasets"
    splits = {name: DatasetInputs(name, data_dir) for name in dict.fromkeys(inst.dataset for inst in instances)}
    rows = []
    for inst in instances:
        for stage in config.stages:
            row = model_row(inst, stage, splits[inst.dataset], config, paths.cache, False)
            log(f"{inst.tag}/{inst.instance} {stage:6s} weights n-cut {row.weight_ncut:.3f} Q {row.weight_modularity:.3f}"
                f" | activations n-cut {row.activation_ncut:.3f} (shuffled {row.shuffled_mean:.3f})"
                f" Q {row.activation_modularity:.3f} | ARI {row.ari_weight_activation:.3f} NMI "
                f"{row.nmi_weight_activation:.3f}")
            rows.append(row)
    table = frame(rows, ActivationClusteringRow)
    name = f"mlp-activation-clustering{k_suffix(config.n_clusters)}"
    write_table(table, paths.results / f"{name}.csv", sheet="mlp-activation-clustering")
    save_figure(activation_figure(table), paths.figures / name)
    return table


def _means_by_net(ax, groups, columns: Sequence[tuple[str, str]], ylabel: str) -> None:
    """One marker per tag and stage for the mean of each column, side by side, 0.15 apart."""
    labels = [f"{tag}\n{stage}" for (tag, stage), _ in groups]
    for j, (column, name) in enumerate(columns):
        offset = (j - (len(columns) - 1) / 2) * 0.15
        ax.scatter(np.arange(len(groups)) + offset, [g[column].mean() for _, g in groups], label=name, s=18)
    ax.set_xticks(range(len(groups)), labels, fontsize=6)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=6)


def activation_figure(table):
    """Three panels per net: the weight against the activation n-cut (with the activation
    shuffles' mean), the agreement (ARI) between partitions, and Q by graph and partitioner."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    groups = list(table.groupby(["tag", "stage"], sort=False))
    for i, ((tag, stage), g) in enumerate(groups):
        marker = "o" if stage == Stage.DENSE else "s"
        axes[0].scatter(g["weight_ncut"], g["activation_ncut"], color=f"C{i % 10}", marker=marker, s=16,
                        label=f"{tag} {stage}")
        axes[0].scatter(g["weight_ncut"], g["shuffled_mean"], facecolors="none", edgecolors=f"C{i % 10}",
                        marker=marker, s=16)
    axes[0].set_xlabel("weight graph n-cut")
    axes[0].set_ylabel("activation n-cut (filled)\nits shuffles' mean (open)")
    axes[0].legend(fontsize=6)
    _means_by_net(axes[1], groups, (("ari_weight_activation", "weights vs activations"),
                                    ("ari_spectral_leiden_weights", "spectral vs Leiden, weights"),
                                    ("ari_spectral_leiden_activations", "spectral vs Leiden, activations")),
                  "adjusted Rand index (mean)")
    _means_by_net(axes[2], groups, (("weight_modularity", "weights, spectral"),
                                    ("leiden_weight_modularity", "weights, Leiden"),
                                    ("activation_modularity", "activations, spectral"),
                                    ("leiden_activation_modularity", "activations, Leiden")),
                  "modularity Q (mean)")
    fig.tight_layout()
    return fig
