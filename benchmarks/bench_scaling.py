"""How clustering time and memory grow with the network, against scikit-learn, in one run.

For random 784-w-w-w-w-10 nets (w = 256 ... 4096), dense and 90% sparse, at k = 4 and 12, it
prints seconds per clustering for ours and for scikit-learn's SpectralClustering(affinity=
'precomputed', assign_labels='kmeans', eigen_solver='arpack', n_init=25) (skipped where its
time, predicted from the previous width, would pass --budget), their ratio, the eigen path ours
chose, the peak memory of our clustering (traced numpy/Python allocations, in a separate
untimed call), the mean n-cut of each, and the log-log slope of our time against the number of
edges from width 512 up. With --shuffles N it then times an N-shuffle `layer` test of a 90%-
sparse 2048-wide net at k = 4 on --jobs workers, after timing 12 of its shuffles in one process
against a baseline of the same shuffles drawn by full Fisher-Yates shuffles of every kernel.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scaling.py [--widths 256 512 1024 2048 4096]
        [--graphs 2] [--budget 60] [--shuffles 320] [--jobs 2]

Everything runs with one BLAS thread (as the shuffle workers do).
"""

from __future__ import annotations

import argparse
import tracemalloc

import graph_bench
import numpy as np
from graph_bench import timed
from threadpoolctl import threadpool_limits

from nn_clustering.core.graph import mlp_graph
from nn_clustering.core.ncut import ncut
from nn_clustering.core.spectral import SpectralConfig, choose_solver, cluster_graph


def random_kernels(width: int, sparsity: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Random kernels of a 784-w-w-w-w-10 net (:func:`graph_bench.random_kernels`)."""
    return graph_bench.random_kernels((784, width, width, width, width, 10), sparsity, rng)


def peak_memory(fn) -> float:
    """Peak traced allocation of ``fn()`` in MB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--graphs", type=int, default=2, help="random graphs per setting")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="skip scikit-learn where one clustering is predicted to take longer (s)")
    parser.add_argument("--shuffles", type=int, default=0, help="N-shuffle test of a 2048-wide sparse net")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    with threadpool_limits(limits=1):
        warm = mlp_graph(random_kernels(256, 0.9, np.random.default_rng(0)))
        cluster_graph(warm, SpectralConfig(4))
        graph_bench.reference(4, 0).fit(warm.without_isolated()[0])
        print(f"{'graphs':>10} {'width':>5} {'k':>3} {'nodes':>6} {'edges':>10} {'path':>6} {'ours s':>8} "
              f"{'sklearn s':>9} {'speed-up':>8} {'peak MB':>8} {'ours n-cut':>10} {'sklearn':>9} {'ratio':>7}")
        for sparsity, name in ((0.0, "dense"), (0.9, "90% sparse")):
            for k in (4, 12):
                times, edges_of, last_ref = [], [], None
                for width in args.widths:
                    rng = np.random.default_rng(width)
                    graphs = [mlp_graph(random_kernels(width, sparsity, rng)) for _ in range(args.graphs)]
                    edges = int(np.mean([sum(np.count_nonzero(b) for b in g.blocks) for g in graphs]))
                    run_ref = last_ref is None or last_ref * 8 <= args.budget
                    ours_t, ref_t, ours_n, ref_n = [], [], [], []
                    for i, graph in enumerate(graphs):
                        result, t = timed(lambda g=graph, i=i, k=k: cluster_graph(g, SpectralConfig(k), seed=i))
                        ours_t.append(t)
                        ours_n.append(result.ncut)
                        if run_ref:
                            adjacency, _ = graph.without_isolated()
                            labels, t = timed(lambda a=adjacency, i=i, k=k: graph_bench.reference(k, i).fit(a).labels_)
                            ref_t.append(t)
                            ref_n.append(ncut(adjacency, labels))
                    peak = peak_memory(lambda g=graphs[0], k=k: cluster_graph(g, SpectralConfig(k), seed=0))
                    mean_t = float(np.mean(ours_t))
                    times.append(mean_t)
                    edges_of.append(edges)
                    last_ref = float(np.mean(ref_t)) if ref_t else None
                    ref_cols = (f"{last_ref:9.2f} {last_ref / mean_t:7.1f}x" if ref_t else f"{'skipped':>9} {'':>8}")
                    ref_ncut = f"{np.mean(ref_n):9.4f} {np.mean(ours_n) / np.mean(ref_n):7.4f}" if ref_n else f"{'':>9} {'':>7}"
                    print(f"{name:>10} {width:5d} {k:3d} {graphs[0].n_nodes:6d} {edges:10,d} "
                          f"{choose_solver(graphs[0]):>6} {mean_t:8.3f} {ref_cols} {peak:8.0f} "
                          f"{np.mean(ours_n):10.4f} {ref_ncut}", flush=True)
                    if not ref_t:
                        last_ref = float("inf")
                fit = [(np.log(e), np.log(t)) for w, e, t in zip(args.widths, edges_of, times, strict=True) if w >= 512]
                if len(fit) >= 2:
                    slope = np.polyfit(*zip(*fit, strict=True), 1)[0]
                    print(f"{name:>10} k = {k}: our time grows like edges^{slope:.2f} from width 512 to "
                          f"{args.widths[-1]}", flush=True)

    if args.shuffles:
        kernels = random_kernels(2048, 0.9, np.random.default_rng(7))
        graph_bench.report_permutation_ratio(kernels, 12, "90%-sparse 2048-wide net")
        graph_bench.report_shuffle_test(kernels, args.shuffles, args.jobs, "90%-sparse 2048-wide net")


if __name__ == "__main__":
    main()
