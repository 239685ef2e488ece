"""The experiments of SPEC section 7 as functions: each reads trained models, computes (with
the result cache), writes its tables under ``results/`` and returns them.

The analysis notebooks are thin wrappers around these functions; the tests call them directly.
Output folders follow the training profile: ``models/`` and ``results/`` for ``paper``,
``models/<profile>/`` and ``results/<profile>/`` for any other profile, so a quick demo never
mixes with the reproduction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .analysis import (
    ClusteringConfig,
    cluster_instances,
    clustering_table,
    method_effect_sizes,
    shuffles_table,
)
from .cache import ResultCache
from .catalog import find_instances
from .errors import NnClusteringError
from .learning_curve import learning_curve_table
from .registry import PRIMARY_TAGS, REGISTRY, load_profile
from .stability import stability_table
from .tables import save_figure, write_csv, write_table

PAPER_PROFILE = "paper"


def project_root(start: Path | None = None) -> Path:
    """The repository root (the folder holding ``Makefile`` and ``src/nn_clustering``) above
    ``start`` (default: the working directory), or the working directory if there is none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Makefile").exists() and (folder / "src" / "nn_clustering").is_dir():
            return folder
    return here


@dataclass(frozen=True)
class ExperimentPaths:
    """Where an experiment reads models and writes results."""

    models: Path
    results: Path

    @property
    def figures(self) -> Path:
        """``results/figures``."""
        return self.results / "figures"

    @property
    def cache(self) -> ResultCache:
        """The result cache under ``results/cache``."""
        return ResultCache(self.results / "cache")

    @classmethod
    def for_profile(
        cls, profile: str, models_dir: str | Path | None = None, results_dir: str | Path | None = None
    ) -> ExperimentPaths:
        """The profile's default folders (under the project root), unless given explicitly."""
        root = project_root()
        suffix = "" if profile == PAPER_PROFILE else profile
        return cls(
            Path(models_dir) if models_dir else root / "models" / suffix,
            Path(results_dir) if results_dir else root / "results" / suffix,
        )


def _suffix(k: int) -> str:
    """File-name suffix of a k other than the default 4."""
    return "" if k == 4 else f"-k{k}"


def default_shuffles(profile: str, n_shuffles: int | None) -> int:
    """``n_shuffles`` if given, else the profile's number."""
    return int(n_shuffles) if n_shuffles else load_profile(profile).n_shuffles


def run_clustering(
    paths: ExperimentPaths,
    config: ClusteringConfig,
    arch: str = "mlp",
    tags: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
):
    """``mlp-clustering`` / ``cnn-clustering``: the shuffle test of every trained instance of
    ``arch`` (MLP neuron graphs or CNN channel graphs), dense and pruned, both methods.

    Writes ``<arch>-clustering.csv`` (+ ``.xlsx``), ``<arch>-clustering-shuffles.csv.gz`` (every
    shuffled n-cut) and ``<arch>-clustering-cohens-d.csv``; returns (table, results).
    """
    instances = find_instances(paths.models, list(tags) if tags else None, arch=arch)
    wanted = list(tags) if tags else [t for t, spec in REGISTRY.items() if spec.arch == arch]
    missing = [t for t in wanted if t not in {i.tag for i in instances}]
    if missing and instances:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        log(f"{len(missing)} {arch.upper()} tag(s) not trained under {paths.models}, skipped: {shown} "
            "(`make models TAGS=...` trains them; CIFAR-10 tags need the CIFAR-10 download)")
    results = cluster_instances(instances, config, paths.cache, progress, log)
    table = clustering_table(results)
    name = f"{arch}-clustering{_suffix(config.n_clusters)}"
    write_table(table, paths.results / f"{name}.csv", sheet=f"{arch}-clustering")
    write_csv(shuffles_table(results), paths.results / f"{name}-shuffles.csv.gz")
    write_csv(method_effect_sizes(results), paths.results / f"{name}-cohens-d.csv")
    return table, results


def run_mlp_clustering(paths: ExperimentPaths, config: ClusteringConfig, tags: Sequence[str] | None = None,
                       progress: bool = True, log: Callable[[str], None] = print):
    """``mlp-clustering``: :func:`run_clustering` of the MLPs."""
    return run_clustering(paths, config, "mlp", tags, progress, log)


