"""The lesion experiments of method.md §7 (``mlp-lesion``, ``mlp-double-lesion``, ``cnn-lesion``)
as functions that read trained models and write their tables and figures (the notebooks call
these)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..core.enums import Architecture, PairSelection, Stage, Taxonomy
from ..core.lesion import (
    DOUBLE_LESION_COLUMNS,
    MLP,
    DoubleLesionRow,
    LesionConfig,
    LesionEvaluator,
    SingleLesionRow,
    combined_importance,
    dependency_edges,
    double_lesion_test,
    single_lesion_test,
    submodules,
)
from ..core.parameters import checked
from ..core.rows import Row
from ..data.build import ensure_dataset, load_dataset
from ..errors import DatasetUnavailable, NnClusteringError
from ..formats.loader import load_keras_model
from ..storage.cache import cache_key
from ..storage.files import file_digest
from ..storage.provenance import code_version
from ..storage.tables import save_figure, write_csv, write_xlsx
from ..training.catalog import TrainedInstance, find_instances
from ..training.cnn_lesion import CNNLesionEvaluator
from .clustering import pruned_clustering
from .paths import ExperimentPaths, project_root

LESION_TAGS = ("MNIST", "MNIST+DROPOUT", "FASHION", "FASHION+DROPOUT")
CNN_LESION_TAGS = ("CNN-MNIST", "CNN-FASHION")
VERSION_COLUMN = "code_version"  # the last column of every lesion table
#: The workbook sheet of the per-model combined lesion tests (method.md §6.3).
IMPORTANCE_SHEET = "importance"


@dataclass(frozen=True)
class LesionProvenance(Row):
    """The leading columns of every lesion table row: which model and data the row is about."""

    tag: str
    instance: int
    stage: Stage
    n_clusters: int
    model_seed: int
    profile: str
    model_sha256: str
    dataset_md5: str


@dataclass
class LesionSetup:
    """What every lesion experiment of one model needs: the instance, its pruned clustering's
    labels, the provenance of its rows, and (built only on a cache miss) the evaluator."""

    instance: TrainedInstance
    labels: np.ndarray
    data_path: Path
    provenance: LesionProvenance

    @cached_property
    def evaluator(self) -> LesionEvaluator | CNNLesionEvaluator:
        """The pruned network on the dataset's test split (loads the data once, when needed):
        numpy for an MLP, the saved Keras model for a CNN."""
        data = load_dataset(self.data_path.stem, self.data_path.parent)
        if self.instance.arch == Architecture.CNN:
            model = load_keras_model(self.instance.model_path(Stage.PRUNED))
            return CNNLesionEvaluator(model, data.x_test, data.y_test)
        return LesionEvaluator(MLP.from_weights(self.instance.weights(Stage.PRUNED)), data.x_test, data.y_test)


def lesion_setup(
    paths: ExperimentPaths, tag: str, n_clusters: int, random_state: int, data_dir: str | Path | None = None,
    arch: Architecture | str = Architecture.MLP,
) -> LesionSetup:
    """Instance 0 of ``tag`` (pruned), its labels and provenance; clear errors when the model or
    the dataset is missing."""
    found = find_instances(paths.models, [tag], arch=arch)
    if not found:
        raise NnClusteringError(f"no trained {tag} model under {paths.models}; run `make models TAGS={tag}`")
    instance = found[0]
    data_dir = Path(data_dir) if data_dir else project_root() / "datasets"
    dataset = instance.dataset
    try:
        ensure_dataset(dataset, data_dir)
    except DatasetUnavailable as exc:
        raise NnClusteringError(f"dataset {dataset} for {tag} is missing: {exc}") from exc
    data_path = data_dir / f"{dataset}.npz"
    provenance = LesionProvenance(
        tag=instance.tag, instance=instance.instance, stage=Stage.PRUNED, n_clusters=n_clusters, model_seed=instance.seed,
        profile=instance.profile, model_sha256=instance.digest(Stage.PRUNED), dataset_md5=file_digest(data_path),
    )
    labels = pruned_clustering(instance, n_clusters, random_state, paths.cache).labels
    return LesionSetup(instance, labels, data_path, provenance)


def table_rows(provenance: LesionProvenance, rows: Sequence[SingleLesionRow | DoubleLesionRow],
               code_version: str) -> list[dict]:
    """Lesion table rows: the provenance columns, the row's columns, then ``code_version``."""
    return [{**provenance.as_dict(), **row.as_dict(), VERSION_COLUMN: code_version} for row in rows]


def single_lesion_rows(
    paths: ExperimentPaths, setup: LesionSetup, config: LesionConfig, progress: bool = True
) -> tuple[list[SingleLesionRow], dict[str, list[float]], str]:
    """The single lesion test of one model (cached): rows, random accuracies by sub-module and
    the code version that computed them."""
    # the row's columns are part of the key: a cached entry of other columns is another result
    parts = {"what": "single_lesion", "columns": SingleLesionRow.columns(), **setup.provenance.as_dict(),
             **asdict(config)}

    def compute() -> dict:
        rows, randoms = single_lesion_test(setup.evaluator, setup.labels, config, progress)
        return {"rows": [row.as_dict() for row in rows], "randoms": {n: a.tolist() for n, a in randoms.items()},
                "code_version": code_version()}

    value = paths.cache.get_or_compute(parts, compute, ("rows", "randoms", VERSION_COLUMN))
    rows = [SingleLesionRow.from_dict(row) for row in value["rows"]]
    return rows, value["randoms"], value["code_version"]


