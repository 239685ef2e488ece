"""The figures of method.md §7 (``mlp-plots``, ``cnn-clustering``, the lesion tests), each a function returning a matplotlib Figure.

Every figure has a title, labelled axes and a legend where colours carry meaning. They are plain
matplotlib: each is a scatter, histogram, bar, box or line plot that matplotlib draws directly,
and the same data must give the same bytes (SVG ids salted, no dates), so a styling layer such
as seaborn would add a dependency without improving a figure. Save with
:func:`nn_clustering.storage.tables.save_figure` (PNG and SVG).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

plt.rcParams["svg.hashsalt"] = "nn-clustering"  # stable SVG element ids
STAGE_MARKERS = {"dense": "o", "pruned": "^"}
Z_FLOOR = -50  # the stability figure draws lower z at this line, so one tag does not squash the rest


def _colours(tags: Sequence[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(tags) <= 10 else "tab20")
    return {tag: cmap(i % cmap.N) for i, tag in enumerate(tags)}


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def ncut_vs_accuracy(table, method: str = "layer"):
    """n-cut against test accuracy, one point per instance; one panel per stage, colour = tag,
    with each model's shuffled mean as a hollow marker joined to it."""
    rows = table[table["method"] == method]
    stages = _unique(rows["stage"])
    colours = _colours(_unique(rows["tag"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4.5), squeeze=False, sharey=True)
    for ax, stage in zip(axes[0], stages, strict=True):
        part = rows[rows["stage"] == stage]
        for tag, group in part.groupby("tag", sort=False):
            c = colours[tag]
            ax.scatter(group["test_accuracy"], group["ncut"], color=c, marker=STAGE_MARKERS.get(stage, "o"),
                       label=tag, zorder=3)
            ax.scatter(group["test_accuracy"], group["shuffled_mean"], facecolor="none", edgecolor=c,
                       marker=STAGE_MARKERS.get(stage, "o"), zorder=2)
            for _, r in group.iterrows():
                ax.plot([r["test_accuracy"]] * 2, [r["ncut"], r["shuffled_mean"]], color=c, lw=0.6, alpha=0.6)
        ax.set_title(f"{stage} networks")
        ax.set_xlabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"n-cut (k = {int(rows['n_clusters'].iloc[0])})")
    axes[0][-1].legend(title="tag (filled: trained, hollow: mean of\n"
                             f"{method} shuffles)", fontsize=8, title_fontsize=8, loc="best")
    fig.suptitle("Clusterability against accuracy: lower n-cut = more modular")
    fig.tight_layout()
    return fig


def shuffle_distributions(table, shuffles, stage: str = "pruned", instance: int = 0):
    """Histogram of shuffled n-cuts with the observed n-cut marked, one row per tag and one
    column per shuffle method (instance ``instance`` of each tag).

    ``table`` is the clustering table, ``shuffles`` the long table of shuffled n-cuts
    (:func:`nn_clustering.experiments.clustering.shuffles_table`).
    """
    chosen = table[(table["stage"] == stage) & (table["instance"] == instance)]
    if chosen.empty:
        raise ValueError(f"no {stage} results of instance {instance} to plot")
    tags = _unique(chosen["tag"])
    methods = _unique(chosen["method"])
    fig, axes = plt.subplots(len(tags), len(methods), figsize=(4.5 * len(methods), 2.4 * len(tags)),
                             squeeze=False)
    for _, r in chosen.iterrows():
        ax = axes[tags.index(r["tag"])][methods.index(r["method"])]
        values = shuffles[(shuffles["tag"] == r["tag"]) & (shuffles["instance"] == instance)
                          & (shuffles["stage"] == stage) & (shuffles["method"] == r["method"])
                          & (shuffles["n_clusters"] == r["n_clusters"])]["ncut"]
        ax.hist(values, bins=30, color="0.6", label=f"{len(values)} shuffles")
        ax.axvline(r["ncut"], color="crimson", lw=2, label="trained network")
        ax.set_title(f"{r['tag']} {stage}, {r['method']}: p = {r['p_value']:.3g}", fontsize=9)
        ax.set_xlabel(f"n-cut (k = {r['n_clusters']})")
        ax.set_ylabel("shuffles")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Trained n-cut against its shuffled networks (left of every bar = significant)")
    fig.tight_layout()
    return fig


