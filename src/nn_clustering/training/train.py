"""Training and pruning of the models of method.md §2 (``make models``); Keras 3 only.

Each model instance is trained in a staging folder ``models/<TAG>/.<instance>.partial/`` and
renamed to ``models/<TAG>/<instance>/`` only when both stages are complete, so a half-written
model is never taken as done. The dense stage is kept across an interrupt: a re-run reloads it
and continues with pruning. Every stage starts from its own seed and the pruning stage always
starts from the saved dense model, so an interrupted and resumed run gives the same weights as
an uninterrupted one.

The folder's files and keys are defined by :mod:`nn_clustering.training.catalog`, which this
module writes through: both saved networks, their kernels, ``metrics.json`` (per-epoch history
of both stages, and each stage's accuracy on up to 10,000 training images in inference mode: a
net far worse there than ``fit`` reported, as a net relying on dropout noise is, gets a warning
line; for an ``A-B`` mixture also each stage's test accuracy on the rows from A and from B),
``config.json`` and, for learning-curve tags, per-epoch kernel checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ..core.enums import Architecture, Stage, Task
from ..core.parameters import checked
from ..data.build import ensure_dataset, load_dataset, parse_name
from ..data.imageset import Dataset
from ..errors import DatasetUnavailable, ModelError
from ..formats.loader import load_keras_model
from ..formats.npz import load_npz_weights
from ..registry import Profile, TagSpec, get_spec, instance_seed, load_profile
from ..storage.files import save_npz, write_json_atomic
from ..storage.provenance import code_version, library_versions
from .architectures import build_cnn, build_mlp, prunable_layers
from .catalog import (
    CHECKPOINT_FOLDER,
    DENSE_HISTORY_FILE,
    STAGES,
    Metric,
    checkpoint_name,
    config_record,
    instance_dir,
    instance_metrics,
    metric_key,
    read_index,
    read_instance,
    read_metrics,
    recorded_profile,
    stage_file,
    staging_dir,
    write_index,
    write_metrics,
    write_record,
)
from .factors import DOWN_CNN, DOWN_MLP, clusterable_kernels
from .pruning import MagnitudePruning, PruningSchedule
from .regulariser import ClusterabilityRegularised

LEARNING_RATE = 1e-3
INFERENCE_ROWS = 10_000  # training rows re-scored in inference mode after each stage
INFERENCE_GAP = 0.2  # warn when that accuracy is this far below the one fit reports
INFERENCE_KEY = Metric.TRAIN_ACCURACY_INFERENCE  # where _fit leaves it in a stage's history


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one trained instance."""

    spec: TagSpec
    instance: int
    seed: int
    profile: str


def build_model(spec: TagSpec, seed: int = 0) -> keras.Model:
    """The architecture of a tag, its kernels penalised (``l1``, ``l2``) and, for a tag with
    ``init_modules``, initialised clusterably from modules drawn with ``seed`` (method.md §2.5)."""
    if spec.arch == Architecture.CNN:
        model = build_cnn(dropout=spec.has_dropout, l1=spec.l1, l2=spec.l2, channels=spec.channels)
    else:
        model = build_mlp(dropout=spec.dropout, hidden=tuple(spec.hidden), n_inputs=spec.inputs,
                          n_classes=spec.n_outputs, l1=spec.l1, l2=spec.l2,
                          output="linear" if spec.task == Task.REGRESS else "softmax")
        if spec.cluster_strength:
            model = ClusterabilityRegularised([keras.Input((spec.inputs,)), *model.layers], spec.cluster_strength,
                                              spec.cluster_eigs, name="mlp")
    if spec.init_modules:
        cnn = spec.arch == Architecture.CNN
        layers = [layer for layer in prunable_layers(model) if not cnn or isinstance(layer, keras.layers.Conv2D)]
        kernels = clusterable_kernels([keras.ops.convert_to_numpy(layer.kernel) for layer in layers],
                                      spec.init_modules, np.random.default_rng(seed), DOWN_CNN if cnn else DOWN_MLP)
        for layer, kernel in zip(layers, kernels, strict=True):
            layer.kernel.assign(kernel)
    return model


