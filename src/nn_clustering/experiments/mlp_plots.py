"""``mlp-plots``: the paper's MLP figures (method.md §7) from the tables of the other MLP
experiments, and the drawing of a clustered network."""

from __future__ import annotations

from pathlib import Path

from ..core.enums import Architecture, Stage
from ..core.graph import mlp_graph
from ..errors import NnClusteringError
from ..storage.tables import read_table, save_figure
from ..training.catalog import find_instances
from .clustering import pruned_clustering
from .paths import ExperimentPaths


def run_mlp_plots(paths: ExperimentPaths, random_state: int = 42, draw_tag: str | None = None) -> list[Path]:
    """``mlp-plots``: the figures of method.md §7 from the tables of the other experiments.

    Returns the written PNG paths (each also saved as SVG) under ``results/figures``.
    """
    from . import plots

    table = read_table(paths.results / "mlp-clustering.csv", "mlp-clustering")
    shuffles = read_table(paths.results / "mlp-clustering-shuffles.csv.gz", "mlp-clustering")
    effects = read_table(paths.results / "mlp-clustering-cohens-d.csv", "mlp-clustering")
    figures = {
        "mlp-ncut-vs-accuracy": plots.ncut_vs_accuracy(table),
        "mlp-shuffle-distributions": plots.shuffle_distributions(table, shuffles, Stage.PRUNED, 0),
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
    figures["mlp-clustered-network"] = draw_clustered_network(paths, table, random_state, draw_tag)
    written = []
    for name, fig in figures.items():
        written.append(save_figure(fig, paths.figures / name)[0])
    return written


def draw_clustered_network(paths: ExperimentPaths, table, random_state: int = 42, tag: str | None = None):
    """The drawing of instance 0 of ``tag`` (default: the first tag of the table), pruned,
    clustered with the table's k and seed (the same clustering as its shuffle test)."""
    from . import plots

    tag = tag or str(table["tag"].iloc[0])
    found = find_instances(paths.models, [tag], arch=Architecture.MLP)
    if not found:
        raise NnClusteringError(f"no trained {tag} model under {paths.models} to draw")
    instance = found[0]
    kernels = instance.weights(Stage.PRUNED).kernels
    n_clusters = int(table["n_clusters"].iloc[0])
    clustering = pruned_clustering(instance, n_clusters, random_state, paths.cache)
    title = (f"{tag} (instance {instance.instance}, pruned), k = {n_clusters}: n-cut {clustering.ncut:.3f}; "
             "strongest edges, coloured when inside a cluster")
    return plots.clustered_network(mlp_graph(kernels).layer_sizes, kernels, clustering.labels, title=title)