def cohens_d_plot(effects):
    """Cohen's d between the ``layer`` and ``layer_nonzero`` shuffles, per tag and stage."""
    tags = _unique(effects["tag"])
    stages = _unique(effects["stage"])
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(tags) + 2), 4))
    width = 0.8 / max(1, len(stages))
    x = np.arange(len(tags))
    for i, stage in enumerate(stages):
        part = effects[effects["stage"] == stage].groupby("tag", sort=False)["cohens_d"]
        means = part.mean().reindex(tags)
        sds = part.std(ddof=1).reindex(tags).fillna(0)
        ax.bar(x + i * width, means, width, yerr=sds, label=stage, capsize=3)
    ax.set_xticks(x + width * (len(stages) - 1) / 2, tags, rotation=30, ha="right")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("Cohen's d (layer - layer_nonzero)")
    ax.set_title("How much the two shuffle methods differ")
    ax.legend(title="stage")
    fig.tight_layout()
    return fig


FLAT_ACCURACY = 0.05  # a learning-curve panel whose accuracies all lie within this gets a 0-1 axis


def learning_curves(curve):
    """n-cut (solid), training accuracy (dotted) and test accuracy (dashed, both on the right
    axis) per epoch, one panel per tag; the pruning phase is shaded. Training accuracy is what
    the random-label tags are about: they can memorise but never generalise."""
    tags = _unique(curve["tag"])
    ncols = min(3, len(tags))
    nrows = int(np.ceil(len(tags) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(tags):]:
        ax.set_visible(False)
    handles: list = []
    for ax, tag in zip(axes.flat, tags, strict=False):
        part = curve[curve["tag"] == tag]
        acc = ax.twinx()
        for inst, g in part.groupby("instance"):
            g = g.sort_values("global_epoch")
            ax.plot(g["global_epoch"], g["ncut"], color="C0", alpha=0.8, label="n-cut" if inst == 0 else None)
            acc.plot(g["global_epoch"], g["train_accuracy"], color="C2", ls=":", alpha=0.8,
                     label="train accuracy" if inst == 0 else None)
            acc.plot(g["global_epoch"], g["test_accuracy"], color="C1", ls="--", alpha=0.8,
                     label="test accuracy" if inst == 0 else None)
        pruned = part[part["phase"] == "pruned"]["global_epoch"]
        if len(pruned):
            ax.axvspan(pruned.min() - 1, pruned.max(), color="0.9", zorder=0, label="pruning")
        accuracies = part[["train_accuracy", "test_accuracy"]].to_numpy(dtype=float)
        accuracies = accuracies[~np.isnan(accuracies)]
        if accuracies.size and np.ptp(accuracies) < FLAT_ACCURACY:
            acc.set_ylim(0, 1.02)  # a net stuck at chance: its noise drawn to scale, not magnified
        ax.set_title(tag)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"n-cut (k = {int(part['n_clusters'].iloc[0])})", color="C0")
        acc.set_ylabel("accuracy")
        if not handles:
            handles = ax.get_legend_handles_labels()[0] + acc.get_legend_handles_labels()[0]
    # one legend for the figure, under the title (inside a panel it covered accuracy lines)
    fig.suptitle("n-cut through training and pruning")
    height = fig.get_figheight()
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.3 / height))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))  # room for the title and the legend
    return fig


