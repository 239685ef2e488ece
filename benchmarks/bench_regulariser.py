"""The clusterability regulariser's cost per training step at the successor paper's setting:
the 49-64x3-10 MLP on 7 x 7 images, batch 128, Adam, penalty strength 0.1 on the 3 smallest
non-trivial eigenvalues (method.md §2.6).

One epoch of 60,000 random 7 x 7 images (the cost does not depend on the pixels) is trained
without the regulariser, with it on every batch (the successor's setting), and on every 10th
batch, in turn, ``--rounds`` times, after one warm-up epoch each, on the backend Keras is set
to (``KERAS_BACKEND``); the medians and their ratios to the plain epoch are printed, with how
many of the penalised steps needed a full SVD (the others follow the singular pairs by subspace
iterations, training/regulariser.py).

    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_regulariser.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from nn_clustering.training.architectures import build_mlp
from nn_clustering.training.regulariser import ClusterabilityRegularised


def model_of(every: int | None) -> keras.Model:
    keras.utils.set_random_seed(0)
    plain = build_mlp(hidden=(64, 64, 64), n_inputs=49)
    model = plain if every is None else ClusterabilityRegularised([keras.Input((49,)), *plain.layers], 0.1, 3, every)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(60000, 49)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, 60000), 10)
    settings = {"plain": None, "every batch": 1, "every 10th batch": 10}
    models = {name: model_of(every) for name, every in settings.items()}
    for model in models.values():
        model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=128, epochs=1, verbose=0)
            seconds[name].append(time.perf_counter() - start)
    base = float(np.median(seconds["plain"]))
    print(f"backend {keras.backend.backend()}, {args.rounds} rounds of one epoch (469 steps):")
    for name, values in seconds.items():
        median = float(np.median(values))
        model = models[name]
        counts = ""
        if isinstance(model, ClusterabilityRegularised):
            steps, refreshes = (int(keras.ops.convert_to_numpy(v.value)) for v in (model.penalty_step,
                                                                                 model.penalty_refreshes))
            counts = f", full SVDs {refreshes} of {-(-steps // model.every)} penalised steps"
        print(f"  {name:17s} {median:6.2f} s/epoch ({1000 * median / 469:.2f} ms/step), {median / base:.2f}x plain"
              f"{counts}")


if __name__ == "__main__":
    main()
