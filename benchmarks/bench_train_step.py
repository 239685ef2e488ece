"""Overhead of the pruning stage per compiled train step, JAX backend, bare against ours in one run.

Epoch timings (``bench_training.py``) include ``fit``'s per-epoch work and swing with the
machine; this times the jitted train step itself. It builds the MNIST MLP twice (seed 0): with
a bare compile, and with our pruning stage (``MagnitudePruning`` at the paper's 20-epoch
schedule), fits one epoch of each (compile, first masks), then calls each model's compiled
train function directly on device-resident batches, in chunks of ``--chunk`` steps, the two in
turn for ``--rounds`` rounds, and prints the median milliseconds per step, the overhead (ratio
of the medians) and the median of the ratios of the chunk pairs. Uses the JAX trainer's
internal state API (``_get_jax_state``, ``train_function(state, iterator)``) of Keras 3.15.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_train_step.py [--rounds 100]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from mlp_bench import BATCH, fitted, training_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="chunks of each variant")
    parser.add_argument("--chunk", type=int, default=50, help="train steps per chunk")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        raise SystemExit("bench_train_step.py times the JAX train step: run it with KERAS_BACKEND=jax")
    import jax

    x, y = training_data()
    batches = [(jax.numpy.asarray(x[i:i + BATCH]), jax.numpy.asarray(y[i:i + BATCH]))
               for i in range(0, BATCH * 400, BATCH)]
    runs = {}
    for name, pruned in (("bare", False), ("ours", True)):
        model, _ = fitted(pruned, x, y)
        state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                     optimizer_variables=True, metrics_variables=True)
        runs[name] = [model, state, 0]
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            model, state, position = run
            start = time.perf_counter()
            for i in range(args.chunk):
                _, state = model.train_function(state, iter([batches[(position + i) % len(batches)]]))
            jax.block_until_ready(state)
            times[name].append((time.perf_counter() - start) / args.chunk)
            run[1], run[2] = state, position + args.chunk
    bare, ours = (float(np.median(times[name])) for name in ("bare", "ours"))
    pairs = float(np.median(np.array(times["ours"]) / np.array(times["bare"])))
    print(f"bare {1e3 * bare:.3f} ms/step, ours {1e3 * ours:.3f} ms/step: overhead {100 * (ours / bare - 1):+.1f}% "
          f"(median of chunk pairs {100 * (pairs - 1):+.1f}%; {args.rounds} rounds of {args.chunk} steps)")


if __name__ == "__main__":
    main()