def stability_plot(table):
    """z-score of every instance (pruned) per tag, one marker per k and shuffle method."""
    rows = table[table["stage"] == "pruned"]
    tags = _unique(rows["tag"])
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(tags) + 2) + 2, 4))
    groups = list(rows.groupby(["n_clusters", "method"], sort=True))
    width = 0.8 / max(1, len(groups))
    for i, ((k, method), g) in enumerate(groups):
        xs = np.array([tags.index(t) for t in g["tag"]]) + (i - (len(groups) - 1) / 2) * width
        ax.scatter(xs, g["z"].clip(lower=Z_FLOOR), s=14, label=f"k = {k}, {method}",
                   marker="o" if method == "layer" else "s")
    ax.set_xticks(range(len(tags)), tags, rotation=30, ha="right")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("z = (n-cut - shuffled mean) / sd")
    if (rows["z"] < Z_FLOOR).any():
        ax.axhline(Z_FLOOR, color="0.6", lw=0.8, ls=":")
        ax.annotate(f"z below {Z_FLOOR} drawn at {Z_FLOOR}", (0.005, Z_FLOOR), xycoords=("axes fraction", "data"),
                    xytext=(0, 4), textcoords="offset points", fontsize=7, color="0.4")
    ax.set_title("Stability: every instance's z-score (below 0 = more clusterable than shuffles)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over points
    fig.tight_layout()
    return fig


def clustered_network(layer_sizes: Sequence[int], kernels: Sequence[np.ndarray], labels: np.ndarray,
                      title: str = "", max_edges: int = 1500):
    """A drawing of a clustered MLP: the input layer as an image of cluster labels (if square),
    every other layer as a column of neurons sorted by cluster, and the strongest edges."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 1
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    offsets = np.concatenate([[0], np.cumsum(layer_sizes)])
    side = int(round(np.sqrt(layer_sizes[0])))
    image_input = side * side == layer_sizes[0] and side > 4
    fig = plt.figure(figsize=(12, 5))
    if image_input:
        ax_img = fig.add_axes((0.02, 0.15, 0.2, 0.7))
        grid = labels[: layer_sizes[0]].reshape(side, side).astype(float)
        grid[grid < 0] = np.nan
        ax_img.imshow(grid, cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5, interpolation="nearest")
        ax_img.set_title("input pixels by cluster\n(white: isolated)", fontsize=9)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax = fig.add_axes((0.26, 0.05, 0.72, 0.85))
    else:
        ax = fig.add_axes((0.05, 0.05, 0.9, 0.85))
    first = 1 if image_input else 0
    positions: dict[int, tuple[float, float]] = {}
    for layer in range(first, len(layer_sizes)):
        lab = labels[offsets[layer]:offsets[layer + 1]]
        order = np.lexsort((np.arange(lab.size), np.where(lab < 0, k, lab)))
        ys = np.linspace(0, 1, lab.size) if lab.size > 1 else np.array([0.5])
        for rank, node in enumerate(order):
            positions[offsets[layer] + node] = (layer, ys[rank])
    weights = []
    for layer, kernel in enumerate(kernels):
        if layer < first:
            continue
        rows, cols = np.nonzero(kernel)
        weights += [(abs(kernel[r, c]), offsets[layer] + r, offsets[layer + 1] + c) for r, c in zip(rows, cols, strict=False)]
    weights.sort(reverse=True)
    strongest = weights[:max_edges]
    if strongest:
        top = strongest[0][0]
        for w, a, b in strongest:
            same = labels[a] == labels[b] and labels[a] >= 0
            colour = cmap(labels[a] % cmap.N) if same else "0.6"
            ax.plot([positions[a][0], positions[b][0]], [positions[a][1], positions[b][1]],
                    color=colour, lw=0.3 + 1.2 * w / top, alpha=0.35 if same else 0.15, zorder=1)
    nodes = np.array(sorted(positions))
    xy = np.array([positions[n] for n in nodes])
    node_colours = [cmap(labels[n] % cmap.N) if labels[n] >= 0 else "white" for n in nodes]
    ax.scatter(xy[:, 0], xy[:, 1], c=node_colours, s=9, edgecolors="0.3", linewidths=0.2, zorder=2)
    ax.set_xticks(range(first, len(layer_sizes)),
                  [f"layer {i}\n({n})" for i, n in enumerate(layer_sizes)][first:], fontsize=8)
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(c % cmap.N), label=f"cluster {c}")
               for c in range(k)]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or f"Clustered network (k = {k}); the {len(strongest)} strongest edges, "
                 "coloured when inside a cluster", fontsize=10)
    return fig


TAXONOMY_COLOURS = {"important": "crimson", "least_important": "darkorange", "prunable": "seagreen",
                    "sig-but-not-diff": "purple", "diff-but-not-sig": "goldenrod", "small": "0.6",
                    "complete": "black", "other": "steelblue"}


def lesion_plot(tables: dict, randoms: dict, unit: str = "neurons of hidden layer"):
    """Per model, the accuracy change of each sub-module's lesion (marker, coloured by its
    taxonomy) against the distribution of random same-size lesions (box); ``unit`` says what a
    sub-module's layer index counts."""
    tags = list(tables)
    fig, axes = plt.subplots(len(tags), 1, figsize=(max(8, 0.45 * max(len(t) for t in tables.values()) + 2),
                                                    3.4 * len(tags)), squeeze=False)
    for ax, tag in zip(axes[:, 0], tags, strict=True):
        table = tables[tag]
        intact = float(table["intact_acc"].iloc[0])
        boxes = [np.asarray(randoms[tag][name]) - intact for name in table["name"]]
        x = np.arange(len(table))
        ax.boxplot(boxes, positions=x, widths=0.6, showfliers=False, patch_artist=True,
                   boxprops={"facecolor": "0.88", "edgecolor": "0.5"}, medianprops={"color": "0.4"})
        for kind, group in table.groupby("taxonomy", sort=False):
            idx = group.index.to_numpy()
            ax.scatter(x[idx], group["diff"], color=TAXONOMY_COLOURS.get(kind, "k"), zorder=3, s=22, label=kind)
        ax.set_xticks(x, [f"{n}\n({s})" for n, s in zip(table["name"], table["size"], strict=True)], fontsize=7)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("accuracy change")
        ax.set_title(f"{tag}: lesioned sub-modules (marker) vs random same-size lesions (box); "
                     f"intact accuracy {intact:.3f}", fontsize=9)
        ax.legend(fontsize=7, loc="lower left", ncol=4)
    axes[-1, 0].set_xlabel(f"sub-module L<layer>C<cluster> (size): cluster C's {unit} L")
    fig.tight_layout()
    return fig


