"""Cost of one pruning mask update, per kernel of the MNIST MLP: one ``top_k`` over the whole
kernel (the baseline, what the pruning used before) against the two-stage block selection
(``nn_clustering.training.pruning.smallest_indices``), in one run, on the backend of KERAS_BACKEND.

For each kernel it draws weights and a 70%-kept mask, checks that both selections return the
same indices, then times each inside one compiled loop of ``--reps`` updates (so that dispatch
does not count) and prints milliseconds per update and the speed-up.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_mask_update.py [--reps 200]
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from keras import ops

from nn_clustering.training.pruning import PruningSchedule, smallest_indices

SHAPES = [(784, 256), (256, 256), (256, 256), (256, 256), (256, 10)]


def one_top_k(magnitude, bound):
    """The baseline: the ``bound`` smallest entries by one ``top_k`` over all of them."""
    return ops.top_k(-magnitude, k=bound)[1]


def compiled_loop(select, bound: int, reps: int):
    """A compiled function running ``reps`` selections, each on slightly different input."""
    def body(i, total):
        magnitude, acc = total
        chosen = select(magnitude * (1.0 + ops.cast(i, "float32") * 1e-7), bound)
        return magnitude, acc + ops.cast(chosen[0], "float32")

    def run(magnitude):
        return ops.fori_loop(0, reps, body, (magnitude, ops.convert_to_tensor(0.0)))[1]

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(run)
    import tensorflow as tf

    return tf.function(run)


def seconds_per_update(select, magnitude, bound: int, reps: int) -> float:
    """Best of three timed runs of the compiled loop, per selection."""
    loop = compiled_loop(select, bound, reps)
    ops.convert_to_numpy(loop(magnitude))  # compile
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        ops.convert_to_numpy(loop(magnitude))
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="selections per timed loop")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    schedule = PruningSchedule(total_steps=469 * 20)  # the paper's pruning stage
    print(f"backend {keras.backend.backend()}")
    print(f"{'kernel':>10} {'drop bound':>10} {'one top_k ms':>13} {'two-stage ms':>13} {'speed-up':>9}")
    totals = [0.0, 0.0]
    for shape in SHAPES:
        size = int(np.prod(shape))
        keeps = schedule.keep_counts(size)
        bound = max(1, int(np.max(keeps[:-1] - keeps[1:])))  # what MaskConstraint uses
        values = np.abs(rng.standard_normal(size)).astype("float32")
        values[rng.random(size) >= 0.7] = np.inf  # masked entries
        magnitude = ops.convert_to_tensor(values)
        same = np.array_equal(ops.convert_to_numpy(one_top_k(magnitude, bound)),
                              ops.convert_to_numpy(smallest_indices(magnitude, bound)))
        if not same:
            raise SystemExit(f"selections differ on kernel {shape}")
        times = [seconds_per_update(f, magnitude, bound, args.reps) for f in (one_top_k, smallest_indices)]
        totals = [t + s for t, s in zip(totals, times, strict=True)]
        print(f"{'x'.join(map(str, shape)):>10} {bound:>10} {1e3 * times[0]:13.3f} {1e3 * times[1]:13.3f} "
              f"{times[0] / times[1]:8.1f}x")
    print(f"{'all':>10} {'':>10} {1e3 * totals[0]:13.3f} {1e3 * totals[1]:13.3f} {totals[0] / totals[1]:8.1f}x"
          "  (identical indices)")


if __name__ == "__main__":
    main()
