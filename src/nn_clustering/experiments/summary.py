"""The plain-text summary that ``make demo`` and ``nn-clustering summary`` print."""

from __future__ import annotations

import numpy as np

from ..core.enums import ShuffleMethod, Stage
from ..storage.tables import read_table
from .paths import ExperimentPaths


def summary(paths: ExperimentPaths) -> str:
    """A short plain-text account of what the clustering tables found and where the files are
    (the MLP table, and the CNN table when ``cnn-clustering`` has run)."""
    tables = [read_table(paths.results / "mlp-clustering.csv", "mlp-clustering")]
    if (paths.results / "cnn-clustering.csv").exists():
        tables.append(read_table(paths.results / "cnn-clustering.csv", "cnn-clustering"))
    lines = [f"Results in {paths.results} (figures in {paths.figures}):"]
    for table in tables:
        rows = table[table["method"] == ShuffleMethod.LAYER]
        for (tag, stage), g in rows.groupby(["tag", "stage"], sort=False):
            significant = int(g["significant"].sum())
            lines.append(
                f"  {tag:16s} {stage:6s} n-cut {g['ncut'].mean():.3f} vs shuffled {g['shuffled_mean'].mean():.3f}"
                f"  z {np.mean(g['z']):7.2f}  significant {significant}/{len(g)}"
                f"  test accuracy {g['test_accuracy'].mean():.3f}"
            )
    rows = tables[0][tables[0]["method"] == ShuffleMethod.LAYER]
    pruned = rows[rows["stage"] == Stage.PRUNED]
    if not pruned.empty:
        share = pruned["significant"].mean()
        lines.append(
            f"=> {share:.0%} of pruned MLPs are significantly more clusterable than their "
            f"layer shuffles (p = 1/(N+1), N = {int(pruned['n_shuffles'].iloc[0])})."
        )
    return "\n".join(lines)
