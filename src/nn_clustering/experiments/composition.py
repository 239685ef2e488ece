"""What each cluster of a transformer holds (method.md §3.5): per block, how many MLP units and
how many value dimensions of each attention head, and how many units of the residual stream.
That is what a researcher reads first: whether a cluster is a set of heads, a slice of one
block's MLP, or a circuit through several blocks.

A group of value units is recognised by the output projection that reads it head by head (its
wiring pieces: one per query head, head_dim units each); every other group is reported whole.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np

from ..core.graph import NetworkWeights
from ..core.rows import Row


@dataclass(frozen=True)
class CompositionRow(Row):
    """One cluster's units in one part of the network (a head's value dimensions, an MLP, the
    stream)."""

    cluster: int
    group: str
    part: str  # "head 3", "units" (an MLP's or the stream's units)
    units: int
    of: int  # the part's size


def head_dims(weights: NetworkWeights) -> dict[int, int]:
    """Group index -> head_dim, for the groups of value units (read head by head by an output
    projection that writes the stream, group 0)."""
    out: dict[int, int] = {}
    if weights.wiring is None:
        return out
    for feed in weights.wiring.feeds:
        if feed.target == 0 and len(feed.pieces) > 1 and len({p.group for p in feed.pieces}) == 1:
            out[feed.pieces[0].group] = feed.pieces[0].length
    return out


def parts(weights: NetworkWeights, labels_by_layer: list[np.ndarray]) -> list[tuple[str, int | None, np.ndarray]]:
    """The parts of a transformer's graph in network order, each as (its group's name, its
    head within a group of value units or None for a whole group, its units' labels)."""
    names = list(weights.wiring.names) if weights.wiring is not None else []
    dims, out = head_dims(weights), []
    for g, labels in enumerate(labels_by_layer):
        name = names[g] if g < len(names) else str(g)
        if g in dims:
            out += [(name, h, labels[h * dims[g]:(h + 1) * dims[g]]) for h in range(len(labels) // dims[g])]
        else:
            out.append((name, None, labels))
    return out


def cluster_composition(weights: NetworkWeights, labels_by_layer: list[np.ndarray]) -> list[CompositionRow]:
    """Per cluster, group and part, the number of units of that part in that cluster (parts a
    cluster does not touch are left out)."""
    names = list(weights.wiring.names) if weights.wiring is not None else []
    rows = []
    for name, head, part_labels in parts(weights, labels_by_layer):
        clusters, counts = np.unique(part_labels[part_labels >= 0], return_counts=True)
        rows += [CompositionRow(int(c), name, "units" if head is None else f"head {head}", int(n), len(part_labels))
                 for c, n in zip(clusters, counts, strict=True)]
    return sorted(rows, key=lambda r: (r.cluster, names.index(r.group) if r.group in names else 0))


def composition_lines(rows: list[CompositionRow], width: int = 100) -> list[str]:
    """Per cluster, the parts it holds, largest first (heads as ``h3 4/8``), wrapped to ``width``."""
    lines = []
    for cluster in sorted({r.cluster for r in rows}):
        mine = sorted((r for r in rows if r.cluster == cluster), key=lambda r: -r.units)
        parts = [f"{r.group}{'' if r.part == 'units' else ' ' + r.part.replace('head ', 'h')} {r.units}/{r.of}"
                 for r in mine]
        lines += textwrap.wrap(", ".join(parts), width, initial_indent=f"  cluster {cluster}: ",
                               subsequent_indent="    ", break_on_hyphens=False)
    return lines


def composition_shares(
    weights: NetworkWeights, labels_by_layer: list[np.ndarray], n_clusters: int
) -> tuple[np.ndarray, list[str], list[int]]:
    """The (clusters, parts) matrix of each part's share of units in each cluster, the parts in
    network order (the stream, then per block each head's value dimensions and the MLP groups),
    their short labels (``3:h5``: block 3's head 5; ``3:c_fc``: its MLP), and the column where
    each block starts (its first head)."""
    columns, labels, blocks = [], [], []
    for name, head, part in parts(weights, labels_by_layer):
        if head == 0:
            blocks.append(len(columns))
        short = f"h{head}" if head is not None else name.rsplit(".", 1)[-1]
        labels.append(f"{len(blocks) - 1}:{short}" if blocks else short)
        columns.append([float(np.mean(part == c)) if len(part) else 0.0 for c in range(n_clusters)])
    return np.array(columns).T, labels, blocks


def composition_figure(weights: NetworkWeights, labels_by_layer: list[np.ndarray], n_clusters: int, title: str = ""):
    """A heatmap of :func:`composition_shares`: one row per cluster, one column per part (each
    head's value dimensions, each MLP group, the stream), colour the share of the part's units
    in the cluster; blocks separated by lines and labelled."""
    import matplotlib.pyplot as plt

    shares, labels, blocks = composition_shares(weights, labels_by_layer, n_clusters)
    fig, ax = plt.subplots(figsize=(min(24.0, max(6.0, 0.12 * len(labels) + 3)), 0.3 * n_clusters + 2))
    image = ax.imshow(shares, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(n_clusters))
    ax.set_ylabel("cluster")
    for start in blocks:
        ax.axvline(start - 0.5, color="white", linewidth=0.8)
    if len(labels) <= 48:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    else:
        ax.set_xticks(blocks, [f"block {b}" for b in range(len(blocks))], rotation=90, fontsize=7)
    ax.set_xlabel("value dimensions of each head and MLP units, block by block (the stream first)")
    fig.colorbar(image, ax=ax, label="share of the part's units in the cluster")
    ax.set_title(title or "what each cluster holds")
    fig.tight_layout()
    return fig