def run_cnn_clustering(paths: ExperimentPaths, config: ClusteringConfig, tags: Sequence[str] | None = None,
                       progress: bool = True, log: Callable[[str], None] = print):
    """``cnn-clustering``: :func:`run_clustering` of the CNNs' channel graphs, plus its figures
    (``figures/cnn-shuffle-distributions``, ``figures/cnn-ncut-vs-accuracy``) and, when the MLP
    table exists, ``cnn-vs-mlp.csv`` (:func:`architecture_comparison`)."""
    from . import plots

    table, results = run_clustering(paths, config, "cnn", tags, progress, log)
    suffix = _suffix(config.n_clusters)
    save_figure(plots.shuffle_distributions(table, shuffles_table(results), "pruned", 0),
                paths.figures / f"cnn-shuffle-distributions{suffix}")
    save_figure(plots.ncut_vs_accuracy(table), paths.figures / f"cnn-ncut-vs-accuracy{suffix}")
    if (paths.results / "mlp-clustering.csv").exists():
        write_csv(architecture_comparison(paths), paths.results / "cnn-vs-mlp.csv")
    return table, results


def architecture_comparison(paths: ExperimentPaths, method: str = "layer"):
    """MLPs next to CNNs: per architecture, tag and stage, the mean n-cut, shuffled mean, z,
    share significant and test accuracy (``method`` shuffles), from the two clustering tables."""
    import pandas as pd

    frames = []
    for arch in ("mlp", "cnn"):
        table = read_table(paths.results / f"{arch}-clustering.csv", f"{arch}-clustering")
        table = table[(table["method"] == method) & (table["k"] == 4)]
        frames.append(table.assign(arch=arch.upper(), dataset=table["tag"].str.removeprefix("CNN-")))
    both = pd.concat(frames, ignore_index=True)
    return (both.groupby(["dataset", "arch", "tag", "stage"], sort=False)
            .agg(instances=("ncut", "size"), ncut=("ncut", "mean"), shuffled_mean=("shuffled_mean", "mean"),
                 z=("z", "mean"), significant=("significant", "mean"), test_accuracy=("test_accuracy", "mean"))
            .reset_index().sort_values(["dataset", "stage", "arch"], kind="stable", ignore_index=True))


def run_mlp_stability(
    paths: ExperimentPaths,
    config: ClusteringConfig,
    tags: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
):
    """``mlp-clustering-stability``: pruned instances of the primary tags at ``config``'s k.

    Writes ``mlp-clustering-stability-instances[-kN].csv`` (per instance) and
    ``mlp-clustering-stability-statistic[-kN].csv`` (per tag); returns (instances, statistic).
    """
    config = replace(config, stages=("pruned",))
    wanted = list(tags) if tags else list(PRIMARY_TAGS)
    instances = find_instances(paths.models, wanted, arch="mlp")
    if not instances:
        raise NnClusteringError(
            f"no trained instances of {', '.join(wanted)} under {paths.models}; run `make models`"
        )
    results = cluster_instances(instances, config, paths.cache, progress, log)
    per_instance = clustering_table(results)
    statistic = stability_table(results)
    suffix = _suffix(config.n_clusters)
    write_table(per_instance, paths.results / f"mlp-clustering-stability-instances{suffix}.csv",
                sheet="instances")
    write_table(statistic, paths.results / f"mlp-clustering-stability-statistic{suffix}.csv",
                sheet="statistic")
    return per_instance, statistic


def run_mlp_learning_curve(
    paths: ExperimentPaths,
    k: int = 4,
    seed: int = 42,
    tags: Sequence[str] | None = None,
    progress: bool = True,
):
    """``mlp-learning-curve``: n-cut of every per-epoch checkpoint (no shuffles) with accuracy.

    Uses every MLP instance that saved checkpoints (the registry's learning-curve tags do by
    default). Writes ``mlp-learning-curve.csv`` and the figure; returns the table.
    """
    if tags is None:
        tags = [t for t, spec in REGISTRY.items() if spec.learning_curve]
    instances = find_instances(paths.models, list(tags), arch="mlp")
    table = learning_curve_table(instances, k, seed, paths.cache, progress)
    if table.empty:
        raise NnClusteringError(
            f"no checkpoints under {paths.models} for {', '.join(tags)}; train with a profile that "
            "saves them (checkpoints: true)"
        )
    write_csv(table, paths.results / "mlp-learning-curve.csv")
    from .plots import learning_curves

    save_figure(learning_curves(table), paths.figures / "mlp-learning-curve")
    return table


