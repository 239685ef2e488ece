"""Channel graphs of the architectures researchers use: VGG16, ResNet50, InceptionV3, DenseNet121.

Each model is built by ``keras.applications`` with random weights (``weights=None``: no
pretrained weights can be downloaded here; seed 0), saved as ``.keras`` and then, in a fresh
process per model, read from that file, turned into its channel graph and clustered at k = 12
with one BLAS thread; a ``--shuffles``-shuffle ``layer`` test follows. It prints the nodes, edges
and residual sums of each graph, the seconds of each step, the process's peak resident memory,
and, as the baseline measured in the same run, scikit-learn's SpectralClustering on the graphs of
at most ``--sklearn-edges`` edges (VGG16 by default; its shift-invert Lanczos factorises the
Laplacian, whose fill-in for ResNet50's 40M edges does not fit this machine).
A model the graph builder refuses (DenseNet121: batch norms before the activation) prints its
one-line reason.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_architectures.py [--models VGG16 ResNet50 DenseNet121]
        [--shuffles 10] [--jobs 1] [--sklearn-edges 5000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

MODELS = ("VGG16", "ResNet50", "InceptionV3", "DenseNet121")


def build(name: str, folder: Path) -> tuple[Path, int]:
    """``keras.applications.<name>(weights=None)`` with seed 0, saved as .keras; and its number
    of ``Add`` layers."""
    import keras

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None)
    path = folder / f"{name}.keras"
    model.save(path)
    return path, sum(type(layer).__name__ == "Add" for layer in model.layers)


def measure(path: str, k: int, n_shuffles: int, n_jobs: int, sklearn_edges: int) -> dict:
    """Read, build, cluster and shuffle-test one saved model (run in its own process)."""
    import graph_bench
    from graph_bench import timed
    from threadpoolctl import threadpool_limits

    from nn_clustering.core.graph import graph_inputs
    from nn_clustering.core.shuffle import ShuffleConfig, shuffle_test
    from nn_clustering.core.spectral import SpectralConfig, cluster_graph
    from nn_clustering.errors import NnClusteringError
    from nn_clustering.formats.loader import load_weights

    try:
        weights, t_read = timed(lambda: load_weights(path))
    except NnClusteringError as exc:
        return {"refused": str(exc)}
    kernels, builder = graph_inputs(weights)
    out = {"read_s": t_read}
    with threadpool_limits(limits=1):
        graph, out["graph_s"] = timed(lambda: builder(kernels))
        active = int(graph.active.sum())
        out |= {"nodes": graph.n_nodes, "edges": int(graph.adjacency.nnz // 2), "dag": weights.wiring is not None}
        clustering, out["cluster_s"] = timed(lambda: cluster_graph(graph, SpectralConfig(k), seed=0))
        out["ncut"] = clustering.ncut
        out["rss_cluster_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        # scikit-learn factorises the Laplacian (shift-invert ARPACK): beyond a few million edges
        # its fill-in does not fit here, so it runs only on graphs up to --sklearn-edges
        if out["edges"] <= sklearn_edges and active > 0:
            adjacency, _ = graph.without_isolated()
            labels, out["sklearn_s"] = timed(lambda: graph_bench.reference(k, 0).fit(adjacency).labels_)
            from nn_clustering.core.ncut import ncut

            out["sklearn_ncut"] = ncut(adjacency, labels)
    if n_shuffles:
        config = ShuffleConfig(n_shuffles=n_shuffles, method="layer", random_state=1, n_jobs=n_jobs)
        result, out["shuffle_s"] = timed(
            lambda: shuffle_test(kernels, SpectralConfig(k), config, builder, progress=False))
        out |= {"shuffled_mean": result.stats.mean, "z": result.stats.z}
    out["rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--shuffles", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--sklearn-edges", type=int, default=5_000_000,
                        help="run scikit-learn only on graphs with at most this many edges")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.k, args.shuffles, args.jobs, args.sklearn_edges)))
        return
    print(f"k = {args.k}, {args.shuffles} layer shuffles on {args.jobs} worker(s), one BLAS thread\n")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            path, n_add = build(name, Path(tmp))
            run = subprocess.run(
                [sys.executable, __file__, "--one", str(path), "--k", str(args.k), "--shuffles", str(args.shuffles),
                 "--jobs", str(args.jobs), "--sklearn-edges", str(args.sklearn_edges)],
                capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
            )
            if run.returncode:
                print(f"{name}: failed\n{run.stderr[-2000:]}")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            if "refused" in r:
                print(f"{name}: refused: {r['refused']}\n", flush=True)
                continue
            line = (f"{name}: {r['nodes']:,} nodes, {r['edges']:,} edges, {n_add} residual sums "
                    f"({'DAG' if r['dag'] else 'chain'}); read {r['read_s']:.1f} s, graph {r['graph_s']:.1f} s, "
                    f"clustering {r['cluster_s']:.1f} s (n-cut {r['ncut']:.4f}), peak RSS after clustering "
                    f"{r['rss_cluster_gb']:.2f} GB")
            if "sklearn_s" in r:
                line += (f"; scikit-learn {r['sklearn_s']:.1f} s (n-cut {r['sklearn_ncut']:.4f}): "
                         f"{r['sklearn_s'] / r['cluster_s']:.1f}x")
            if "shuffle_s" in r:
                line += (f"; {args.shuffles}-shuffle test {r['shuffle_s']:.0f} s (shuffled mean "
                         f"{r['shuffled_mean']:.4f}, z {r['z']:.2f}), peak RSS {r['rss_gb']:.2f} GB")
            print(line + "\n", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
