"""The lesion experiments of SPEC section 7 (``mlp-lesion``, ``mlp-double-lesion``) as functions
that read trained models and write their tables and figures (the notebooks call these)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .cache import ResultCache
from .catalog import TrainedInstance, find_instances
from .datasets import ensure_dataset, load_dataset
from .errors import DatasetUnavailable, NnClusteringError
from .experiments import ExperimentPaths, project_root
from .fileio import file_digest
from .graph import mlp_graph
from .lesion import (
    DOUBLE_LESION_COLUMNS,
    MLP,
    LesionConfig,
    LesionEvaluator,
    dependency_edges,
    double_lesion_test,
    single_lesion_test,
    submodules,
)
from .provenance import code_version
from .shuffle import observed_seed
from .spectral import SpectralConfig, cluster_graph
from .tables import save_figure, write_csv, write_xlsx

LESION_TAGS = ("MNIST", "MNIST+DROPOUT", "FASHION", "FASHION+DROPOUT")


def _labels(instance: TrainedInstance, k: int, seed: int, cache: ResultCache) -> np.ndarray:
    """Cluster labels of the pruned network (the shuffle test's observed clustering), cached."""
    digest = instance.digest("pruned")
    spectral = SpectralConfig(n_clusters=k)

    def compute() -> dict:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            clustering = cluster_graph(mlp_graph(instance.weights("pruned").kernels), spectral, observed_seed(seed))
        return {"labels": clustering.labels.tolist(), "ncut": clustering.ncut}

    parts = {"what": "labels", "model_sha256": digest, "seed": seed, "spectral": asdict(spectral)}
    return np.asarray(cache.get_or_compute(parts, compute)["labels"], np.int64)


def lesion_setup(
    paths: ExperimentPaths, tag: str, k: int, seed: int, data_dir: str | Path | None = None
) -> tuple[TrainedInstance, LesionEvaluator, np.ndarray, str]:
    """Instance 0 of ``tag`` (pruned), its evaluator on the test set, its labels and the
    dataset file's digest; clear errors when the model or the dataset is missing."""
    found = find_instances(paths.models, [tag], arch="mlp")
    if not found:
        raise NnClusteringError(f"no trained {tag} model under {paths.models}; run `make models TAGS={tag}`")
    instance = found[0]
    data_dir = Path(data_dir) if data_dir else project_root() / "datasets"
    dataset = instance.config["spec"]["dataset"]
    try:
        ensure_dataset(dataset, data_dir)
    except DatasetUnavailable as exc:
        raise NnClusteringError(f"dataset {dataset} for {tag} is missing: {exc}") from exc
    data = load_dataset(dataset, data_dir)
    evaluator = LesionEvaluator(MLP.from_weights(instance.weights("pruned")), data.x_test, data.y_test)
    return instance, evaluator, _labels(instance, k, seed, paths.cache), file_digest(data_dir / f"{dataset}.npz")


def _provenance(instance: TrainedInstance, k: int, data_digest: str) -> dict:
    return {"tag": instance.tag, "instance": instance.instance, "stage": "pruned", "k": k,
            "model_seed": instance.seed, "profile": instance.profile,
            "model_sha256": instance.digest("pruned"), "dataset_md5": data_digest}


def single_lesion_rows(
    paths: ExperimentPaths, tag: str, k: int, config: LesionConfig, data_dir=None, progress: bool = True
) -> tuple[list[dict], dict[str, list[float]]]:
    """The single lesion test of instance 0 of ``tag`` (cached): rows and random accuracies."""
    instance, evaluator, labels, data_digest = lesion_setup(paths, tag, k, config.seed, data_dir)
    parts = {"what": "single_lesion", **_provenance(instance, k, data_digest), **asdict(config)}

    def compute() -> dict:
        rows, randoms = single_lesion_test(evaluator, labels, config, progress)
        return {"rows": rows, "randoms": {n: a.tolist() for n, a in randoms.items()},
                "code_version": code_version()}

    value = paths.cache.get_or_compute(parts, compute)
    extra = {**_provenance(instance, k, data_digest), "code_version": value["code_version"]}
    return [{**extra, **row} for row in value["rows"]], value["randoms"]


def run_mlp_lesion(
    paths: ExperimentPaths, tags: Sequence[str] = LESION_TAGS, k: int = 10,
    config: LesionConfig | None = None, data_dir=None, progress: bool = True,
):
    """``mlp-lesion``: single lesion test per tag; writes ``mlp-lesion.xlsx`` (one sheet per
    model), ``mlp-lesion.csv`` (all rows) and ``figures/mlp-lesion``; returns {tag: table}."""
    import pandas as pd

    from .plots import lesion_plot

    config = config or LesionConfig()
    tables, randoms = {}, {}
    for tag in tags:
        rows, randoms[tag] = single_lesion_rows(paths, tag, k, config, data_dir, progress)
        tables[tag] = pd.DataFrame(rows)
    write_xlsx(tables, paths.results / "mlp-lesion.xlsx")
    write_csv(pd.concat(tables.values(), ignore_index=True), paths.results / "mlp-lesion.csv")
    save_figure(lesion_plot(tables, randoms), paths.figures / "mlp-lesion")
    return tables


def run_mlp_double_lesion(
    paths: ExperimentPaths, tag: str, k: int = 10, single: LesionConfig | None = None,
    n_random: int = 50, pairs: str = "all", data_dir=None, progress: bool = True,
):
    """``mlp-double-lesion`` for one tag: every pair of sub-modules that are not small or
    complete (``pairs="all"``) or of the important ones only (``pairs="important"``, much
    cheaper), joint and conditional; writes ``mlp-double-lesion-<TAG>.csv`` and the dependency graph figure;
    returns (pairs table, dependency edges)."""
    import pandas as pd

    from .plots import dependency_graph_plot

    single = single or LesionConfig()
    single_rows, _ = single_lesion_rows(paths, tag, k, single, data_dir, progress)
    instance, evaluator, labels, data_digest = lesion_setup(paths, tag, k, single.seed, data_dir)
    verdicts = {r["name"]: r["taxonomy"] for r in single_rows}
    if pairs not in ("all", "important"):
        raise NnClusteringError(f"pairs={pairs!r}: use 'all' or 'important'")
    keep = ("important",) if pairs == "important" else None
    modules = [m for m in submodules(labels, evaluator.net.layer_sizes)
               if (keep is None and verdicts[m.name] not in ("small", "complete"))
               or (keep is not None and verdicts[m.name] in keep)]
    parts = {"what": "double_lesion", **_provenance(instance, k, data_digest), "n_random": n_random,
             "seed": single.seed, "single": asdict(single), "pairs": pairs}

    def compute() -> dict:
        rows = double_lesion_test(evaluator, labels, single_rows, n_random, single.seed, modules, progress)
        return {"rows": rows, "code_version": code_version()}

    value = paths.cache.get_or_compute(parts, compute)
    extra = {**_provenance(instance, k, data_digest), "code_version": value["code_version"]}
    table = pd.DataFrame([{**extra, **row} for row in value["rows"]],
                         columns=[*extra, *DOUBLE_LESION_COLUMNS])
    edges = dependency_edges(value["rows"])
    write_csv(table, paths.results / f"mlp-double-lesion-{tag}.csv")
    save_figure(dependency_graph_plot(single_rows, edges, tag), paths.figures / f"mlp-double-lesion-{tag}")
    return table, edges
