"""The trained models on disk (``models/<TAG>/<instance>/``): find them and read what they hold.

``make models`` writes each finished instance as a folder with ``dense.npz`` / ``pruned.npz``
(kernels and biases), ``metrics.json`` (per-epoch history of both stages), ``config.json``
(resolved config, seed, versions) and optionally ``checkpoints/<stage>-epoch-NNN.npz``. This
module reads that layout without importing Keras.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .datasets import parse_name
from .errors import ModelError
from .fileio import file_digest, write_json_atomic
from .model_io import NetworkWeights, load_npz_weights
from .registry import REGISTRY

STAGES: tuple[str, ...] = ("dense", "pruned")
SOURCE_KEY = "test_accuracy_by_source"  # metrics.json: a mixture's test accuracy per source dataset
_CHECKPOINT = re.compile(r"^(dense|pruned)-epoch-(\d{3,})\.npz$")  # 1,000 epochs and more: 4 digits


@dataclass(frozen=True)
class Checkpoint:
    """Kernels saved after ``epoch`` epochs of one training phase."""

    phase: str  # "dense" or "pruned"
    epoch: int
    path: Path


@dataclass(frozen=True)
class TrainedInstance:
    """One finished model instance: its folder, resolved config and recorded metrics."""

    tag: str
    instance: int
    path: Path
    config: dict
    metrics: dict

    @property
    def arch(self) -> str:
        """``mlp`` or ``cnn``."""
        return self.config["spec"]["arch"]

    @property
    def seed(self) -> int:
        """The training seed recorded for this instance."""
        return int(self.config["seed"])

    @property
    def profile(self) -> str:
        """The training profile the instance was trained under."""
        return str(self.config.get("profile", ""))

    def _stage_file(self, stage: str, suffix: str) -> Path:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
        return self.path / f"{stage}{suffix}"

    def kernels_path(self, stage: str) -> Path:
        """The ``.npz`` of kernels and biases of ``stage`` (``dense`` or ``pruned``)."""
        return self._stage_file(stage, ".npz")

    def model_path(self, stage: str) -> Path:
        """The saved Keras model of ``stage`` (``dense.keras`` or ``pruned.keras``)."""
        return self._stage_file(stage, ".keras")

    def weights(self, stage: str) -> NetworkWeights:
        """Kernels and biases of ``stage``."""
        return load_npz_weights(self.kernels_path(stage))

    def accuracy(self, stage: str, split: str = "test") -> float | None:
        """The stage's last-epoch accuracy on ``test`` or ``train`` (SPEC section 2)."""
        value = self.metrics.get(f"{stage}_{split}_accuracy")
        return None if value is None else float(value)

    def inference_accuracy(self, stage: str) -> float | None:
        """The stage's accuracy on (up to 10,000 of) its training images in inference mode,
        dropout off (None for instances trained before it was recorded; ``make models`` adds it)."""
        value = self.metrics.get(f"{stage}_train_accuracy_inference")
        return None if value is None else float(value)

    def source_accuracies(self, stage: str) -> tuple[float | None, float | None]:
        """For an ``A-B`` mixture, the stage's test accuracy on the rows from A and from B
        (None, None for other datasets and for instances trained before it was recorded;
        ``make models`` adds it)."""
        by_source = self.metrics.get(f"{stage}_{SOURCE_KEY}") or {}
        parts = parse_name(self.config["spec"]["dataset"])
        if len(parts) != 2:
            return None, None
        a, b = (by_source.get(part) for part in parts)
        return (None if a is None else float(a)), (None if b is None else float(b))

    def epoch_accuracy(self, phase: str, epoch: int, split: str = "test") -> float | None:
        """Accuracy after ``epoch`` epochs of ``phase`` (None before the first epoch)."""
        history = self.metrics.get(phase, {}).get("val_accuracy" if split == "test" else "accuracy", [])
        return float(history[epoch - 1]) if 1 <= epoch <= len(history) else None

    def checkpoints(self) -> list[Checkpoint]:
        """Per-epoch kernel checkpoints in training order (dense phase first)."""
        folder = self.path / "checkpoints"
        found = [
            Checkpoint(m.group(1), int(m.group(2)), p)
            for p in (folder.iterdir() if folder.is_dir() else [])
            if (m := _CHECKPOINT.match(p.name))
        ]
        return sorted(found, key=lambda c: (STAGES.index(c.phase), c.epoch))

    def digest(self, stage: str) -> str:
        """SHA-256 of the stage's kernel file (what caches and result rows are keyed by)."""
        return file_digest(self.kernels_path(stage), "sha256")


def _tag_order(tag: str) -> tuple[int, str]:
    names = list(REGISTRY)
    return (names.index(tag), tag) if tag in names else (len(names), tag)


def read_instance(path: Path) -> TrainedInstance:
    """Read one finished instance folder; a clear error if it is incomplete."""
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: incomplete model folder ({exc}); delete it and re-run `make models`") from exc
    tag = config.get("spec", {}).get("tag", path.parent.name)
    return TrainedInstance(tag, int(config.get("instance", path.name)), path, config, metrics)


def find_instances(
    models_dir: str | Path, tags: list[str] | tuple[str, ...] | None = None, arch: str | None = "mlp"
) -> list[TrainedInstance]:
    """Every finished instance under ``models_dir`` (of ``tags`` if given, of ``arch`` if given),
    in registry order then instance order. Unfinished (``.N.partial``) folders are ignored."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ModelError(f"{models_dir} does not exist; train models first with `make models`")
    found = []
    for config_path in models_dir.glob("*/*/config.json"):
        folder = config_path.parent
        if not folder.name.isdigit() or (tags is not None and folder.parent.name not in tags):
            continue
        instance = read_instance(folder)
        if arch is None or instance.arch == arch:
            found.append(instance)
    return sorted(found, key=lambda i: (_tag_order(i.tag), i.instance))


def write_index(models_dir: str | Path) -> Path:
    """Write ``models_dir/INDEX.json`` (every finished instance and its kernel digests).

    The file is rewritten only when its content changes, so ``make`` re-runs analyses only
    when the set of trained models really changed.
    """
    models_dir = Path(models_dir)
    entries = [
        {
            "tag": inst.tag,
            "instance": inst.instance,
            "profile": inst.profile,
            "arch": inst.arch,
            **{f"{stage}_sha256": inst.digest(stage) for stage in STAGES},
        }
        for inst in find_instances(models_dir, arch=None)
    ]
    index = models_dir / "INDEX.json"
    new = {"instances": entries}
    if not index.exists() or json.loads(index.read_text()) != new:
        write_json_atomic(index, new)
    return index
