"""``mlp-learning-curve``: n-cut through training (method.md §7).

Clusters every per-epoch kernel checkpoint of an instance (k = 4, no shuffles) through the
dense and the pruning phase, next to that epoch's accuracy. Cached per checkpoint file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..core.enums import Architecture, Stage
from ..core.graph import graph_inputs
from ..core.progress import progress_bar
from ..core.rows import Row
from ..core.shuffle import observed_clustering
from ..core.spectral import SpectralConfig
from ..errors import NnClusteringError
from ..formats.loader import load_weights
from ..registry import REGISTRY
from ..storage.cache import ResultCache
from ..storage.files import file_digest
from ..storage.provenance import code_version
from ..storage.tables import frame, save_figure, write_csv
from ..training.catalog import HISTORY_KEYS, Checkpoint, TrainedInstance, find_instances
from .paths import ExperimentPaths


@dataclass(frozen=True)
class LearningCurveRow(Row):
    """One row of ``mlp-learning-curve.csv``: one per-epoch checkpoint of one instance."""

    tag: str
    instance: int
    phase: Stage
    epoch: int
    global_epoch: int  # epochs since initialisation, dense and pruning phases together
    ncut: float
    sparsity: float
    train_accuracy: float | None
    test_accuracy: float | None
    n_clusters: int
    random_state: int
    model_seed: int
    checkpoint_sha256: str
    code_version: str


LEARNING_CURVE_COLUMNS = LearningCurveRow.columns()


def checkpoint_ncut(
    checkpoint: Checkpoint, n_clusters: int = 4, random_state: int = 42, spectral: SpectralConfig | None = None,
    cache: ResultCache | None = None,
) -> dict:
    """n-cut and sparsity of one checkpoint (cached by its digest and the parameters)."""
    spectral = replace(spectral or SpectralConfig(), n_clusters=n_clusters)
    digest = file_digest(checkpoint.path, "sha256")
    parts = {"what": "checkpoint_ncut", "sha256": digest, "random_state": random_state, "spectral": asdict(spectral)}

    def compute() -> dict:
        kernels, builder = graph_inputs(load_weights(checkpoint.path))
        clustering = observed_clustering(builder(kernels), spectral, random_state)
        total = sum(kernel.size for kernel in kernels)
        zeros = sum(int(np.count_nonzero(kernel == 0)) for kernel in kernels)
        return {"ncut": clustering.ncut, "sparsity": zeros / total, "sha256": digest,
                "code_version": code_version()}

    return (cache or ResultCache(None)).get_or_compute(parts, compute, ("ncut", "sparsity", "sha256", "code_version"))


def learning_curve_rows(
    instance: TrainedInstance, n_clusters: int = 4, random_state: int = 42, cache: ResultCache | None = None
) -> list[LearningCurveRow]:
    """One row per checkpoint of ``instance``: phase, epoch, n-cut, sparsity and accuracies."""
    dense_epochs = len(instance.metrics.get(str(Stage.DENSE), {}).get(HISTORY_KEYS["train"], []))
    rows = []
    for ckpt in instance.checkpoints():
        value = checkpoint_ncut(ckpt, n_clusters, random_state, cache=cache)
        rows.append(LearningCurveRow(
            tag=instance.tag, instance=instance.instance, phase=ckpt.phase, epoch=ckpt.epoch,
            global_epoch=ckpt.epoch + (dense_epochs if ckpt.phase == Stage.PRUNED else 0),
            ncut=value["ncut"], sparsity=value["sparsity"],
            train_accuracy=instance.epoch_accuracy(ckpt.phase, ckpt.epoch, "train"),
            test_accuracy=instance.epoch_accuracy(ckpt.phase, ckpt.epoch, "test"),
            n_clusters=n_clusters, random_state=random_state, model_seed=instance.seed,
            checkpoint_sha256=value["sha256"], code_version=value["code_version"],
        ))
    return rows


def learning_curve_table(
    instances: Sequence[TrainedInstance], n_clusters: int = 4, random_state: int = 42, cache: ResultCache | None = None,
    progress: bool = True,
):
    """The learning-curve rows of every instance that has checkpoints, as a DataFrame."""
    with_checkpoints = [inst for inst in instances if inst.checkpoints()]
    rows: list[LearningCurveRow] = []
    for inst in progress_bar(with_checkpoints, desc="learning curves", unit="model", enabled=progress):
        rows += learning_curve_rows(inst, n_clusters, random_state, cache)
    return frame(rows, LearningCurveRow)


def run_mlp_learning_curve(
    paths: ExperimentPaths,
    n_clusters: int = 4,
    random_state: int = 42,
    tags: Sequence[str] | None = None,
    progress: bool = True,
):
    """``mlp-learning-curve``: n-cut of every per-epoch checkpoint (no shuffles) with accuracy.

    Uses every MLP instance that saved checkpoints (the registry's learning-curve tags do by
    default). Writes ``mlp-learning-curve.csv`` and the figure; returns the table.
    """
    if tags is None:
        tags = [t for t, spec in REGISTRY.items() if spec.learning_curve]
    instances = find_instances(paths.models, list(tags), arch=Architecture.MLP)
    table = learning_curve_table(instances, n_clusters, random_state, paths.cache, progress)
    if table.empty:
        raise NnClusteringError(
            f"no checkpoints under {paths.models} for {', '.join(tags)}; train with a profile that "
            "saves them (checkpoints: true)"
        )
    write_csv(table, paths.results / "mlp-learning-curve.csv")
    from .plots import learning_curves

    save_figure(learning_curves(table), paths.figures / "mlp-learning-curve")
    return table
