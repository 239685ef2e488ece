"""The ``nn-clustering`` command line.

Sub-commands: ``datasets`` (build datasets), ``train`` (make models), ``cluster`` (cluster a
model and run the shuffle test), ``index`` (models/INDEX.json), ``summary`` (what the clustering
results found), ``compare`` (results beside the reference record), ``notebook`` (run an analysis
notebook) and ``s3`` (sync a folder with a bucket). Every user-facing problem is printed as one
``error: ...`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__
from .core.enums import ActivationNull, GraphKind, Measure, Partitioner, ShuffleMethod, SliceNorm
from .core.parameters import validate
from .errors import NnClusteringError, ParameterError, printable


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import ALL_DATASETS, build_all

    names = tuple(args.names) if args.names else ALL_DATASETS
    report = build_all(names, Path(args.out), seed=args.seed, force=args.force)
    print(
        f"datasets: {len(report.built)} built, {len(report.kept)} already present, "
        f"{len(report.skipped)} skipped; manifest in {Path(args.out) / 'MANIFEST'}"
    )
    explicitly_missing = [n for n in args.names if n in report.skipped]
    return 1 if explicitly_missing else 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.max_instances is not None:
        validate({"max_instances": args.max_instances}, {"max_instances": "--instances"})  # before Keras loads
    from .registry import REGISTRY
    from .training.train import train_tags

    tags = args.tags or list(REGISTRY)
    done = train_tags(
        tags, args.profile, Path(args.models_dir), Path(args.data_dir), max_instances=args.max_instances
    )
    total = sum(len(v) for v in done.values())
    print(f"models: {total} instances of {len(done)} tags ready under {args.models_dir}; "
          f"{len(tags) - len(done)} tags skipped")
    return 0


def _cmd_cluster(args: argparse.Namespace) -> int:
    import numpy as np

    from .core.spectral import smallest_cluster
    from .estimators import ShuffleTest
    from .experiments.clustering import tiny_cluster_note
    from .formats.limits import memory_limit_set
    from .storage.files import check_output, write_json_atomic
    from .storage.provenance import code_version, library_versions

    params = validate({name: getattr(args, name) for name in args.spelled}, args.spelled)
    output = check_output(args.output, inputs=(args.path,)) if args.output else None
    stem = None
    if args.composition:
        stem = Path(args.composition)
        for suffix in (".csv", ".png", ".svg"):
            check_output(stem.with_suffix(suffix), inputs=(args.path,), what="--composition")
    bound = memory_limit_set(args.max_model_memory) if args.max_model_memory else contextlib.nullcontext()
    graph_params = _graph_options(args)
    if args.layerwise:
        return _layers(args, params, bound, output, graph_params["data"])
    if args.partitioner != Partitioner.SPECTRAL.value:
        return _community(args, graph_params, bound, output)
    test = ShuffleTest(**params, **graph_params, null=args.null, drop_dead_ends=args.drop_dead_ends,
                       progress=not args.quiet)
    with bound:
        test.fit(args.path)
    weights, graph, stats = test.weights_, test.graph_, test.stats_
    _print_graph(args, weights, graph)
    suggested = _suggest_k(args, graph)
    z = f"z {stats.z:.2f}" if np.isfinite(stats.z) else "z undefined (the shuffled n-cuts are all equal)"
    shuffles = args.null if weights is None else test.method
    print(
        f"n-cut {test.ncut_:.4f} (k = {test.n_clusters}), modularity Q {test.modularity_:.4f}; {shuffles} shuffles "
        f"(N = {stats.n}): mean {stats.mean:.4f}, sd {stats.sd:.4f}, {z}, {stats.verdict()}"
    )
    _print_groups(test)
    note = tiny_cluster_note(smallest_cluster(test.labels_, test.n_clusters), int(np.sum(test.labels_ >= 0)))
    if note:
        print(f"{note.strip()}, under 1% of them: check its nodes (a cluster of a few weakly "
              "attached nodes has nearly all its volume cut and adds about 1 to the n-cut)")
    if stem is not None:
        _write_composition(test, stem)
    if output is not None:
        record = {
            **test.to_dict(),
            **({} if weights is not None else {"graph": args.graph, "data": args.data, "measure": args.measure,
                                               "null": args.null}),
            **({} if suggested is None else {"eigengap_k": suggested}),
            "model": {"path": str(args.path), "kind": weights.kind if weights is not None else None,
                      "sha256": _digests(Path(args.path))},
            "code_version": code_version(),
            "versions": library_versions(),
        }
        write_json_atomic(output, record)
        print(f"wrote {printable(output)}")
    return 0


def _graph_options(args: argparse.Namespace) -> dict:
    """The graph options of ``cluster``, checked together: one error line for a combination that
    does not fit."""
    activations = args.graph == GraphKind.ACTIVATIONS.value
    if activations and args.data is None:
        raise ParameterError("--graph activations needs --data: a dataset name (e.g. mnist) or an .npz of inputs")
    if activations and args.drop_dead_ends:
        raise ParameterError("--drop-dead-ends prunes weight graphs; an activation graph isolates dead units by "
                             "itself: leave the option out")
    if args.layerwise and not activations:
        raise ParameterError("--layerwise partitions activation graphs layer by layer; add --graph activations")
    from .data import activation_inputs

    data = activation_inputs(args.data) if activations else None
    return {"graph": args.graph, "data": data, "measure": args.measure}


def _print_graph(args: argparse.Namespace, weights, graph) -> None:
    """The first line of ``cluster``'s report: the network and its graph."""
    from .experiments.composition import head_dims

    if weights is None:
        what = f"{args.measure} activation graph over {args.data}"
        print(f"{printable(args.path)}: {what}, {graph.n_nodes} units in layers {list(graph.layer_sizes)}, "
              f"{int((~graph.active).sum())} dead")
        return
    shape = "residual/concatenating " if weights.wiring is not None else ""
    kind = "transformer" if head_dims(weights) else weights.kind.upper()
    print(f"{printable(args.path)}: {'' if kind == 'transformer' else shape}{kind}, {graph.n_nodes} nodes in "
          f"layers {list(graph.layer_sizes)}")
    if args.drop_dead_ends:
        from .core.graph import graph_inputs

        kernels, builder = graph_inputs(weights, args.norm)
        print(f"dropped {int(builder(kernels).active.sum() - graph.active.sum())} nodes on no input-to-output path")


