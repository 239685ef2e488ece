"""The single lesion test (k = 10, n = 100) of the MNIST MLP: ours against a Keras baseline.

Ours: :func:`nn_clustering.core.lesion.single_lesion_test`, batched numpy evaluation. Baseline: what
a straightforward implementation does, for every lesion rebuild the Keras model, load the
lesioned weights and evaluate it on the test set. The baseline runs on ``--baseline-lesions``
lesions of the same test and its per-lesion time is scaled to the full test's lesion count;
both are measured in this run, on the same network, data and lesions.

    .venv/bin/python benchmarks/bench_lesion.py [--model models/MNIST/0/pruned.npz]

Uses the first trained MNIST model it finds (paper, then quick profile) and datasets/mnist.npz;
with neither, a random 784-256x4-10 network at 90% sparsity and random test data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from nn_clustering.core.graph import NetworkWeights, mlp_graph
from nn_clustering.core.lesion import (
    MLP,
    LesionConfig,
    LesionEvaluator,
    lesion_network,
    single_lesion_test,
    submodules,
)
from nn_clustering.core.shuffle import observed_seed
from nn_clustering.core.spectral import SpectralConfig, cluster_graph
from nn_clustering.formats import load_weights

CANDIDATES = ("models/MNIST/0/pruned.npz", "models/quick/MNIST/0/pruned.npz")


def load_inputs(model: str | None) -> tuple[MLP, np.ndarray, np.ndarray, str]:
    path = model or next((p for p in CANDIDATES if Path(p).exists()), None)
    if path:
        net = MLP.from_weights(load_weights(path))
    else:
        rng = np.random.default_rng(0)
        sizes = (784, 256, 256, 256, 256, 10)
        kernels = [rng.normal(size=(a, b)) * (rng.random((a, b)) < 0.1) for a, b in zip(sizes, sizes[1:], strict=False)]
        net = MLP.from_weights(NetworkWeights(kernels, [np.zeros(b) for b in sizes[1:]]))
        path = "random 90%-sparse network"
    try:
        from nn_clustering.data import load_dataset

        data = load_dataset("mnist")
        x, y = data.x_test.reshape(-1, 784), data.y_test
    except Exception:
        rng = np.random.default_rng(1)
        x, y = rng.random((10000, 784), dtype=np.float32), rng.integers(0, 10, 10000)
    return net, x, y, path


def keras_baseline(net: MLP, x: np.ndarray, y: np.ndarray, lesions: list[dict]) -> tuple[float, list[float]]:
    """Seconds per lesion: rebuild, set weights, evaluate; and the accuracies."""
    import keras

    from nn_clustering.training.architectures import build_mlp

    accs = []
    start = time.perf_counter()
    for lesion in lesions:
        damaged = lesion_network(net, lesion)
        model = build_mlp()
        model.set_weights([w for pair in zip(damaged.kernels, damaged.biases, strict=False) for w in pair])
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        accs.append(model.evaluate(x, y, batch_size=1000, verbose=0)[1])
        keras.backend.clear_session()
    return (time.perf_counter() - start) / len(lesions), accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n-random", type=int, default=100)
    parser.add_argument("--baseline-lesions", type=int, default=40)
    args = parser.parse_args()
    net, x, y, source = load_inputs(args.model)
    labels = cluster_graph(mlp_graph(list(net.kernels)), SpectralConfig(args.k), observed_seed(42)).labels
    modules = submodules(labels, net.layer_sizes)
    n_lesions = len(modules) * (args.n_random + 1)
    print(f"network: {source}; {len(modules)} sub-modules (k = {args.k}), n = {args.n_random}: "
          f"{n_lesions} lesion evaluations on {len(y)} test images")

    start = time.perf_counter()
    evaluator = LesionEvaluator(net, x, y)
    rows, _ = single_lesion_test(evaluator, labels, LesionConfig(args.n_random, 42), progress=False)
    ours = time.perf_counter() - start

    rng = np.random.default_rng(0)
    picks = [modules[i] for i in rng.integers(0, len(modules), args.baseline_lesions)]
    lesions = [{m.layer: m.neurons} for m in picks]
    per_lesion, keras_accs = keras_baseline(net, x, y, lesions)
    our_accs, _ = evaluator.evaluate(lesions)
    agree = np.max(np.abs(np.asarray(keras_accs) - our_accs))
    baseline = per_lesion * n_lesions
    print(f"ours (full test)                 {ours:8.1f} s   ({ours / n_lesions * 1e3:.1f} ms per lesion)")
    print(f"Keras rebuild per lesion         {baseline:8.1f} s   ({per_lesion * 1e3:.1f} ms per lesion, "
          f"measured on {len(lesions)} lesions)")
    print(f"speed-up                         {baseline / ours:8.1f}x   (goal: 10x); "
          f"largest accuracy difference ours vs Keras: {agree:.5f}")


if __name__ == "__main__":
    main()
