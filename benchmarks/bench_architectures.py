"""Channel graphs of the architectures researchers use, with random weights: Keras applications
built here and ONNX files exported from PyTorch (torchvision, timm) by
``benchmarks/export_torch_models.py``.

Each Keras model is built by ``keras.applications`` with random weights (``weights=None``: no
pretrained weights can be downloaded here; seed 0) and saved as ``.keras``; each ``.onnx`` file
of ``--onnx-dir`` is read as it is. In a fresh process per model the file is read, turned into
its channel graph and clustered at k = 12 with one BLAS thread; a ``--shuffles``-shuffle
``layer`` test follows (0: none). It prints the nodes, edges and residual sums of each graph,
the seconds of each step, the process's peak resident memory, and, as the baseline measured in
the same run, scikit-learn's SpectralClustering on the graphs of at most ``--sklearn-edges``
edges (its shift-invert Lanczos factorises the Laplacian, whose fill-in for ResNet50's 40M
edges does not fit this machine). A model the graph builder refuses prints its one-line
reason. ``--markdown`` also prints the results as one table for docs.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_architectures.py [--models VGG16 ResNet50 ...]
        [--onnx-dir DIR] [--shuffles 10] [--jobs 1] [--sklearn-edges 5000000] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

MODELS = ("VGG16", "ResNet50", "InceptionV3", "DenseNet121", "MobileNetV2", "EfficientNetB0", "Xception",
          "ConvNeXtTiny", "ResNet50V2")


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
    from graph_bench import peak_rss_gb, timed
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
        out["rss_cluster_gb"] = peak_rss_gb()
        # scikit-learn factorises the Laplacian (shift-invert ARPACK): beyond a few million edges
        # its fill-in does not fit here, so it runs only on graphs up to --sklearn-edges
        if out["edges"] <= sklearn_edges and active > 0:
            adjacency, _ = graph.without_isolated()
            labels, out["sklearn_s"] = timed(lambda: graph_bench.reference(k, 0).fit(adjacency).labels_)
            from nn_clustering.core.ncut import ncut

            out["sklearn_ncut"] = ncut(adjacency, labels)
    out["rss_gb"] = peak_rss_gb()
    if n_shuffles:
        config = ShuffleConfig(n_shuffles=n_shuffles, method="layer", random_state=1, n_jobs=n_jobs)
        result, out["shuffle_s"] = timed(
            lambda: shuffle_test(kernels, SpectralConfig(k), config, builder, progress=False))
        out |= {"shuffled_mean": result.stats.mean, "z": result.stats.z}
    out["rss_gb"] = peak_rss_gb()
    return out


def run_one(path: Path, args: argparse.Namespace) -> dict:
    """:func:`measure` of one saved model in a fresh process (its own peak memory)."""
    run = subprocess.run(
        [sys.executable, __file__, "--one", str(path), "--k", str(args.k), "--shuffles", str(args.shuffles),
         "--jobs", str(args.jobs), "--sklearn-edges", str(args.sklearn_edges)],
        capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    if run.returncode:
        return {"failed": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"}
    return json.loads(run.stdout.strip().splitlines()[-1])


def line(name: str, r: dict, n_add: int | None, shuffles: int) -> str:
    """One model's result as a line of text."""
    if "refused" in r or "failed" in r:
        return f"{name}: {'refused' if 'refused' in r else 'failed'}: {r.get('refused') or r.get('failed')}"
    adds = f"{n_add} residual sums, " if n_add is not None else ""
    text = (f"{name}: {r['nodes']:,} nodes, {r['edges']:,} edges, {adds}{'DAG' if r['dag'] else 'chain'}; "
            f"read {r['read_s']:.1f} s, graph {r['graph_s']:.1f} s, clustering {r['cluster_s']:.1f} s "
            f"(n-cut {r['ncut']:.4f}), peak RSS after clustering {r['rss_cluster_gb']:.2f} GB")
    if "sklearn_s" in r:
        text += (f"; scikit-learn {r['sklearn_s']:.1f} s (n-cut {r['sklearn_ncut']:.4f}): "
                 f"{r['sklearn_s'] / r['cluster_s']:.1f}x")
    if "shuffle_s" in r:
        text += (f"; {shuffles}-shuffle test {r['shuffle_s']:.0f} s (shuffled mean "
                 f"{r['shuffled_mean']:.4f}, z {r['z']:.2f}), peak RSS {r['rss_gb']:.2f} GB")
    return text


def markdown(rows: list[tuple[str, dict]]) -> str:
    """The results as a markdown table: clustered models with their figures, refused ones with
    the reason."""
    out = ["| model | nodes | edges | read + graph + cluster (s) | n-cut (k = 12) | peak memory (GB) |",
           "|---|---|---|---|---|---|"]
    for name, r in rows:
        if "nodes" in r:
            total = r["read_s"] + r["graph_s"] + r["cluster_s"]
            out.append(f"| {name} | {r['nodes']:,} | {r['edges']:,} | {total:.1f} ({r['read_s']:.1f} + "
                       f"{r['graph_s']:.1f} + {r['cluster_s']:.1f}) | {r['ncut']:.4f} | {r['rss_cluster_gb']:.2f} |")
        else:
            reason = (r.get("refused") or r.get("failed", "")).replace("|", "/")
            out.append(f"| {name} | refused: {reason} | | | | |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--onnx-dir", type=Path, default=None, help="also every .onnx file in this folder")
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--shuffles", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--sklearn-edges", type=int, default=5_000_000,
                        help="run scikit-learn only on graphs with at most this many edges")
    parser.add_argument("--markdown", action="store_true", help="also print the results as a markdown table")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.k, args.shuffles, args.jobs, args.sklearn_edges)))
        return
    print(f"k = {args.k}, {args.shuffles} layer shuffles on {args.jobs} worker(s), one BLAS thread\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            path, n_add = build(name, Path(tmp))
            rows.append((f"Keras {name}", run_one(path, args)))
            print(line(rows[-1][0], rows[-1][1], n_add, args.shuffles) + "\n", flush=True)
    for path in sorted(args.onnx_dir.glob("*.onnx")) if args.onnx_dir else []:
        rows.append((path.stem, run_one(path, args)))
        print(line(path.stem, rows[-1][1], None, args.shuffles) + "\n", flush=True)
    if args.markdown:
        print(markdown(rows))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
