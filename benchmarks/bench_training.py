"""Training-loop overhead and throughput, TensorFlow and JAX, measured in one run.

For each backend (a subprocess with KERAS_BACKEND set) it times epochs of the MNIST MLP
(784-256x4-10, batch 128) with a bare ``model.fit`` (no callbacks) and with our pruning stage
(mask constraint + MagnitudePruning callback, the paper's 20-epoch schedule), each after one
warm-up epoch, alternating one epoch of each so machine drift hits both alike, and prints the
median seconds per epoch, the overhead (ratio of the medians; ratio of the fastest epochs, since
noise on a shared machine only ever adds time; and the ratios of single alternating pairs:
their median, and their range, which shows how noisy the machine was) and the achieved
GFLOP/s (6 x multiply-adds per sample: forward + backward).

    .venv/bin/python benchmarks/bench_training.py [--epochs 12]

Uses datasets/mnist.npz when present, else random data of the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, numpy as np, keras
sys.path.insert(0, sys.argv[2])
from mlp_bench import BATCH, fitted, training_data
epochs = int(sys.argv[1])
x, y = training_data()

def epoch(model, callbacks):
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start

runs = {False: fitted(False, x, y), True: fitted(True, x, y)}
times = {"bare": [], "ours": []}
for _ in range(epochs):  # alternate, so drifts of the machine hit both alike
    for pruned in (False, True):
        times["ours" if pruned else "bare"].append(epoch(*runs[pruned]))
bare, ours = float(np.median(times["bare"])), float(np.median(times["ours"]))
macs = 784 * 256 + 3 * 256 * 256 + 256 * 10
print(json.dumps({"backend": keras.backend.backend(), "bare": bare, "ours": ours, "times": times,
                  "gflops": 6 * macs * len(x) / bare / 1e9}))
"""


def pair_summary(times: dict[str, list[float]]) -> str:
    """The median, smallest and largest overhead of single alternating pairs of epochs, as
    '+m% (+a% to +b%)'."""
    ratios = [o / b for b, o in zip(times["bare"], times["ours"], strict=True)]
    mid, low, high = (100 * (r - 1) for r in (statistics.median(ratios), min(ratios), max(ratios)))
    return f"{mid:+.1f}% ({low:+.0f}% to {high:+.0f}%)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="timed epochs per variant (median)")
    args = parser.parse_args()
    print(f"{'backend':>11} {'bare fit s/epoch':>17} {'ours s/epoch':>13} {'overhead':>9} {'fastest':>8} "
          f"{'pairs: median (range)':>24} {'GFLOP/s':>8}")
    for backend in ("tensorflow", "jax"):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.epochs), str(Path(__file__).parent)], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{backend:>11} failed: {out.stderr.strip().splitlines()[-1] if out.stderr else '?'}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        fastest = min(r["times"]["ours"]) / min(r["times"]["bare"])
        print(f"{backend:>11} {r['bare']:17.2f} {r['ours']:13.2f} {100 * (r['ours'] / r['bare'] - 1):8.1f}% "
              f"{100 * (fastest - 1):7.1f}% {pair_summary(r['times']):>24} {r['gflops']:8.1f}")


if __name__ == "__main__":
    main()