def run_lesion(
    paths: ExperimentPaths, arch: Architecture | str = Architecture.MLP, tags: Sequence[str] = LESION_TAGS,
    n_clusters: int = 10, config: LesionConfig | None = None, data_dir=None, progress: bool = True,
):
    """``mlp-lesion`` / ``cnn-lesion``: single lesion test per tag (neurons of an MLP's hidden
    layers, channels of a CNN's conv layers); writes ``<arch>-lesion.xlsx`` (one sheet per
    model and the ``importance`` sheet), ``<arch>-lesion.csv`` (all rows),
    ``<arch>-lesion-importance.csv`` (one row per model: its lesions combined, method.md §6.3)
    and ``figures/<arch>-lesion``; returns {tag: table}."""
    import pandas as pd

    from .plots import lesion_plot

    arch = checked("arch", arch)
    config = config or LesionConfig()
    tables, randoms, importance = {}, {}, []
    for tag in tags:
        setup = lesion_setup(paths, tag, n_clusters, config.random_state, data_dir, arch)
        rows, randoms[tag], version = single_lesion_rows(paths, setup, config, progress)
        tables[tag] = pd.DataFrame(table_rows(setup.provenance, rows, version))
        importance += table_rows(setup.provenance, [combined_importance(rows)], version)
    combined = pd.DataFrame(importance)
    write_xlsx({**tables, IMPORTANCE_SHEET: combined}, paths.results / f"{arch}-lesion.xlsx")
    write_csv(pd.concat(tables.values(), ignore_index=True), paths.results / f"{arch}-lesion.csv")
    write_csv(combined, paths.results / f"{arch}-lesion-importance.csv")
    unit = "channels of conv layer" if arch == Architecture.CNN else "neurons of hidden layer"
    save_figure(lesion_plot(tables, randoms, unit), paths.figures / f"{arch}-lesion")
    return tables


def run_mlp_lesion(paths: ExperimentPaths, tags: Sequence[str] = LESION_TAGS, n_clusters: int = 10,
                   config: LesionConfig | None = None, data_dir=None, progress: bool = True):
    """``mlp-lesion``: :func:`run_lesion` of the MLPs."""
    return run_lesion(paths, Architecture.MLP, tags, n_clusters, config, data_dir, progress)


def run_cnn_lesion(paths: ExperimentPaths, tags: Sequence[str] = CNN_LESION_TAGS, n_clusters: int = 4,
                   config: LesionConfig | None = None, data_dir=None, progress: bool = True):
    """``cnn-lesion``: :func:`run_lesion` of the CNNs' channel clusters."""
    return run_lesion(paths, Architecture.CNN, tags, n_clusters, config, data_dir, progress)


def run_mlp_double_lesion(
    paths: ExperimentPaths, tag: str, n_clusters: int = 10, single: LesionConfig | None = None,
    n_random: int = 50, pairs: PairSelection | str = PairSelection.ALL, data_dir=None, progress: bool = True,
):
    """``mlp-double-lesion`` for one tag: every pair of sub-modules that are not small or
    complete (``pairs="all"``) or of the important ones only (``pairs="important"``, much
    cheaper), joint and conditional; writes ``mlp-double-lesion-<TAG>.csv`` and the dependency graph figure;
    returns (pairs table, dependency edges)."""
    import pandas as pd

    from .plots import dependency_graph_plot

    pairs = checked("pairs", pairs)
    single = single or LesionConfig()
    setup = lesion_setup(paths, tag, n_clusters, single.random_state, data_dir)
    single_rows, _, _ = single_lesion_rows(paths, setup, single, progress)
    parts = {"what": "double_lesion", **setup.provenance.as_dict(), "n_random": n_random,
             "random_state": single.random_state, "single": asdict(single), "pairs": pairs}

    def compute() -> dict:
        modules = None  # double_lesion_test's default: every sub-module not small or complete
        if pairs == PairSelection.IMPORTANT:
            important = {r.name for r in single_rows if r.taxonomy == Taxonomy.IMPORTANT}
            net = setup.evaluator.net
            modules = [m for m in submodules(setup.labels, net.layer_sizes, net.lesionable_layers)
                       if m.name in important]
        partial = cache_key({**parts, "partial": True})  # the rows so far, if interrupted
        done = [DoubleLesionRow.from_dict(r) for r in (paths.cache.get(partial, ("rows",)) or {}).get("rows", [])]
        if done:
            print(f"{tag}: resuming the double lesion test after {len(done)} pairs")

        def checkpoint(so_far: list[DoubleLesionRow]) -> None:
            paths.cache.put(partial, {"rows": [r.as_dict() for r in so_far]})

        rows = double_lesion_test(setup.evaluator, setup.labels, single_rows, n_random, single.random_state, modules,
                                  progress, done, checkpoint)
        paths.cache.discard(partial)
        return {"rows": [r.as_dict() for r in rows], "code_version": code_version()}

    value = paths.cache.get_or_compute(parts, compute, ("rows", VERSION_COLUMN))
    rows = [DoubleLesionRow.from_dict(r) for r in value["rows"]]
    columns = [*LesionProvenance.columns(), *DOUBLE_LESION_COLUMNS, VERSION_COLUMN]
    table = pd.DataFrame(table_rows(setup.provenance, rows, value["code_version"]), columns=columns)
    edges = dependency_edges(rows)
    write_csv(table, paths.results / f"mlp-double-lesion-{tag}.csv")
    save_figure(dependency_graph_plot([r.as_dict() for r in single_rows], edges, tag),
                paths.figures / f"mlp-double-lesion-{tag}")
    return table, edges
