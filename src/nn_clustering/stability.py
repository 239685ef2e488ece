"""Clustering stability across instances (SPEC section 7, ``mlp-clustering-stability``).

From the per-instance shuffle tests of a tag's independently trained instances: means and SDs
of the n-cut and of the shuffles, the share of instances that are significant, the pooled SD of
all shuffles, and whether the tag is *stable* (every instance significant).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .analysis import ModelClustering
from .stats import z_score

STABILITY_COLUMNS = [
    "tag", "stage", "k", "method", "n_instances", "ncut_mean", "ncut_sd", "shuffled_mean",
    "shuffled_pooled_sd", "z_pooled", "mean_z", "n_significant", "share_significant", "stable",
    "test_accuracy_mean", "test_accuracy_sd", "n_shuffles",
]


def pooled_sd_of(samples: Sequence[np.ndarray]) -> float:
    """Pooled sample SD of several samples: sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1))."""
    dof = sum(s.size - 1 for s in samples)
    if dof <= 0:
        return float("nan")
    return float(np.sqrt(sum((s.size - 1) * s.var(ddof=1) for s in samples if s.size > 1) / dof))


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def stability_table(results: Sequence[ModelClustering]):
    """One row per tag, stage, k and method, over that tag's instances."""
    import pandas as pd

    groups: dict[tuple, list[ModelClustering]] = {}
    for r in results:
        key = (r.row["tag"], r.row["stage"], r.row["k"], r.row["method"])
        groups.setdefault(key, []).append(r)
    rows = []
    for (tag, stage, k, method), members in groups.items():
        ncuts = np.array([m.row["ncut"] for m in members], dtype=np.float64)
        shuffles = [m.shuffled_ncuts for m in members]
        accuracy = np.array([m.row["test_accuracy"] for m in members if m.row["test_accuracy"] is not None])
        significant = sum(bool(m.row["significant"]) for m in members)
        shuffled_mean = float(np.mean(np.concatenate(shuffles)))
        pooled = pooled_sd_of(shuffles)
        rows.append({
            "tag": tag, "stage": stage, "k": k, "method": method, "n_instances": len(members),
            "ncut_mean": float(ncuts.mean()), "ncut_sd": _sd(ncuts),
            "shuffled_mean": shuffled_mean, "shuffled_pooled_sd": pooled,
            "z_pooled": z_score(float(ncuts.mean()), shuffled_mean, pooled),
            "mean_z": float(np.mean([m.row["z"] for m in members])),
            "n_significant": significant, "share_significant": significant / len(members),
            "stable": significant == len(members),
            "test_accuracy_mean": float(accuracy.mean()) if accuracy.size else float("nan"),
            "test_accuracy_sd": _sd(accuracy),
            "n_shuffles": int(members[0].row["n_shuffles"]),
        })
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)
