"""The trained models on disk: the schema of a model folder, its writer and its reader.

``make models`` writes each finished instance as ``models/<TAG>/<instance>/`` holding
``dense.npz`` / ``pruned.npz`` (``kernel_i``, ``bias_i``), ``dense.keras`` / ``pruned.keras``,
``metrics.json`` (per-epoch history of both stages and each stage's summary metrics, keyed by
:func:`metric_key`), ``config.json`` (:func:`config_record`: the tag's spec, instance, seed,
profile, versions) and optionally ``checkpoints/<stage>-epoch-NNN.npz``. An instance is built in
``models/<TAG>/.<instance>.partial/`` and renamed into place when complete. ``config.json``
records the SHA-256 of every saved network file, and ``INDEX.json`` lists every finished
instance with its kernel digests; a file is read only after it has been checked against that
record, so a swapped, damaged or deleted file is one clear error, not a wrong number. Every file
name and key of that layout is defined here, once; training writes through these functions and
the analyses read through :class:`TrainedInstance`, without importing Keras.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.enums import Architecture, Choice, Stage
from ..core.graph import NetworkWeights
from ..data.build import parse_name
from ..errors import ModelError, printable
from ..formats.npz import load_npz_weights
from ..registry import REGISTRY, known_profiles
from ..storage.files import file_digest, write_json_atomic

STAGES: tuple[Stage, ...] = tuple(Stage)
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
INDEX_FILE = "INDEX.json"
CHECKPOINT_FOLDER = "checkpoints"
DENSE_HISTORY_FILE = "dense-history.json"  # the dense stage's history while an instance is staged
FILES_KEY = "files"  # config.json: {file name: SHA-256} of the saved networks
NETWORK_SUFFIXES = (".npz", ".keras")
_CHECKPOINT = re.compile(r"^(dense|pruned)-epoch-(\d{3,})\.npz$")  # 1,000 epochs and more: 4 digits


class Metric(Choice):
    """The per-stage summary metrics of ``metrics.json`` (keys: :func:`metric_key`)."""

    TEST_ACCURACY = "test_accuracy"  #: the stage's last epoch, on the test split
    TRAIN_ACCURACY = "train_accuracy"  #: the stage's last epoch as ``fit`` reported it (dropout on)
    TRAIN_ACCURACY_INFERENCE = "train_accuracy_inference"  #: up to 10,000 training rows, dropout off
    TEST_ACCURACY_BY_SOURCE = "test_accuracy_by_source"  #: an A-B mixture's test accuracy per source


#: Keys of a Keras ``fit`` history: the training and the validation (= test) accuracy per epoch.
HISTORY_KEYS = {"train": "accuracy", "test": "val_accuracy"}


def metric_key(stage: Stage | str, metric: Metric) -> str:
    """The ``metrics.json`` key of a stage's summary metric, e.g. ``pruned_test_accuracy``."""
    return f"{Stage.parse(stage)}_{metric}"


def stage_file(folder: Path, stage: Stage | str, suffix: str) -> Path:
    """``folder/<stage><suffix>``, e.g. ``pruned.npz``; a clear error for an unknown stage."""
    return Path(folder) / f"{Stage.parse(stage)}{suffix}"


def checkpoint_name(stage: Stage | str, epoch: int) -> str:
    """File name of the kernels saved after ``epoch`` epochs of ``stage``."""
    return f"{Stage.parse(stage)}-epoch-{epoch:03d}.npz"


def instance_dir(models_dir: Path, tag: str, instance: int) -> Path:
    """Where a finished instance lives: ``<models>/<TAG>/<instance>``."""
    return Path(models_dir) / tag / str(instance)


def staging_dir(models_dir: Path, tag: str, instance: int) -> Path:
    """Where an instance is built before it is renamed into place: ``<models>/<TAG>/.<i>.partial``."""
    return Path(models_dir) / tag / f".{instance}.partial"


