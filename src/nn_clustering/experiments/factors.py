"""``clustering-factors``: the successor paper's training factors (method.md §2.5-§2.6),
every trained instance of their tags shuffle-tested at k = 12 with both methods, in one table
with the factor and dataset of each row, and a figure of n-cut by factor as the successor
draws it (dense and pruned side by side).

CNN rows come twice, with the project's entrywise slice norm and with the successor's matrix
1-norm (``induced-l1``, method.md §3.2), which its tables used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ..core.enums import Architecture, SliceNorm
from ..errors import NnClusteringError
from ..registry import get_spec
from ..storage.tables import save_figure, write_csv, write_table
from ..training.catalog import find_instances
from .clustering import ClusteringConfig, cluster_instances, clustering_table, shuffles_table
from .paths import ExperimentPaths, k_suffix

#: Factor of each tag suffix or prefix, in the order the table and the figure show them.
FACTORS = (("+DROPOUT", "Dropout"), ("+L1REG", "L1 Reg"), ("+L2REG", "L2 Reg"), ("+MOD-INIT", "Clusterable Init"),
           ("HALVES-SAME-", "Halves Same"), ("HALVES-", "Halves Diff"), ("CNN-STACKED-SAME-", "Stacked Same"),
           ("CNN-STACKED-", "Stacked Diff"), ("+CLUSTERABILITY", "Cluster Gradient"))
CONTROL = "Control"


def factor_of(tag: str) -> str:
    """The factor a tag stands for (``Control`` for a plain tag)."""
    for marker, factor in FACTORS:
        if tag.endswith(marker) or tag.startswith(marker):
            return factor
    return CONTROL


def dataset_of(tag: str) -> str:
    """The dataset a factor tag trains on, as the successor's tables name it."""
    dataset = get_spec(tag).dataset
    return "SMALL-MNIST" if tag.startswith("SMALL-") else dataset.split("-")[-1].upper()


def factor_tags() -> list[str]:
    """Every factor tag with its controls: per dataset and architecture, the plain tag, dropout,
    L1, L2, clusterable initialisation and the halves (stacked for CNNs); the polynomial
    regression trio; then the small MNIST MLP pair."""
    out = []
    for name in ("MNIST", "FASHION"):
        for prefix, paired in (("", "HALVES"), ("CNN-", "CNN-STACKED")):
            out += [f"{prefix}{name}{s}" for s in ("", "+DROPOUT", "+L1REG", "+L2REG", "+MOD-INIT")]
            out += [f"{paired}-SAME-{name}", f"{paired}-{name}"]
    out += ["POLY", "POLY+L1REG", "POLY+L2REG"]
    return [*out, "SMALL-MNIST", "SMALL-MNIST+CLUSTERABILITY"]


def run_clustering_factors(paths: ExperimentPaths, config: ClusteringConfig, tags: Sequence[str] | None = None,
                           progress: bool = True, log: Callable[[str], None] = print):
    """Shuffle-test every trained instance of ``tags`` (default :func:`factor_tags`); writes
    ``clustering-factors<-kK>.csv`` (+ ``.xlsx``), its shuffled n-cuts and
    ``figures/clustering-factors<-kK>``; returns the table."""
    import pandas as pd

    wanted = list(tags) if tags else factor_tags()
    frames, shuffles = [], []
    for arch, norms in ((Architecture.MLP, (SliceNorm.L1,)), (Architecture.CNN, (SliceNorm.L1, SliceNorm.INDUCED_L1))):
        instances = find_instances(paths.models, [t for t in wanted if get_spec(t).arch == arch], arch=arch)
        if not instances:
            continue
        for norm in norms:
            results = cluster_instances(instances, replace(config, norm=norm), paths.cache, progress, log)
            table = clustering_table(results)
            table.insert(2, "factor", [factor_of(t) for t in table["tag"]])
            table.insert(2, "dataset", [dataset_of(t) for t in table["tag"]])
            table.insert(2, "arch", str(arch))
            table.insert(5, "norm", str(norm) if arch == Architecture.CNN else "")
            frames.append(table)
            shuffles.append(shuffles_table(results).assign(norm=str(norm)))
    missing = sorted(set(wanted) - {t for f in frames for t in f["tag"]})
    if missing:
        log(f"{len(missing)} factor tag(s) not trained under {paths.models}, skipped: {', '.join(missing)} "
            "(`make models TAGS=...` trains them)")
    if not frames:
        raise NnClusteringError(f"no trained factor models under {paths.models}; train them first, e.g. "
                                "`make models TAGS=\"MNIST MNIST+L1REG MNIST+MOD-INIT\"`")
    table = pd.concat(frames, ignore_index=True)
    name = f"clustering-factors{k_suffix(config.n_clusters)}"
    write_table(table, paths.results / f"{name}.csv", sheet="clustering-factors")
    write_csv(pd.concat(shuffles, ignore_index=True), paths.results / f"{name}-shuffles.csv.gz")
    save_figure(factors_figure(table), paths.figures / name)
    return table


def factors_figure(table):
    """n-cut of every instance by factor (``layer`` shuffles), one row of panels per
    architecture and dataset, dense and pruned side by side, with each instance's shuffled mean
    as an open marker (CNNs with the successor's slice norm)."""
    import matplotlib.pyplot as plt

    rows = table[(table["method"] == "layer") & (table["norm"].isin(["", str(SliceNorm.INDUCED_L1)]))]
    groups = list(rows.groupby(["arch", "dataset"], sort=False))
    stages = list(dict.fromkeys(rows["stage"])) or ["dense"]
    fig, axes = plt.subplots(max(1, len(groups)), len(stages), figsize=(3.4 * len(stages), 2.9 * max(1, len(groups))),
                             squeeze=False)
    order = [CONTROL] + [f for _, f in FACTORS]
    for ax_row, ((arch, dataset), group) in zip(axes, groups, strict=False):
        for ax, stage in zip(ax_row, stages, strict=True):
            part_of_stage = group[group["stage"] == stage]
            factors = [f for f in order if f in set(part_of_stage["factor"])]
            for x, factor in enumerate(factors):
                part = part_of_stage[part_of_stage["factor"] == factor]
                ax.scatter([x] * len(part), part["ncut"], color="C0", s=14)
                ax.scatter([x] * len(part), part["shuffled_mean"], facecolors="none", edgecolors="C1", s=14)
            ax.set_xticks(range(len(factors)), factors, rotation=40, ha="right", fontsize=7)
            ax.set_title(f"{arch.upper()} {dataset}, {stage}", fontsize=8)
        ax_row[0].set_ylabel("n-cut (filled)\nshuffled mean (open)", fontsize=8)
    fig.tight_layout()
    return fig