def _suggest_k(args: argparse.Namespace, graph) -> int | None:
    """``--suggest-k``: print the eigengap heuristic's k for the graph (method.md §4.1)."""
    if not args.suggest_k:
        return None
    from .core.modularity import eigengap_k

    adjacency, _ = graph.without_isolated(dense=False)
    k = eigengap_k(adjacency)
    print(f"eigengap: the normalised Laplacian's largest gap among its 21 smallest eigenvalues suggests k = {k}")
    return k


def _community(args: argparse.Namespace, graph_params: dict, bound, output: Path | None) -> int:
    """``cluster --partitioner leiden|louvain``: the partition of highest modularity, no shuffles."""
    from .estimators import CommunityPartition
    from .storage.files import write_json_atomic
    from .storage.provenance import code_version, library_versions

    model = CommunityPartition(partitioner=args.partitioner, resolution=args.resolution, norm=args.norm,
                               drop_dead_ends=args.drop_dead_ends, random_state=args.random_state, **graph_params)
    with bound:
        model.fit(args.path)
    _print_graph(args, model.weights_, model.graph_)
    suggested = _suggest_k(args, model.graph_)
    print(f"{args.partitioner} (resolution {args.resolution:g}): {model.n_clusters_} clusters, modularity Q "
          f"{model.modularity_:.4f}, n-cut {model.ncut_:.4f}")
    _print_groups(model)
    if output is not None:
        record = {
            "partitioner": args.partitioner, "resolution": args.resolution, "n_clusters": model.n_clusters_,
            "modularity": model.modularity_, "ncut": model.ncut_, "random_state": args.random_state,
            "graph": args.graph, "data": args.data, "measure": args.measure,
            **({} if suggested is None else {"eigengap_k": suggested}),
            "layer_sizes": list(model.graph_.layer_sizes),
            "layers": [{"name": name, "size": int(len(labels)), "labels": labels.tolist()}
                       for name, labels in model.labels_by_name_.items()],
            "model": {"path": str(args.path), "sha256": _digests(Path(args.path))},
            "code_version": code_version(), "versions": library_versions(),
        }
        write_json_atomic(output, record)
        print(f"wrote {printable(output)}")
    return 0