def downsampled(images: np.ndarray, side: int) -> np.ndarray:
    """28 x 28 images averaged over blocks down to ``side`` x ``side`` pixels (28 // side
    square blocks); as they are for side 28."""
    if side == 28:
        return images
    block = 28 // side
    return images.reshape(-1, side, block, side, block).mean(axis=(2, 4)).astype(images.dtype)


def prepare_data(spec: TagSpec, data: Dataset) -> tuple[np.ndarray, ...]:
    """Inputs shaped for the architecture and one-hot labels (a regression's targets as they
    are); ``train_rows`` keeps the first rows."""
    if spec.task == Task.REGRESS:
        return data.x_train[: spec.train_rows], data.y_train[: spec.train_rows], data.x_test, data.y_test
    shape = (-1, 28, 28, spec.channels) if spec.arch == Architecture.CNN else (-1, spec.inputs)
    x_train, y_train = downsampled(data.x_train, spec.input_side).reshape(shape), data.y_train
    if spec.train_rows:
        x_train, y_train = x_train[: spec.train_rows], y_train[: spec.train_rows]
    n_classes = 10
    return (
        x_train,
        keras.utils.to_categorical(y_train, n_classes),
        downsampled(data.x_test, spec.input_side).reshape(shape),
        keras.utils.to_categorical(data.y_test, n_classes),
    )


def make_optimizer() -> keras.optimizers.Optimizer:
    """Adam(1e-3), method.md §2.1's optimizer."""
    return keras.optimizers.Adam(LEARNING_RATE)


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None,
                  task: Task = Task.CLASSIFY) -> None:
    """``optimizer`` (default: a fresh :func:`make_optimizer`), categorical cross-entropy and
    accuracy (a regression: mean squared error)."""
    if task == Task.REGRESS:
        model.compile(optimizer=optimizer or make_optimizer(), loss="mean_squared_error")
    else:
        model.compile(optimizer=optimizer or make_optimizer(), loss="categorical_crossentropy", metrics=["accuracy"])


def weights_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    """``kernel_i`` and ``bias_i`` of every Dense/Conv2D layer, in order (what the engine reads)."""
    out = {}
    for i, layer in enumerate(prunable_layers(model)):
        out[f"kernel_{i}"] = keras.ops.convert_to_numpy(layer.kernel)
        if layer.use_bias:
            out[f"bias_{i}"] = keras.ops.convert_to_numpy(layer.bias)
    return out


class KernelCheckpoints(keras.callbacks.Callback):
    """Saves the kernels after every epoch (and before the first) for the learning curve."""

    def __init__(self, folder: Path, stage: Stage):
        super().__init__()
        self.folder, self.stage = folder, stage

    def _save(self, epoch: int) -> None:
        arrays = {k: v for k, v in weights_arrays(self.model).items() if k.startswith("kernel_")}
        save_npz(self.folder / checkpoint_name(self.stage, epoch), arrays)

    def on_train_begin(self, logs=None) -> None:
        if self.stage == Stage.DENSE:
            self._save(0)

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._save(epoch + 1)


def _history(history: keras.callbacks.History) -> dict[str, list[float]]:
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def _verbosity() -> int:
    return 1 if sys.stdout.isatty() else 2