def read_table(path: Path, what: str):
    """A results table, or a clear error naming the target that makes it."""
    import pandas as pd

    if not path.exists():
        raise NnClusteringError(f"{path} is missing; run `make {what}` first")
    return pd.read_csv(path)


def run_mlp_plots(paths: ExperimentPaths, seed: int = 42, draw_tag: str | None = None) -> list[Path]:
    """``mlp-plots``: the figures of SPEC section 7 from the tables of the other experiments.

    Returns the written PNG paths (each also saved as SVG) under ``results/figures``.
    """
    from . import plots

    table = read_table(paths.results / "mlp-clustering.csv", "mlp-clustering")
    shuffles = read_table(paths.results / "mlp-clustering-shuffles.csv.gz", "mlp-clustering")
    effects = read_table(paths.results / "mlp-clustering-cohens-d.csv", "mlp-clustering")
    figures = {
        "mlp-ncut-vs-accuracy": plots.ncut_vs_accuracy(table),
        "mlp-shuffle-distributions": plots.shuffle_distributions(table, shuffles, "pruned", 0),
        "mlp-cohens-d": plots.cohens_d_plot(effects),
    }
    stability = sorted(paths.results.glob("mlp-clustering-stability-instances*.csv"))
    if stability:
        import pandas as pd

        figures["mlp-clustering-stability"] = plots.stability_plot(
            pd.concat([pd.read_csv(p) for p in stability], ignore_index=True)
        )
    curve = paths.results / "mlp-learning-curve.csv"
    if curve.exists():
        figures["mlp-learning-curve"] = plots.learning_curves(read_table(curve, "mlp-learning-curve"))
    figures["mlp-clustered-network"] = draw_clustered_network(paths, table, seed, draw_tag)
    written = []
    for name, fig in figures.items():
        written.append(save_figure(fig, paths.figures / name)[0])
    return written


def draw_clustered_network(paths: ExperimentPaths, table, seed: int = 42, tag: str | None = None):
    """The drawing of instance 0 of ``tag`` (default: the first tag of the table), pruned,
    clustered with the table's k and seed (the same clustering as its shuffle test)."""
    from .analysis import pruned_clustering
    from .graph import mlp_graph
    from .plots import clustered_network

    tag = tag or str(table["tag"].iloc[0])
    found = find_instances(paths.models, [tag], arch="mlp")
    if not found:
        raise NnClusteringError(f"no trained {tag} model under {paths.models} to draw")
    instance = found[0]
    kernels = instance.weights("pruned").kernels
    k = int(table["k"].iloc[0])
    clustering = pruned_clustering(instance, k, seed, paths.cache)
    title = (f"{tag} (instance {instance.instance}, pruned), k = {k}: n-cut {clustering.ncut:.3f}; "
             "strongest edges, coloured when inside a cluster")
    return clustered_network(mlp_graph(kernels).layer_sizes, kernels, clustering.labels, title=title)


def summary(paths: ExperimentPaths) -> str:
    """A short plain-text account of what the clustering tables found and where the files are
    (the MLP table, and the CNN table when ``cnn-clustering`` has run)."""
    tables = [read_table(paths.results / "mlp-clustering.csv", "mlp-clustering")]
    if (paths.results / "cnn-clustering.csv").exists():
        tables.append(read_table(paths.results / "cnn-clustering.csv", "cnn-clustering"))
    lines = [f"Results in {paths.results} (figures in {paths.figures}):"]
    for table in tables:
        rows = table[table["method"] == "layer"]
        for (tag, stage), g in rows.groupby(["tag", "stage"], sort=False):
            significant = int(g["significant"].sum())
            lines.append(
                f"  {tag:16s} {stage:6s} n-cut {g['ncut'].mean():.3f} vs shuffled {g['shuffled_mean'].mean():.3f}"
                f"  z {np.mean(g['z']):7.2f}  significant {significant}/{len(g)}"
                f"  test accuracy {g['test_accuracy'].mean():.3f}"
            )
    rows = tables[0][tables[0]["method"] == "layer"]
    pruned = rows[rows["stage"] == "pruned"]
    if not pruned.empty:
        share = pruned["significant"].mean()
        lines.append(
            f"=> {share:.0%} of pruned MLPs are significantly more clusterable than their "
            f"layer shuffles (p = 1/(N+1), N = {int(pruned['n_shuffles'].iloc[0])})."
        )
    return "\n".join(lines)