def _layers(args: argparse.Namespace, params: dict, bound, output: Path | None, data) -> int:
    """``cluster --graph activations --layerwise``: each layer's activation graph partitioned on
    its own (spectral into --k clusters, or leiden / louvain), one line per layer."""
    from .core.partition import layer_partitions
    from .formats.activations import build_layer_graphs
    from .storage.files import write_json_atomic
    from .storage.provenance import code_version, library_versions

    with bound:
        graphs = build_layer_graphs(args.path, data, args.measure, progress=not args.quiet)
    results = layer_partitions(graphs, args.partitioner, params["n_clusters"], args.resolution, params["random_state"])
    print(f"{printable(args.path)}: {args.measure} activation graphs over {args.data}, layer by layer, "
          f"{args.partitioner}")
    for row, _ in results:
        print(f"  {printable(row.layer)}: {row.units} units ({row.dead} dead), {row.n_clusters} clusters, n-cut "
              f"{row.ncut:.4f}, modularity Q {row.modularity:.4f}")
    if output is not None:
        record = {
            "layers": [{**row.as_dict(), "labels": labels.tolist()} for row, labels in results],
            "data": args.data, "model": {"path": str(args.path), "sha256": _digests(Path(args.path))},
            "code_version": code_version(), "versions": library_versions(),
        }
        write_json_atomic(output, record)
        print(f"wrote {printable(output)}")
    return 0


def _print_groups(test) -> None:
    """The cluster sizes of every group, and for a transformer what each cluster holds (MLP
    units, value dimensions by head, stream units)."""
    import numpy as np

    from .experiments.composition import cluster_composition, composition_lines, head_dims

    for i, (name, labels) in enumerate(zip(test.layer_names_, test.labels_by_layer_, strict=True)):
        sizes = np.bincount(labels[labels >= 0], minlength=int(test.labels_.max()) + 1).tolist()
        print(f"  layer {i} {printable(name)}: cluster sizes {sizes}")
    if test.weights_ is not None and head_dims(test.weights_):
        print("what each cluster holds (units / of the part):")
        for line in composition_lines(cluster_composition(test.weights_, test.labels_by_layer_)):
            print(printable(line))


def _write_composition(test, stem: Path) -> None:
    """``--composition``: the composition table as CSV and its heatmap, for a transformer."""
    from .experiments.composition import (
        CompositionRow,
        cluster_composition,
        composition_figure,
        head_dims,
    )
    from .storage.tables import frame, save_figure, write_csv

    if test.weights_ is None or not head_dims(test.weights_):
        raise NnClusteringError("--composition describes a transformer's heads and MLPs; this network is not a "
                                "transformer: leave the option out")
    rows = cluster_composition(test.weights_, test.labels_by_layer_)
    written = [write_csv(frame(rows, CompositionRow), stem.with_suffix(".csv"))]
    written += save_figure(composition_figure(test.weights_, test.labels_by_layer_, test.n_clusters,
                                              f"{Path(test.weights_.source).name}: what each cluster holds "
                                              f"(k = {test.n_clusters})"), stem)
    print("wrote " + ", ".join(printable(p) for p in written))


def _digests(path: Path) -> str | dict[str, str]:
    """The model file's SHA-256, or for a checkpoint folder each of its JSON and safetensors files'."""
    from .storage.files import file_digest

    if not path.is_dir():
        return file_digest(path, "sha256")
    return {p.name: file_digest(p, "sha256") for p in sorted(path.iterdir()) if p.suffix in (".json", ".safetensors")}


def _cmd_index(args: argparse.Namespace) -> int:
    from .training.catalog import find_instances, write_index

    folder = Path(args.models_dir)
    if not folder.is_dir() or not find_instances(folder, arch=None):
        raise NnClusteringError(f"no trained models in {folder}; run `make models PROFILE={args.profile}` first")
    print(f"{write_index(folder)}: every trained instance, its files checked against their record")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .experiments.paths import ExperimentPaths
    from .experiments.summary import summary

    print(summary(ExperimentPaths.for_profile(args.profile, args.models_dir, args.results_dir)))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .experiments.compare import compare_results, write_reference

    if args.write_reference:
        out = write_reference(args.results_dir, args.profile, args.write_reference, args.reference)
        print(f"wrote the reference record {out}")
        return 0
    text, reproduced = compare_results(args.results_dir, args.profile, args.reference)
    print(text)
    return 0 if reproduced else 1


def _cmd_notebook(args: argparse.Namespace) -> int:
    from .experiments.notebook import parse_parameters, run_notebook

    run_notebook(Path(args.template), Path(args.output), parse_parameters(args.parameters or []),
                 Path(args.cwd) if args.cwd else None)
    return 0


