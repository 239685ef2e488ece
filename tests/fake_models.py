"""A tree of synthetic trained models in ``make models``' layout (MLPs written without Keras).

The pruned network of each instance has four planted modules (cross-module weights 100x
weaker, then the smallest half of the weights zeroed), so its clustering is known to be
significant; the dense network is plain Gaussian noise, so it is not.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nn_clustering.registry import get_spec, instance_seed
from nn_clustering.storage.files import save_npz

SIZES = (36, 32, 32, 32, 32, 4)


def planted_kernels(rng: np.random.Generator, sizes=SIZES, modules: int = 4, weak: float = 0.01):
    """Kernels whose cross-module weights are ``weak`` times the within-module ones."""
    groups = [np.arange(n) * modules // n for n in sizes]
    kernels = []
    for layer in range(len(sizes) - 1):
        w = np.abs(rng.normal(size=(sizes[layer], sizes[layer + 1]))) + 0.1
        same = groups[layer][:, None] == groups[layer + 1][None, :]
        kernels.append((np.where(same, w, weak * w) * rng.choice([-1, 1], size=w.shape)).astype(np.float32))
    return kernels


def prune_half(kernel: np.ndarray) -> np.ndarray:
    """Zero the smallest half of the entries by magnitude."""
    cut = np.quantile(np.abs(kernel), 0.5)
    return np.where(np.abs(kernel) > cut, kernel, 0).astype(np.float32)


def _arrays(kernels, sizes) -> dict[str, np.ndarray]:
    out = {f"kernel_{i}": k for i, k in enumerate(kernels)}
    out.update({f"bias_{i}": np.zeros(n, np.float32) for i, n in enumerate(sizes[1:])})
    return out


def write_fake_instance(models_dir: Path, tag: str, instance: int, epochs: int = 2,
                        profile: str = "quick") -> Path:
    """One finished instance folder of ``tag`` with dense/pruned kernels, metrics, config and
    per-epoch checkpoints; returns the folder."""
    rng = np.random.default_rng([instance, len(tag)])
    folder = Path(models_dir) / tag / str(instance)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    dense = [rng.normal(size=(a, b)).astype(np.float32) for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)]
    pruned = [prune_half(k) for k in planted_kernels(rng)]
    save_npz(folder / "dense.npz", _arrays(dense, SIZES))
    save_npz(folder / "pruned.npz", _arrays(pruned, SIZES))
    for e in range(epochs + 1):
        t = e / epochs
        save_npz(folder / "checkpoints" / f"dense-epoch-{e:03d}.npz",
                 {f"kernel_{i}": k * (1 - t) + p * t for i, (k, p) in enumerate(zip(dense, pruned, strict=True))})
        if e:
            save_npz(folder / "checkpoints" / f"pruned-epoch-{e:03d}.npz",
                     {f"kernel_{i}": p for i, p in enumerate(pruned)})
    _write_records(folder, tag, instance, epochs, profile)
    return folder


def _write_records(folder: Path, tag: str, instance: int, epochs: int, profile: str) -> None:
    """``metrics.json`` and ``config.json`` of a fake instance (accuracies 0.6, 0.7, ...)."""
    acc = [0.5 + 0.1 * e for e in range(1, epochs + 1)]
    history = {"accuracy": acc, "val_accuracy": [a - 0.05 for a in acc], "loss": [1.0] * epochs,
               "val_loss": [1.1] * epochs}
    metrics = {
        "dense": history, "pruned": history,
        "dense_test_accuracy": history["val_accuracy"][-1], "pruned_test_accuracy": history["val_accuracy"][-1],
        "dense_train_accuracy": acc[-1], "pruned_train_accuracy": acc[-1], "seconds": 1.0,
    }
    if instance == 0:  # the other instances look like ones trained before this was recorded
        metrics.update(dense_train_accuracy_inference=acc[-1] - 0.25, pruned_train_accuracy_inference=acc[-1] - 0.5)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    config = {"spec": asdict(get_spec(tag)), "instance": instance, "seed": instance_seed(tag, instance),
              "profile": profile, "backend": "none", "code_version": "test"}
    (folder / "config.json").write_text(json.dumps(config))


CNN_CHANNELS = (8, 8, 8)


def fake_cnn(rng: np.random.Generator, planted: bool):
    """A tiny Keras CNN for the fake 6x6, 4-class dataset: conv-conv-pool-conv-flatten-dense.
    ``planted``: channels 0-3 and 4-7 of consecutive conv layers are joined only 100x weakly
    (and the smallest half of each conv kernel is zeroed, as pruning would)."""
    import keras

    keras.utils.set_random_seed(int(rng.integers(2**31)))
    model = keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Conv2D(CNN_CHANNELS[0], 3, padding="same", activation="relu", name="conv_0"),
        keras.layers.Conv2D(CNN_CHANNELS[1], 3, padding="same", activation="relu", name="conv_1"),
        keras.layers.MaxPooling2D(2, name="pool_0"),
        keras.layers.Conv2D(CNN_CHANNELS[2], 3, padding="same", activation="relu", name="conv_2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(4, activation="softmax", name="dense_0"),
    ], name="cnn")
    if planted:
        group = np.arange(8) // 4
        for name in ("conv_1", "conv_2"):
            layer = model.get_layer(name)
            kernel = np.abs(rng.normal(size=layer.kernel.shape)) + 0.1
            kernel *= np.where(group[:, None] == group[None, :], 1.0, 0.01) * rng.choice([-1, 1], kernel.shape)
            layer.kernel.assign(prune_half(kernel))
    return model


def write_fake_cnn_instance(models_dir: Path, tag: str, instance: int, epochs: int = 2,
                            profile: str = "quick") -> Path:
    """One finished CNN instance: ``dense.keras`` / ``pruned.keras`` (random / planted two
    channel groups), their ``.npz`` kernels, metrics and config; returns the folder."""
    from nn_clustering.training.train import weights_arrays

    rng = np.random.default_rng([instance, len(tag), 7])
    folder = Path(models_dir) / tag / str(instance)
    folder.mkdir(parents=True, exist_ok=True)
    for stage, planted in (("dense", False), ("pruned", True)):
        model = fake_cnn(rng, planted)
        model.save(folder / f"{stage}.keras")
        save_npz(folder / f"{stage}.npz", weights_arrays(model))
    _write_records(folder, tag, instance, epochs, profile)
    return folder


def write_fake_models(models_dir: Path, tags=("MNIST", "MNIST+DROPOUT"), instances: int = 2) -> Path:
    """Fake instances of several tags under ``models_dir``."""
    for tag in tags:
        for i in range(instances):
            write_fake_instance(models_dir, tag, i)
    return Path(models_dir)


def write_fake_dataset(data_dir: Path, name: str = "mnist", n: int = 200, seed: int = 0) -> Path:
    """A dataset file in ``make datasets``' format whose images fit the fake models (6x6 inputs,
    4 classes): class c lights up input block c."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    blocks = np.arange(36) * 4 // 36
    x = (rng.random((n, 36)) * 60 + 190 * (blocks[None, :] == y[:, None])).astype(np.uint8)
    data_dir = Path(data_dir)
    save_npz(data_dir / f"{name}.npz", {"x_train": x.reshape(n, 6, 6), "y_train": y,
                                        "x_test": x.reshape(n, 6, 6), "y_test": y})
    return data_dir
