"""``mlp-clustering-stability``: clustering stability across instances (method.md §7).

From the per-instance shuffle tests of a tag's independently trained instances: means and SDs
of the n-cut and of the shuffles, the share of instances that are significant, the pooled SD of
all shuffles, and whether the tag is *stable* (every instance significant).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..core.enums import Architecture, ShuffleMethod, Stage
from ..core.rows import Row
from ..core.stats import z_score
from ..errors import NnClusteringError
from ..registry import PRIMARY_TAGS
from ..storage.tables import frame, write_table
from ..training.catalog import find_instances
from .clustering import ClusteringConfig, ModelClustering, cluster_instances, clustering_table
from .paths import ExperimentPaths, k_suffix


@dataclass(frozen=True)
class StabilityRow(Row):
    """One row of ``mlp-clustering-stability-statistic[-kN].csv``: one tag, stage, k and
    shuffle method over that tag's instances."""

    tag: str
    stage: Stage
    n_clusters: int
    method: ShuffleMethod
    n_instances: int
    ncut_mean: float
    ncut_sd: float
    shuffled_mean: float
    shuffled_pooled_sd: float
    z_pooled: float
    mean_z: float
    n_significant: int
    share_significant: float
    stable: bool
    test_accuracy_mean: float
    test_accuracy_sd: float
    n_shuffles: int


STABILITY_COLUMNS = StabilityRow.columns()


def pooled_sd_of(samples: Sequence[np.ndarray]) -> float:
    """Pooled sample SD of several samples: sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1))."""
    dof = sum(s.size - 1 for s in samples)
    if dof <= 0:
        return float("nan")
    return float(np.sqrt(sum((s.size - 1) * s.var(ddof=1) for s in samples if s.size > 1) / dof))


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def stability_rows(results: Sequence[ModelClustering]) -> list[StabilityRow]:
    """One row per tag, stage, k and method, over that tag's instances."""
    groups: dict[tuple, list[ModelClustering]] = {}
    for r in results:
        groups.setdefault((r.row.tag, r.row.stage, r.row.n_clusters, r.row.method), []).append(r)
    rows = []
    for (tag, stage, n_clusters, method), members in groups.items():
        ncuts = np.array([m.row.ncut for m in members], dtype=np.float64)
        shuffles = [m.shuffled_ncuts for m in members]
        accuracy = np.array([m.row.test_accuracy for m in members if m.row.test_accuracy is not None])
        significant = sum(bool(m.row.significant) for m in members)
        shuffled_mean = float(np.mean(np.concatenate(shuffles)))
        pooled = pooled_sd_of(shuffles)
        rows.append(StabilityRow(
            tag=tag, stage=stage, n_clusters=n_clusters, method=method, n_instances=len(members),
            ncut_mean=float(ncuts.mean()), ncut_sd=_sd(ncuts),
            shuffled_mean=shuffled_mean, shuffled_pooled_sd=pooled,
            z_pooled=z_score(float(ncuts.mean()), shuffled_mean, pooled),
            mean_z=float(np.mean([m.row.z for m in members])),
            n_significant=significant, share_significant=significant / len(members),
            stable=significant == len(members),
            test_accuracy_mean=float(accuracy.mean()) if accuracy.size else float("nan"),
            test_accuracy_sd=_sd(accuracy),
            n_shuffles=int(members[0].row.n_shuffles),
        ))
    return rows


def stability_table(results: Sequence[ModelClustering]):
    """:func:`stability_rows` as a DataFrame with the columns of :class:`StabilityRow`."""
    return frame(stability_rows(results), StabilityRow)


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
    config = replace(config, stages=(Stage.PRUNED,))
    wanted = list(tags) if tags else list(PRIMARY_TAGS)
    instances = find_instances(paths.models, wanted, arch=Architecture.MLP)
    if not instances:
        raise NnClusteringError(
            f"no trained instances of {', '.join(wanted)} under {paths.models}; run `make models`"
        )
    results = cluster_instances(instances, config, paths.cache, progress, log)
    per_instance = clustering_table(results)
    statistic = stability_table(results)
    suffix = k_suffix(config.n_clusters)
    write_table(per_instance, paths.results / f"mlp-clustering-stability-instances{suffix}.csv",
                sheet="instances")
    write_table(statistic, paths.results / f"mlp-clustering-stability-statistic{suffix}.csv",
                sheet="statistic")
    return per_instance, statistic
