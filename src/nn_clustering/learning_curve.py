"""N-cut through training (SPEC section 7, ``mlp-learning-curve``).

Clusters every per-epoch kernel checkpoint of an instance (k = 4, no shuffles) through the
dense and the pruning phase, next to that epoch's accuracy. Cached per checkpoint file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace

import numpy as np

from .analysis import graph_inputs
from .cache import ResultCache
from .catalog import Checkpoint, TrainedInstance
from .fileio import file_digest
from .model_io import load_weights
from .provenance import code_version
from .shuffle import observed_clustering
from .spectral import SpectralConfig

LEARNING_CURVE_COLUMNS = [
    "tag", "instance", "phase", "epoch", "global_epoch", "ncut", "sparsity", "train_accuracy",
    "test_accuracy", "k", "seed", "model_seed", "checkpoint_sha256", "code_version",
]


def checkpoint_ncut(
    checkpoint: Checkpoint, k: int = 4, seed: int = 42, spectral: SpectralConfig | None = None,
    cache: ResultCache | None = None,
) -> dict:
    """n-cut and sparsity of one checkpoint (cached by its digest and the parameters)."""
    spectral = replace(spectral or SpectralConfig(), n_clusters=k)
    digest = file_digest(checkpoint.path, "sha256")
    parts = {"what": "checkpoint_ncut", "sha256": digest, "seed": seed, "spectral": asdict(spectral)}

    def compute() -> dict:
        kernels, builder = graph_inputs(load_weights(checkpoint.path))
        clustering = observed_clustering(builder(kernels), spectral, seed)
        total = sum(kernel.size for kernel in kernels)
        zeros = sum(int(np.count_nonzero(kernel == 0)) for kernel in kernels)
        return {"ncut": clustering.ncut, "sparsity": zeros / total, "sha256": digest,
                "code_version": code_version()}

    return (cache or ResultCache(None)).get_or_compute(parts, compute)


def learning_curve_rows(
    instance: TrainedInstance, k: int = 4, seed: int = 42, cache: ResultCache | None = None
) -> list[dict]:
    """One row per checkpoint of ``instance``: phase, epoch, n-cut, sparsity and accuracies."""
    dense_epochs = len(instance.metrics.get("dense", {}).get("accuracy", []))
    rows = []
    for ckpt in instance.checkpoints():
        value = checkpoint_ncut(ckpt, k, seed, cache=cache)
        rows.append({
            "tag": instance.tag, "instance": instance.instance, "phase": ckpt.phase,
            "epoch": ckpt.epoch,
            "global_epoch": ckpt.epoch + (dense_epochs if ckpt.phase == "pruned" else 0),
            "ncut": value["ncut"], "sparsity": value["sparsity"],
            "train_accuracy": instance.epoch_accuracy(ckpt.phase, ckpt.epoch, "train"),
            "test_accuracy": instance.epoch_accuracy(ckpt.phase, ckpt.epoch, "test"),
            "k": k, "seed": seed, "model_seed": instance.seed,
            "checkpoint_sha256": value["sha256"], "code_version": value["code_version"],
        })
    return rows


def learning_curve_table(
    instances: Sequence[TrainedInstance], k: int = 4, seed: int = 42, cache: ResultCache | None = None,
    progress: bool = True,
):
    """The learning-curve rows of every instance that has checkpoints, as a DataFrame."""
    import pandas as pd
    from tqdm import tqdm

    with_checkpoints = [inst for inst in instances if inst.checkpoints()]
    rows: list[dict] = []
    for inst in tqdm(with_checkpoints, desc="learning curves", unit="model", disable=not progress):
        rows += learning_curve_rows(inst, k, seed, cache)
    return pd.DataFrame(rows, columns=LEARNING_CURVE_COLUMNS)