def _cmd_s3(args: argparse.Namespace) -> int:
    from .storage.s3 import pull, push

    exclude = tuple(args.exclude or ())
    if args.direction == "push":
        push(args.local, args.uri, args.endpoint_url, progress=not args.quiet, exclude=exclude)
    else:
        pull(args.uri, args.local, args.endpoint_url, progress=not args.quiet, exclude=exclude)
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def _add_datasets(sub) -> None:
    """The ``datasets`` sub-command: build datasets."""
    p = sub.add_parser("datasets", help="build datasets into datasets/<name>.npz and a MANIFEST")
    p.add_argument("names", nargs="*", help="datasets to build (default: all of method.md §1)")
    p.add_argument("--out", default="datasets", help="output folder (default: datasets)")
    p.add_argument("--seed", type=int, default=42, help="generator seed (default: 42)")
    p.add_argument("--force", action="store_true", help="rebuild files that already exist")
    p.set_defaults(func=_cmd_datasets)


def _add_train(sub) -> None:
    """The ``train`` sub-command: train models."""
    p = sub.add_parser("train", help="train and prune the models of method.md §2 (make models)")
    p.add_argument("tags", nargs="*", help="model tags (default: every tag); e.g. MNIST MNIST+DROPOUT")
    p.add_argument("--profile", default="quick", help="training profile: quick or paper (default: quick)")
    p.add_argument("--models-dir", default="models", help="output folder (default: models)")
    p.add_argument("--data-dir", default="datasets", help="datasets folder (default: datasets)")
    p.add_argument("--instances", dest="max_instances", type=int, default=None,
                   help="train only the first N instances of each tag (default: the profile's count)")
    p.set_defaults(func=_cmd_train)


def _parameter_option(parser: argparse.ArgumentParser):
    """A function that adds an option setting the parameter ``name`` of
    :mod:`nn_clustering.core.parameters` under the flags given (the first is the one messages
    name), recording the spelling in ``args.spelled``."""
    spelled: dict[str, str] = {}
    parser.set_defaults(spelled=spelled)

    def option(name: str, *flags: str, **kwargs) -> None:
        parser.add_argument(*flags, dest=name, **kwargs)
        spelled[name] = flags[0]

    return option