def config_record(spec: Any, instance: int, seed: int, profile: str, **extra: Any) -> dict[str, Any]:
    """The content of ``config.json``: the tag's spec (a dataclass), instance, seed, profile
    and anything else worth recording (backend, code and library versions, ...)."""
    return {"spec": asdict(spec), "instance": instance, "seed": seed, "profile": profile, **extra}


def instance_metrics(histories: dict[Stage, dict], seconds: float) -> dict[str, Any]:
    """The content of ``metrics.json`` from each stage's history (a Keras ``fit`` history, with
    the inference-mode training accuracy under :attr:`Metric.TRAIN_ACCURACY_INFERENCE`)."""
    out: dict[str, Any] = {"seconds": seconds}
    for stage, history in histories.items():
        history = dict(history)  # the caller's history keeps its inference-mode accuracy
        out[metric_key(stage, Metric.TEST_ACCURACY)] = (history.get(HISTORY_KEYS["test"]) or [None])[-1]
        out[metric_key(stage, Metric.TRAIN_ACCURACY)] = (history.get(HISTORY_KEYS["train"]) or [None])[-1]
        out[metric_key(stage, Metric.TRAIN_ACCURACY_INFERENCE)] = history.pop(Metric.TRAIN_ACCURACY_INFERENCE, None)
        out[str(stage)] = history
    return out


