"""Activation graphs at the sizes of method.md §3.6's targets.

1. ``mlp``: the activation graph of a 784-256x4-10 ReLU MLP (Glorot-uniform random weights, seed
   0) over 10,000 images (the MNIST test split when ``datasets/mnist.npz`` exists, else uniform
   noise), with one BLAS thread: ``build_activation_graph`` for each measure, fastest of 3, against
   the one-pass baseline in the same run (every activation held in memory, then
   ``np.corrcoef``). Target: at most 2 s.
2. ``gpt2``: the co-activation graphs of every MLP layer of a GPT-2-small-shaped transformer (12
   blocks, d_model 768, 12 heads, MLP 3072, vocabulary 50257; random weights, written as ONNX by
   ``gpt2_onnx.py``) over 10,000 tokens (40 random sequences of 250), run by onnxruntime on the
   machine's cores, with the progress bar; prints the seconds and the peak resident memory
   (target: at most 5 minutes on 2 cores), then the seconds to partition every layer's graph by
   spectral clustering (k = 12) and by Leiden.

    .venv/bin/python benchmarks/bench_activations.py [--parts mlp gpt2] [--tokens 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from graph_bench import peak_rss_gb, random_kernels, timed
from threadpoolctl import threadpool_limits

from nn_clustering import NetworkWeights
from nn_clustering.core.activations import correlation_of
from nn_clustering.core.partition import layer_partitions
from nn_clustering.formats.activations import build_activation_graph, build_layer_graphs

ROOT = Path(__file__).resolve().parents[1]


def mnist_or_noise(n: int) -> tuple[np.ndarray, str]:
    """The MNIST test images as (n, 784) float32 in [0, 1], or uniform noise without them."""
    path = ROOT / "datasets" / "mnist.npz"
    if path.exists():
        from nn_clustering.data import load_dataset

        return load_dataset("mnist", path.parent).x_test[:n].reshape(n, -1), "MNIST test images"
    return np.random.default_rng(0).random((n, 784), dtype=np.float32), "uniform noise"


def bench_mlp(n: int) -> None:
    rng = np.random.default_rng(0)
    kernels = [k.astype(np.float32) for k in random_kernels((784, 256, 256, 256, 256, 10), 0.0, rng)]
    biases = [np.zeros(k.shape[1], np.float32) for k in kernels]
    weights = NetworkWeights.from_arrays(kernels, biases, source="random 784-256x4-10")
    x, what = mnist_or_noise(n)
    print(f"MLP 784-256x4-10, {n} inputs ({what}), one BLAS thread, fastest of 3")

    def baseline() -> np.ndarray:  # every activation in memory, then the one-pass correlation
        h, acts = x, []
        for k, b in zip(kernels[:-1], biases[:-1], strict=True):
            h = np.maximum(h @ k + b, 0)
            acts.append(h)
        return correlation_of(np.concatenate(acts, axis=1)) ** 2

    with threadpool_limits(limits=1):
        reference = min(timed(baseline)[1] for _ in range(3))
        expected = baseline()
        for measure in ("pearson", "spearman", "coactivation"):
            runs = [timed(lambda m=measure: build_activation_graph(weights, x, m)) for _ in range(3)]
            seconds = min(t for _, t in runs)
            graph = runs[0][0]
            check = ""
            if measure == "pearson":
                check = f", max |difference| from the baseline {np.abs(graph.weights - expected).max():.1e}"
            print(f"  {measure:12s} {seconds:6.2f} s  ({seconds / reference:.2f}x the one-pass Pearson baseline "
                  f"{reference:.2f} s; target <= 2 s){check}")


def bench_gpt2(n_tokens: int, length: int = 250) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from gpt2_onnx import write_gpt2

    with tempfile.TemporaryDirectory() as folder:
        path, start = Path(folder) / "gpt2.onnx", time.perf_counter()
        write_gpt2(path)
        print(f"GPT-2 small shape (random weights) written as ONNX: {path.stat().st_size / 2**20:.0f} MB in "
              f"{time.perf_counter() - start:.1f} s")
        ids = np.random.default_rng(0).integers(0, 50257, size=(int(np.ceil(n_tokens / length)), length))
        tokens = Path(folder) / "tokens.npz"
        np.savez(tokens, x=ids)
        graphs, seconds = timed(lambda: build_layer_graphs(path, str(tokens), "coactivation", progress=True,
                                                           batch_size=4))
        dead = sum(int((~g.active).sum()) for g in graphs)
        print(f"  co-activation graphs of {len(graphs)} MLP layers x {graphs[0].n_nodes} units over {ids.size} tokens: "
              f"{seconds:.1f} s (target <= 300 s), {dead} dead units, peak memory {peak_rss_gb():.1f} GB")
        for partitioner in ("spectral", "leiden"):
            rows, seconds = timed(lambda p=partitioner: layer_partitions(graphs, p, n_clusters=12))
            print(f"  {partitioner} partition of every layer: {seconds:.1f} s "
                  f"({', '.join(str(r.n_clusters) for r, _ in rows)} clusters)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=["mlp", "gpt2"], default=["mlp", "gpt2"])
    parser.add_argument("--examples", type=int, default=10_000, help="MLP inputs (default: 10000)")
    parser.add_argument("--tokens", type=int, default=10_000, help="GPT-2 tokens (default: 10000)")
    args = parser.parse_args()
    if "mlp" in args.parts:
        bench_mlp(args.examples)
    if "gpt2" in args.parts:
        bench_gpt2(args.tokens)


if __name__ == "__main__":
    main()