def _add_cluster(sub) -> None:
    """The ``cluster`` sub-command: cluster a model and run the shuffle test."""
    p = sub.add_parser(
        "cluster", help="cluster a model (.keras, .onnx, .safetensors/.pt state_dict, .npz) and run the shuffle test"
    )
    p.add_argument("path", help="a saved Keras model, an ONNX file, a PyTorch state_dict (.safetensors, .pt) or "
                                "an .npz of kernels in layer order (arr_0, arr_1, ...)")
    option = _parameter_option(p)
    option("n_clusters", "--k", "--n-clusters", type=int, default=4, help="number of clusters (default: 4)")
    option("n_shuffles", "--shuffles", "--n-shuffles", type=int, default=320,
           help="number of shuffles (default: 320)")
    option("method", "--method", choices=list(ShuffleMethod.values()), default=ShuffleMethod.LAYER.value,
           help="shuffle method (default: layer)")
    option("n_jobs", "--jobs", "--n-jobs", type=int, default=1, help="local worker processes (default: 1)")
    option("random_state", "--seed", "--random-state", type=int, default=42,
           help="root seed of the shuffles (default: 42)")
    option("level", "--level", type=float, default=0.05,
           help="significance level: significant when p <= level (default: 0.05; needs at least "
                "1/level - 1 shuffles)")
    option("scheduler", "--scheduler", default=None,
           help="run on dask.distributed: a scheduler address, or 'local' for a LocalCluster")
    option("norm", "--norm", choices=list(SliceNorm.values()), default=SliceNorm.L1.value,
           help="conv kernel slice norm for CNN channel graphs (default: l1)")
    p.add_argument("--drop-dead-ends", action="store_true",
                   help="first remove units on no input-to-output path (label -1; method.md §8)")
    p.add_argument("--graph", choices=list(GraphKind.values()), default=GraphKind.WEIGHTS.value,
                   help="the weight graph (|w| edges), or the activation graph of --data (method.md §3.6; "
                        "default: weights)")
    p.add_argument("--data", default=None,
                   help="inputs for --graph activations: a dataset name (its test split, e.g. mnist, read from "
                        "$NN_CLUSTERING_DATA_DIR or ./datasets) or an .npz of inputs (array x)")
    p.add_argument("--measure", choices=list(Measure.values()), default=Measure.SPEARMAN.value,
                   help="activation edge weight: spearman or pearson r^2, or coactivation (default: spearman)")
    p.add_argument("--layerwise", action="store_true",
                   help="activation graphs: partition each layer's units on its own (no shuffle test)")
    p.add_argument("--null", choices=list(ActivationNull.values()), default=ActivationNull.LAYER_PAIRS.value,
                   help="activation graphs: permute edge weights within layer pairs or among all pairs "
                        "(default: layer_pairs; method.md §5.1)")
    p.add_argument("--partitioner", choices=list(Partitioner.values()), default=Partitioner.SPECTRAL.value,
                   help="spectral (k clusters, with the shuffle test), or leiden / louvain (modularity at "
                        "--resolution, no shuffles) (default: spectral)")
    p.add_argument("--resolution", type=float, default=1.0, help="leiden / louvain resolution (default: 1)")
    p.add_argument("--suggest-k", action="store_true",
                   help="also print the k the eigengap heuristic suggests for the graph (method.md §4.1)")
    p.add_argument("--output", default=None, help="write everything as JSON to this file")
    p.add_argument("--composition", default=None, metavar="STEM",
                   help="transformers: write what each cluster holds per head and MLP as STEM.csv and a heatmap "
                        "STEM.png/.svg")
    p.add_argument("--max-model-memory", metavar="SIZE", default=None,
                   help="memory that reading the model file may take, e.g. 16G "
                        "(default: $NN_CLUSTERING_MODEL_MEMORY, else half of the available memory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_cluster)


def _add_index(sub) -> None:
    """The ``index`` sub-command: write models/INDEX.json."""
    p = sub.add_parser("index", help="write models/INDEX.json from the trained models (make does this)")
    p.add_argument("--models-dir", default="models", help="models folder (default: models)")
    p.add_argument("--profile", default="quick", help="the profile, for the message when there are none")
    p.set_defaults(func=_cmd_index)


def _add_summary(sub) -> None:
    """The ``summary`` sub-command: print the findings."""
    p = sub.add_parser("summary", help="print what the clustering results found and where they are")
    p.add_argument("--profile", default="quick", help="profile whose results to read (default: quick)")
    p.add_argument("--models-dir", default=None, help="models folder (default: the profile's)")
    p.add_argument("--results-dir", default=None, help="results folder (default: the profile's)")
    p.set_defaults(func=_cmd_summary)


def _add_compare(sub) -> None:
    """The ``compare`` sub-command: compare with the reference record."""
    p = sub.add_parser("compare", help="set your results beside the project's reference record, tag by tag "
                       "(exit 1 when a difference passes the instance-to-instance spread)")
    p.add_argument("results_dir", help="your results folder, e.g. results/quick")
    p.add_argument("--profile", default="quick", help="the profile of the reference to compare with (default: quick)")
    p.add_argument("--reference", default=None, help="reference folder (default: results/reference/<profile>)")
    p.add_argument("--write-reference", metavar="COMMAND", default=None,
                   help="instead, record results_dir's tables as the reference, made by COMMAND")
    p.set_defaults(func=_cmd_compare)


def _add_notebook(sub) -> None:
    """The ``notebook`` sub-command: run an analysis notebook."""
    p = sub.add_parser("notebook", help="run an analysis notebook with papermill into OUTPUT (make's analysis "
                       "targets do this); a failed cell ends in one error line")
    p.add_argument("template", help="the notebook template, e.g. notebooks/mlp-clustering.ipynb")
    p.add_argument("output", help="the executed notebook, written only when every cell ran")
    p.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a parameter of the tagged parameters cell (values read as papermill's -p does)")
    p.add_argument("--cwd", default=None, help="working folder of the kernel (default: this one)")
    p.set_defaults(func=_cmd_notebook)


def _add_s3(sub) -> None:
    """The ``s3`` sub-command: sync a folder with a bucket."""
    p = sub.add_parser("s3", help="sync a folder with S3-compatible storage (only changed files move)")
    p.add_argument("direction", choices=["push", "pull"], help="push: local -> bucket; pull: bucket -> local")
    p.add_argument("local", help="the local folder, e.g. models/quick")
    p.add_argument("uri", help="s3://bucket/prefix of the folder's copy")
    p.add_argument("--endpoint-url", default=None,
                   help="endpoint of non-AWS storage (default: AWS_ENDPOINT_URL or AWS itself)")
    p.add_argument("--exclude", action="append", metavar="NAME", default=None,
                   help="leave out this top-level folder (repeatable), e.g. --exclude cache; a push also "
                        "drops it from the bucket's manifest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_s3)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = _Parser(
        prog="nn-clustering", description="Is this trained neural network modular?"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_datasets, _add_train, _add_cluster, _add_index, _add_summary, _add_compare, _add_notebook, _add_s3):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the sub-command; user errors become one line."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except NnClusteringError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished files are kept, re-run to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout (e.g. `| head`) left: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