def network_files(folder: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` of the saved networks of an instance folder (both stages, kernels
    and Keras models), for ``config.json``."""
    names = [stage_file(folder, stage, suffix).name for stage in STAGES for suffix in NETWORK_SUFFIXES]
    return {name: file_digest(Path(folder) / name, "sha256") for name in names if (Path(folder) / name).exists()}


def write_record(folder: Path, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write ``metrics.json`` and ``config.json`` (with the digests of the saved networks) into an
    instance folder, each atomically."""
    write_json_atomic(Path(folder) / METRICS_FILE, metrics)
    write_json_atomic(Path(folder) / CONFIG_FILE, {**config, FILES_KEY: network_files(folder)})


def read_metrics(folder: Path) -> dict[str, Any]:
    """``metrics.json`` of an instance folder."""
    return json.loads((Path(folder) / METRICS_FILE).read_text())


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    """Rewrite ``metrics.json`` of an instance folder atomically."""
    write_json_atomic(Path(folder) / METRICS_FILE, metrics)


def recorded_profile(folder: Path) -> str | None:
    """The profile a finished instance folder was trained under (None if it has no config)."""
    path = Path(folder) / CONFIG_FILE
    return json.loads(path.read_text()).get("profile") if path.exists() else None


@dataclass(frozen=True)
class Checkpoint:
    """Kernels saved after ``epoch`` epochs of one training phase."""

    phase: Stage
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
    #: ``{file name: SHA-256}`` the files must match (config.json's record, else INDEX.json's)
    recorded: dict = field(default_factory=dict)
    #: digests already verified, by (path, size, mtime): a file is hashed once per change
    _verified: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def arch(self) -> Architecture:
        """``mlp`` or ``cnn``."""
        return Architecture(self.config["spec"]["arch"])

    @property
    def dataset(self) -> str:
        """The name of the dataset the instance was trained on."""
        return str(self.config["spec"]["dataset"])

    @property
    def seed(self) -> int:
        """The training seed recorded for this instance."""
        return int(self.config["seed"])

    @property
    def profile(self) -> str:
        """The training profile the instance was trained under."""
        return str(self.config.get("profile", ""))

    def kernels_path(self, stage: Stage | str) -> Path:
        """The ``.npz`` of kernels and biases of ``stage`` (``dense`` or ``pruned``)."""
        return stage_file(self.path, stage, ".npz")

    def model_path(self, stage: Stage | str) -> Path:
        """The saved Keras model of ``stage`` (``dense.keras`` or ``pruned.keras``)."""
        return stage_file(self.path, stage, ".keras")

    def weights(self, stage: Stage | str) -> NetworkWeights:
        """Kernels and biases of ``stage``, read once they match their record."""
        self.digest(stage)
        return load_npz_weights(self.kernels_path(stage))

    def verified(self, path: Path) -> str:
        """The SHA-256 of one of the instance's files, once it is known to exist and to match
        what training recorded; a :class:`ModelError` naming the fix otherwise."""
        fix = f"delete {self.path} and re-run `make models TAGS={self.tag}` (training is deterministic)"
        if not path.is_file():
            raise ModelError(f"{path} is missing: the model folder is incomplete; {fix}")
        state = path.stat()
        key = (path, state.st_size, state.st_mtime_ns)
        if key in self._verified:
            return self._verified[key]
        digest = file_digest(path, "sha256")
        expected = self.recorded.get(path.name)
        if expected is not None and digest != expected:
            raise ModelError(
                f"{path} does not match the SHA-256 recorded when it was trained ({digest[:12]}... != "
                f"{expected[:12]}...): it was replaced or damaged; restore it, or {fix}"
            )
        self._verified[key] = digest
        return digest

    def verify(self) -> None:
        """Check every recorded file of the instance (see :meth:`verified`)."""
        for name in self.recorded:
            self.verified(self.path / name)

    def _metric(self, stage: Stage | str, metric: Metric) -> float | None:
        value = self.metrics.get(metric_key(stage, metric))
        return None if value is None else float(value)

    def accuracy(self, stage: Stage | str, split: str = "test") -> float | None:
        """The stage's last-epoch accuracy on ``test`` or ``train`` (method.md §2)."""
        return self._metric(stage, Metric.TEST_ACCURACY if split == "test" else Metric.TRAIN_ACCURACY)

    def inference_accuracy(self, stage: Stage | str) -> float | None:
        """The stage's accuracy on (up to 10,000 of) its training images in inference mode,
        dropout off (None for instances trained before it was recorded; ``make models`` adds it)."""
        return self._metric(stage, Metric.TRAIN_ACCURACY_INFERENCE)

    def source_accuracies(self, stage: Stage | str) -> tuple[float | None, float | None]:
        """For an ``A-B`` mixture, the stage's test accuracy on the rows from A and from B
        (None, None for other datasets and for instances trained before it was recorded;
        ``make models`` adds it)."""
        by_source = self.metrics.get(metric_key(stage, Metric.TEST_ACCURACY_BY_SOURCE)) or {}
        parts = parse_name(self.dataset)
        if len(parts) != 2:
            return None, None
        a, b = (by_source.get(part) for part in parts)
        return (None if a is None else float(a)), (None if b is None else float(b))

    def epoch_accuracy(self, phase: Stage | str, epoch: int, split: str = "test") -> float | None:
        """Accuracy after ``epoch`` epochs of ``phase`` (None before the first epoch)."""
        history = self.metrics.get(str(Stage.parse(phase)), {}).get(HISTORY_KEYS[split], [])
        return float(history[epoch - 1]) if 1 <= epoch <= len(history) else None

    def checkpoints(self) -> list[Checkpoint]:
        """Per-epoch kernel checkpoints in training order (dense phase first)."""
        folder = self.path / CHECKPOINT_FOLDER
        found = [
            Checkpoint(Stage(m.group(1)), int(m.group(2)), p)
            for p in (folder.iterdir() if folder.is_dir() else [])
            if (m := _CHECKPOINT.match(p.name))
        ]
        return sorted(found, key=lambda c: (STAGES.index(c.phase), c.epoch))

    def digest(self, stage: Stage | str) -> str:
        """SHA-256 of the stage's kernel file (what caches and result rows are keyed by), checked
        against the record."""
        return self.verified(self.kernels_path(stage))


def _tag_order(tag: str) -> tuple[int, str]:
    names = list(REGISTRY)
    return (names.index(tag), tag) if tag in names else (len(names), tag)


def read_index(models_dir: Path) -> dict[tuple[str, int], dict[str, str]]:
    """INDEX.json's kernel digests by (tag, instance) as ``{file name: SHA-256}`` (empty when
    there is no readable index)."""
    try:
        entries = json.loads((Path(models_dir) / INDEX_FILE).read_text())["instances"]
        return {(e["tag"], int(e["instance"])): {stage_file(Path(), s, ".npz").name: e[f"{s}_sha256"]
                                                  for s in STAGES if f"{s}_sha256" in e} for e in entries}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def read_instance(path: Path, index: dict[tuple[str, int], dict[str, str]] | None = None) -> TrainedInstance:
    """Read one finished instance folder; a clear error if it is incomplete. Its files are
    checked against config.json's record of them, or (for folders trained before config.json
    held one) against ``index`` (INDEX.json's)."""
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        metrics = read_metrics(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: incomplete model folder ({type(exc).__name__}); delete it and re-run "
                         "`make models`") from None
    tag, number = _checked_record(path, config, metrics)
    recorded = config.get(FILES_KEY) or (index or {}).get((tag, number), {})
    return TrainedInstance(tag, number, path, config, metrics, dict(recorded))


def _checked_record(path: Path, config: Any, metrics: Any) -> tuple[str, int]:
    """The tag and instance number of a model folder's ``config.json``, once its names are known
    to be the project's own: the tag one of the registry's (and its folder's name), its dataset
    and architecture the registry's for that tag, the profile one of the shipped profiles, the
    instance its folder's number. These names reach tables, file paths and the terminal, so a
    folder from elsewhere cannot put a formula, a path or an escape sequence there."""

    fix = "a model folder must come from `make models` of this project: delete it or train it again"
    if not isinstance(config, dict) or not isinstance(config.get("spec"), dict) or not isinstance(metrics, dict):
        raise ModelError(f"{path}: config.json or metrics.json is not a record of `make models`; {fix}")
    spec, tag, profile = config["spec"], config["spec"].get("tag"), config.get("profile", "")
    if tag not in REGISTRY or tag != path.parent.name:
        raise ModelError(f"{path}: config.json names the tag {printable(tag)!r}, not a tag of this project's "
                         f"registry in a folder of that name; {fix}")
    expected = REGISTRY[tag]
    for name in ("dataset", "arch"):
        if spec.get(name) != str(getattr(expected, name)):
            raise ModelError(f"{path}: config.json gives {tag} the {name} {printable(spec.get(name))!r}, not "
                             f"{str(getattr(expected, name))!r}; {fix}")
    if profile not in ("", *known_profiles()):
        raise ModelError(f"{path}: config.json names the profile {printable(profile)!r}, not one of "
                         f"{', '.join(known_profiles())}; {fix}")
    number = config.get("instance")
    if isinstance(number, bool) or not isinstance(number, int) or str(number) != path.name:
        raise ModelError(f"{path}: config.json gives the instance {printable(number)!r}, not its folder's "
                         f"number {path.name}; {fix}")
    return tag, number


def find_instances(
    models_dir: str | Path,
    tags: list[str] | tuple[str, ...] | None = None,
    arch: Architecture | str | None = Architecture.MLP,
) -> list[TrainedInstance]:
    """Every finished instance under ``models_dir`` (of ``tags`` if given, of ``arch`` if given),
    in registry order then instance order. Unfinished (``.N.partial``) folders are ignored."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ModelError(f"{models_dir} does not exist; train models first with `make models`")
    arch = None if arch is None else Architecture.parse(arch)
    index = read_index(models_dir)
    found = []
    for config_path in models_dir.glob(f"*/*/{CONFIG_FILE}"):
        folder = config_path.parent
        if not folder.name.isdigit() or (tags is not None and folder.parent.name not in tags):
            continue
        instance = read_instance(folder, index)
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
            "arch": str(inst.arch),
            **{f"{stage}_sha256": inst.digest(stage) for stage in STAGES},
        }
        for inst in find_instances(models_dir, arch=None)
    ]
    index = models_dir / INDEX_FILE
    new = {"instances": entries}
    if not index.exists() or json.loads(index.read_text()) != new:
        write_json_atomic(index, new)
    return index