def _save_model(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _fit(model, spec: TagSpec, data: tuple, epochs: int, callbacks: list) -> dict:
    x_train, y_train, x_test, y_test = data
    if epochs == 0:
        return {}
    history = model.fit(
        x_train, y_train, batch_size=spec.batch_size, epochs=epochs, shuffle=spec.shuffle,
        validation_data=(x_test, y_test), callbacks=callbacks, verbose=_verbosity(),
    )
    if spec.task == Task.REGRESS:
        return _history(history)
    return {**_history(history), INFERENCE_KEY: inference_accuracy(model, x_train, y_train)}


def predicted_labels(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The class the model gives each row, in inference mode (dropout off)."""
    return np.argmax(model.predict(x, batch_size=1024, verbose=0), axis=1)


def inference_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, rows: int = INFERENCE_ROWS) -> float:
    """Accuracy on the first ``rows`` training examples in inference mode (dropout off).

    The ``accuracy`` that ``fit`` reports is measured in training mode (dropout on) while the
    weights move; a net that only works with its dropout noise shows here.
    """
    predicted = predicted_labels(model, x[:rows])
    return float(np.mean(predicted == np.argmax(y[:rows], axis=1)))


def source_accuracies(model: keras.Model, x_test: np.ndarray, data: Dataset, parts: tuple[str, ...]) -> dict[str, float]:
    """A mixture's test accuracy (inference mode) on the rows of each of its two datasets:
    ``{A: ..., B: ...}`` for dataset ``A-B`` (``data.source_test`` is True for rows from B).

    One overall number hides a net that solves one half of its task and not the other.
    """
    predicted = predicted_labels(model, x_test)
    correct = predicted == np.asarray(data.y_test)
    from_b = np.asarray(data.source_test, dtype=bool)
    return {parts[0]: float(np.mean(correct[~from_b])), parts[1]: float(np.mean(correct[from_b]))}


def inference_gap_warning(name: str, fit_accuracy: float | None, inference: float | None) -> str | None:
    """A warning line when a stage's training images are classified far worse in inference mode
    than during training (more than :data:`INFERENCE_GAP` below), else None."""
    if fit_accuracy is None or inference is None or fit_accuracy - inference <= INFERENCE_GAP:
        return None
    return (
        f"warning: {name}: accuracy on training images {inference:.2f} in inference mode against "
        f"{fit_accuracy:.2f} during training: the net depends on training-mode behaviour (dropout); "
        "its test accuracy and clustering describe the net with dropout off"
    )


def train_dense(config: TrainConfig, data: tuple, stage_dir: Path) -> dict:
    """Stage 1: train the dense network; save it, its weights and its history."""
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.spec, config.seed)
    compile_model(model, task=config.spec.task)
    checkpoints = stage_dir / CHECKPOINT_FOLDER
    callbacks = [KernelCheckpoints(checkpoints, Stage.DENSE)] if config.spec.learning_curve else []
    history = _fit(model, config.spec, data, config.spec.epochs, callbacks)
    _save_model(model, stage_file(stage_dir, Stage.DENSE, ".keras"))
    save_npz(stage_file(stage_dir, Stage.DENSE, ".npz"), weights_arrays(model))
    write_json_atomic(stage_dir / DENSE_HISTORY_FILE, history)
    return history


def train_pruned(config: TrainConfig, data: tuple, stage_dir: Path) -> dict:
    """Stage 2: continue training the saved dense network under magnitude pruning to 90%."""
    keras.utils.set_random_seed(config.seed + 1)
    model = keras.saving.load_model(stage_file(stage_dir, Stage.DENSE, ".keras"), compile=False)
    steps_per_epoch = math.ceil(len(data[0]) / config.spec.batch_size)
    schedule = PruningSchedule(total_steps=max(1, steps_per_epoch * config.spec.prune_epochs))
    pruning = MagnitudePruning(schedule)
    optimizer = make_optimizer()
    pruning.attach(model, optimizer)
    compile_model(model, optimizer, config.spec.task)
    callbacks: list = [pruning]
    if config.spec.learning_curve:
        callbacks.append(KernelCheckpoints(stage_dir / CHECKPOINT_FOLDER, Stage.PRUNED))
    history = _fit(model, config.spec, data, config.spec.prune_epochs, callbacks)
    pruning.detach(model)
    _save_model(model, stage_file(stage_dir, Stage.PRUNED, ".keras"))
    save_npz(stage_file(stage_dir, Stage.PRUNED, ".npz"), weights_arrays(model))
    return history


def train_instance(
    config: TrainConfig,
    models_dir: Path,
    data_dir: Path,
    log: Callable[[str], None] = print,
) -> Path:
    """Train (or resume) one instance; returns its folder. Finished instances are skipped."""
    spec = config.spec
    final = instance_dir(models_dir, spec.tag, config.instance)
    trained_with = recorded_profile(final)
    if trained_with is not None:
        if trained_with != config.profile:
            raise ModelError(
                f"{final} was trained with the {trained_with!r} profile, not {config.profile!r}; "
                "use another --models-dir (make sets models/<profile> for profiles other than paper)"
            )
        read_instance(final, read_index(models_dir)).verify()  # a missing or swapped file: one clear line
        log(f"{spec.tag}/{config.instance}: already trained, skipped")
        add_missing_metrics(final, spec, data_dir, log)
        return final
    stage_dir = staging_dir(models_dir, spec.tag, config.instance)
    stage_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(spec, load_dataset(spec.dataset, data_dir))
    start = time.perf_counter()
    dense_history = staged_dense_history(stage_dir, f"{spec.tag}/{config.instance}", log)
    if dense_history is None:
        log(f"{spec.tag}/{config.instance}: training {spec.epochs} epochs (seed {config.seed})")
        dense_history = train_dense(config, data, stage_dir)
    log(f"{spec.tag}/{config.instance}: pruning to 90% over {spec.prune_epochs} epochs")
    pruned_history = train_pruned(config, data, stage_dir)
    metrics = instance_metrics({Stage.DENSE: dense_history, Stage.PRUNED: pruned_history},
                               time.perf_counter() - start)
    (stage_dir / DENSE_HISTORY_FILE).unlink()
    write_record(stage_dir, config_record(
        config.spec, config.instance, config.seed, config.profile,
        backend=keras.backend.backend(),
        code_version=code_version(),
        versions=library_versions(),
        learning_rate=LEARNING_RATE,
        pruning={"initial_sparsity": 0.5, "final_sparsity": 0.9, "frequency": 10},
    ), metrics)
    if final.exists():
        shutil.rmtree(final)
    os.replace(stage_dir, final)
    if spec.task == Task.REGRESS:
        what, score = "test mean squared error", {stage: metrics[str(stage)]["val_loss"][-1] for stage in STAGES}
    else:
        what, score = "test accuracy", {stage: metrics[metric_key(stage, Metric.TEST_ACCURACY)] for stage in STAGES}
    log(
        f"{spec.tag}/{config.instance}: done in {metrics['seconds']:.0f} s; {what} dense "
        f"{score[Stage.DENSE]:.4f}, pruned {score[Stage.PRUNED]:.4f} -> {final}"
    )
    _warn_inference_gaps(f"{spec.tag}/{config.instance}", metrics, log)
    add_missing_metrics(final, spec, data_dir, log)  # a mixture's per-source accuracy
    return final


def staged_dense_history(stage_dir: Path, name: str, log: Callable[[str], None] = print) -> dict | None:
    """The history of a dense stage an interrupted run left in ``stage_dir``, if it is whole:
    its history, kernels and Keras model readable. A damaged one is discarded (with a line
    saying so) and None returned, so the dense stage is trained again from its seed, to the
    same weights."""
    history_path = stage_dir / DENSE_HISTORY_FILE
    if not history_path.exists():
        return None
    try:
        history = json.loads(history_path.read_text())
        load_keras_model(stage_file(stage_dir, Stage.DENSE, ".keras"))
        load_npz_weights(stage_file(stage_dir, Stage.DENSE, ".npz"))
    except (OSError, ValueError, ModelError) as exc:
        log(f"{name}: the saved dense network of the interrupted run is unreadable ({exc}); "
            "training the dense stage again")
        history_path.unlink()
        return None
    log(f"{name}: resuming from the saved dense network")
    return history


def _warn_inference_gaps(name: str, metrics: dict, log: Callable[[str], None]) -> None:
    for stage in STAGES:
        warning = inference_gap_warning(
            f"{name} {stage}", metrics.get(metric_key(stage, Metric.TRAIN_ACCURACY)),
            metrics.get(metric_key(stage, Metric.TRAIN_ACCURACY_INFERENCE)),
        )
        if warning:
            log(warning)


def add_missing_metrics(
    folder: Path, spec: TagSpec, data_dir: Path, log: Callable[[str], None] = print
) -> bool:
    """Fill in, from the saved nets, what ``metrics.json`` of a finished instance lacks: each
    stage's accuracy on its training images in inference mode (instances trained before it was
    recorded; what training would have stored) and, for an ``A-B`` mixture, each stage's test
    accuracy per source dataset (:func:`source_accuracies`). Returns whether anything was added;
    ``metrics.json`` is rewritten atomically."""
    metrics = read_metrics(folder)
    parts = parse_name(spec.dataset)
    inference = [stage for stage in STAGES if spec.task == Task.CLASSIFY
                 and metric_key(stage, Metric.TRAIN_ACCURACY_INFERENCE) not in metrics]
    sources = [stage for stage in STAGES
               if len(parts) == 2 and metric_key(stage, Metric.TEST_ACCURACY_BY_SOURCE) not in metrics]
    if not inference and not sources:
        return False
    data = load_dataset(spec.dataset, data_dir)
    x_train, y_train, x_test, _ = prepare_data(spec, data)
    for stage in STAGES:
        if stage not in inference and stage not in sources:
            continue
        model = load_keras_model(stage_file(folder, stage, ".keras"))
        if stage in inference:
            metrics[metric_key(stage, Metric.TRAIN_ACCURACY_INFERENCE)] = inference_accuracy(model, x_train, y_train)
        if stage in sources:
            metrics[metric_key(stage, Metric.TEST_ACCURACY_BY_SOURCE)] = source_accuracies(model, x_test, data, parts)
    write_metrics(folder, metrics)
    if inference:
        found = ", ".join(f"{stage} {metrics[metric_key(stage, Metric.TRAIN_ACCURACY_INFERENCE)]:.4f}"
                          for stage in inference)
        log(f"{folder}: added the inference-mode accuracy on training images ({found}) to metrics.json")
        _warn_inference_gaps(str(folder), metrics, log)
    if sources:
        found = "; ".join(
            f"{stage} " + ", ".join(f"{name} {value:.4f}"
                                    for name, value in metrics[metric_key(stage, Metric.TEST_ACCURACY_BY_SOURCE)].items())
            for stage in sources
        )
        log(f"{folder}: test accuracy per source dataset ({found}) added to metrics.json")
    return True


def train_tags(
    tags: list[str],
    profile: Profile | str = "quick",
    models_dir: Path = Path("models"),
    data_dir: Path = Path("datasets"),
    log: Callable[[str], None] = print,
    max_instances: int | None = None,
) -> dict[str, list[Path]]:
    """Train every instance of each tag under a profile; tags whose data is missing are skipped.

    ``max_instances`` trains only the first instances of each tag (the rest can follow later:
    finished instances are skipped).
    """
    if max_instances is not None:
        max_instances = checked("max_instances", max_instances)
    profile = load_profile(profile) if isinstance(profile, str) else profile
    specs = [profile.apply(get_spec(tag)) for tag in tags]  # unknown tags fail before training
    done: dict[str, list[Path]] = {}
    for spec in specs:
        try:
            ensure_dataset(spec.dataset, data_dir)
        except DatasetUnavailable as exc:
            log(f"skipped {spec.tag}: dataset {spec.dataset} is missing ({exc})")
            continue
        done[spec.tag] = []
        n_instances = spec.instances if max_instances is None else min(spec.instances, max_instances)
        for instance in range(n_instances):
            config = TrainConfig(spec, instance, instance_seed(spec.tag, instance), profile.name)
            done[spec.tag].append(train_instance(config, models_dir, data_dir, log))
    if Path(models_dir).is_dir():
        write_index(models_dir)
    return done