def _layer_positions(nodes: Sequence[str]) -> dict[str, tuple[float, float]]:
    by_layer: dict[int, list[str]] = {}
    for n in nodes:
        by_layer.setdefault(int(n[1:].split("C")[0]), []).append(n)
    pos = {}
    for layer, members in by_layer.items():
        for i, n in enumerate(sorted(members)):
            pos[n] = (float(layer), float(i - (len(members) - 1) / 2))
    return pos


def _dot_positions(graph) -> dict[str, tuple[float, float]] | None:
    """graphviz ``dot`` layout with one rank per hidden layer, layers left to right; None
    where pygraphviz is not installed."""
    try:
        import pygraphviz
    except ImportError:
        return None
    agraph = pygraphviz.AGraph(directed=True, rankdir="LR")
    agraph.add_nodes_from(graph.nodes)
    agraph.add_edges_from(graph.edges)
    layers: dict[str, list[str]] = {}
    for node in graph.nodes:
        layers.setdefault(node.split("C")[0], []).append(node)
    for layer, members in sorted(layers.items()):
        agraph.add_subgraph(members, name=f"layer_{layer}", rank="same")
    agraph.layout(prog="dot")
    return {n: tuple(float(v) for v in agraph.get_node(n).attr["pos"].split(",")) for n in graph.nodes}


def dependency_graph_plot(single_rows: Sequence[dict], edges: Sequence[tuple[str, str, float]], tag: str):
    """The dependency graph between important sub-modules: an arrow Y -> X when X is important
    alone but not once Y is lesioned; graphviz's ``dot`` layout (one column per layer) where
    pygraphviz is installed, else plain layer columns."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(r["name"] for r in single_rows if r["taxonomy"] == "important")
    for y, x, weight in edges:
        graph.add_edge(y, x, weight=weight)
    fig, ax = plt.subplots(figsize=(7, 5))
    if graph.number_of_nodes() == 0:
        ax.text(0.5, 0.5, "no important sub-modules", ha="center", va="center")
        pos = {}
    else:
        pos = _dot_positions(graph) or _layer_positions(list(graph.nodes))
        nx.draw_networkx_nodes(graph, pos, ax=ax, node_color="mistyrose", edgecolors="crimson", node_size=900)
        nx.draw_networkx_labels(graph, pos, ax=ax, font_size=8)
        widths = [0.5 + 8 * min(abs(d["weight"]), 0.3) for _, _, d in graph.edges(data=True)]
        nx.draw_networkx_edges(graph, pos, ax=ax, width=widths, arrows=True, arrowsize=12, node_size=900,
                               connectionstyle="arc3,rad=0.15", edge_color="0.35", alpha=0.7)
        if graph.number_of_edges() <= 12:  # labels only where they stay readable
            nx.draw_networkx_edge_labels(
                graph, pos, ax=ax, font_size=7, connectionstyle="arc3,rad=0.15",
                edge_labels={(u, v): f"{d['weight']:.3f}" for u, v, d in graph.edges(data=True)},
            )
    ax.set_title(f"{tag}: dependencies between important sub-modules\n"
                 "(Y -> X: X is no longer significantly important once Y is lesioned;\n"
                 "width and label: s(X|Y) = acc(Y) - acc(X and Y))",
                 fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig
