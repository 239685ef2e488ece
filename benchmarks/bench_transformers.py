"""Weight graphs of transformers at the published sizes, with random weights: GPT-2 small (12
blocks, 768 wide, 12 heads, MLP 3072) and Pythia-70M (6 blocks, 512 wide, 8 heads, MLP 2048).

Each shape is written as a Hugging Face checkpoint folder (config.json and model.safetensors,
float32, the token embedding included as a real checkpoint has it; seed 0). In a fresh process
per model the folder is read, turned into its graph (method.md §3.5: the residual stream, the
value units and the MLP units of every block) and clustered at k = 12 with one BLAS thread; it
prints the nodes, edges, seconds of each step and the peak resident memory. ``--shuffles N``
adds an N-shuffle ``layer`` test on ``--jobs`` local workers (or ``--scheduler local``, a dask
LocalCluster). ``--baseline`` also runs, in the same process, SciPy's ARPACK on the same
normalised adjacency without the project's tuning (``eigsh`` for the k largest eigenvalues,
default tolerance), the ratio printed beside.

``--onnx-dir DIR`` reads instead the checkpoint folders and ONNX exports that
``export_transformer_models.py`` wrote (the same random model both ways), measures each, and
checks that each export gives its folder's graph.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_transformers.py [--models gpt2 pythia-70m]
        [--shuffles 100 --jobs 2] [--baseline] [--onnx-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from graph_bench import peak_rss_gb, timed

#: (model_type, d_model, blocks, heads, MLP width, vocabulary)
SHAPES = {"gpt2": ("gpt2", 768, 12, 12, 3072, 50257), "pythia-70m": ("gpt_neox", 512, 6, 8, 2048, 50304)}


def write_checkpoint(name: str, folder: Path) -> Path:
    """A random checkpoint folder of the shape ``name``."""
    from safetensors.numpy import save_file

    family, d, layers, heads, d_mlp, vocab = SHAPES[name]
    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    tensors, config = {}, {"model_type": family}
    if family == "gpt2":
        config |= {"n_embd": d, "n_layer": layers, "n_head": heads, "n_inner": d_mlp, "vocab_size": vocab}
        tensors["transformer.wte.weight"] = w(vocab, d)
        for i in range(layers):
            h = f"transformer.h.{i}"
            tensors |= {f"{h}.ln_1.weight": np.ones(d, np.float32), f"{h}.ln_2.weight": np.ones(d, np.float32),
                        f"{h}.attn.c_attn.weight": w(d, 3 * d), f"{h}.attn.c_proj.weight": w(d, d),
                        f"{h}.mlp.c_fc.weight": w(d, d_mlp), f"{h}.mlp.c_proj.weight": w(d_mlp, d)}
    else:
        config |= {"hidden_size": d, "num_hidden_layers": layers, "num_attention_heads": heads,
                   "intermediate_size": d_mlp, "vocab_size": vocab}
        tensors["gpt_neox.embed_in.weight"] = w(vocab, d)
        for i in range(layers):
            h = f"gpt_neox.layers.{i}"
            tensors |= {f"{h}.input_layernorm.weight": np.ones(d, np.float32),
                        f"{h}.post_attention_layernorm.weight": np.ones(d, np.float32),
                        f"{h}.attention.query_key_value.weight": w(3 * d, d), f"{h}.attention.dense.weight": w(d, d),
                        f"{h}.mlp.dense_h_to_4h.weight": w(d_mlp, d), f"{h}.mlp.dense_4h_to_h.weight": w(d, d_mlp)}
    out = folder / name
    out.mkdir()
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config))
    return out


def arpack_baseline(graph, k: int) -> float:
    """Seconds SciPy's ARPACK takes for the k largest eigenpairs of the normalised adjacency."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    adjacency, _ = graph.without_isolated()
    d = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = sp.diags(1 / np.sqrt(d))
    normalised = scale @ adjacency @ scale
    _, seconds = timed(lambda: eigsh(normalised, k=k, which="LA"))
    return seconds


def measure(path: str, k: int, n_shuffles: int, n_jobs: int, scheduler: str | None, baseline: bool) -> dict:
    """Read, build, cluster (and shuffle-test) one checkpoint folder (in its own process)."""
    from threadpoolctl import threadpool_limits

    from nn_clustering.core.graph import graph_inputs
    from nn_clustering.core.shuffle import ShuffleConfig, shuffle_test
    from nn_clustering.core.spectral import SpectralConfig, cluster_graph
    from nn_clustering.formats.loader import load_weights

    weights, t_read = timed(lambda: load_weights(path))
    kernels, builder = graph_inputs(weights)
    out = {"read_s": t_read}
    with threadpool_limits(limits=1):
        graph, out["graph_s"] = timed(lambda: builder(kernels))
        out |= {"nodes": graph.n_nodes, "edges": int(graph.adjacency.nnz // 2)}
        clustering, out["cluster_s"] = timed(lambda: cluster_graph(graph, SpectralConfig(k), seed=0))
        out["ncut"] = clustering.ncut
        out["rss_gb"] = peak_rss_gb()
        if baseline:
            out["arpack_s"] = arpack_baseline(graph, k)
    if n_shuffles:
        config = ShuffleConfig(n_shuffles=n_shuffles, method="layer", random_state=1, n_jobs=n_jobs,
                               scheduler=scheduler)
        result, out["shuffle_s"] = timed(lambda: shuffle_test(kernels, SpectralConfig(k), config, builder))
        out |= {"shuffled_mean": result.stats.mean, "z": result.stats.z,
                "rss_shuffle_gb": peak_rss_gb()}
    return out


def compare(folder: str, export: str) -> dict:
    """Whether a checkpoint folder and its ONNX export give one graph: the same groups, and the
    largest difference of their edge weights relative to the largest weight."""
    from nn_clustering.core.graph import graph_inputs
    from nn_clustering.formats.loader import load_weights

    graphs = []
    for path in (folder, export):
        kernels, builder = graph_inputs(load_weights(path))
        graphs.append(builder(kernels))
    a, b = (g.adjacency for g in graphs)
    same = graphs[0].layer_sizes == graphs[1].layer_sizes and a.shape == b.shape
    return {"same_groups": same, "max_rel_diff": float(abs(a - b).max() / a.max()) if same else None}


def run_one(args, path: Path, extra: list[str]) -> dict | None:
    """``--one PATH`` (or another mode) in a fresh process; its JSON line, or None if it failed."""
    command = [sys.executable, __file__, "--k", str(args.k), "--shuffles", str(args.shuffles), "--jobs",
               str(args.jobs), *extra]
    command += ["--scheduler", args.scheduler] if args.scheduler else []
    command += ["--baseline"] if args.baseline else []
    run = subprocess.run(command, text=True, stdout=subprocess.PIPE, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if run.returncode:
        print(f"{path}: failed (exit {run.returncode})")
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])


def report(name: str, r: dict, args) -> str:
    text = (f"{name}: {r['nodes']:,} nodes, {r['edges']:,} edges; read {r['read_s']:.1f} s, graph "
            f"{r['graph_s']:.1f} s, clustering at k = {args.k} {r['cluster_s']:.1f} s (n-cut {r['ncut']:.4f}), "
            f"peak RSS {r['rss_gb']:.2f} GB")
    if "arpack_s" in r:
        text += f"; plain ARPACK {r['arpack_s']:.1f} s ({r['arpack_s'] / r['cluster_s']:.1f}x)"
    if "shuffle_s" in r:
        text += (f"; {args.shuffles}-shuffle layer test {r['shuffle_s'] / 60:.1f} min on {args.jobs} workers "
                 f"(shuffled mean {r['shuffled_mean']:.4f}, z {r['z']:.2f}), peak RSS {r['rss_shuffle_gb']:.2f} GB")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--shuffles", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--scheduler", default=None)
    parser.add_argument("--baseline", action="store_true", help="also time SciPy's ARPACK on the same graph")
    parser.add_argument("--onnx-dir", type=Path, help="read the folders and ONNX exports that "
                        "export_transformer_models.py wrote there instead of random checkpoints")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.k, args.shuffles, args.jobs, args.scheduler, args.baseline)))
        return
    if args.compare:
        print(json.dumps(compare(*args.compare)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if args.onnx_dir is None:
                paths = [write_checkpoint(name, Path(tmp))]
            else:
                paths = [args.onnx_dir / name, *sorted(args.onnx_dir.glob(f"{name}.*.onnx"))]
            for path in paths:
                r = run_one(args, path, ["--one", str(path)])
                if r is not None:
                    print(report(path.name if args.onnx_dir else name, r, args), flush=True)
            for export in paths[1:]:
                r = run_one(args, export, ["--compare", str(paths[0]), str(export)])
                if r is not None:
                    print(f"{export.name} against {paths[0].name}: same groups {r['same_groups']}, largest edge "
                          f"difference {r['max_rel_diff']:.1e} of the largest edge", flush=True)


if __name__ == "__main__":
    main()
