"""What every network graph shares: nodes in groups (layers), some of them isolated. Pure numpy."""

from __future__ import annotations

from functools import cached_property

import numpy as np


class LayeredNodes:
    """Node bookkeeping of a graph whose nodes are ordered group by group (a layer, or a weighted
    layer's units). Subclasses provide ``layer_sizes`` and ``active`` (non-isolated nodes)."""

    layer_sizes: tuple[int, ...]
    active: np.ndarray

    @property
    def n_nodes(self) -> int:
        """Number of nodes, isolated ones included."""
        return int(sum(self.layer_sizes))

    @cached_property
    def layer_of_node(self) -> np.ndarray:
        """Layer (group) index of every node."""
        return np.repeat(np.arange(len(self.layer_sizes)), self.layer_sizes)

    def expand_labels(self, labels: np.ndarray) -> np.ndarray:
        """Map labels of the non-isolated nodes back to every node, -1 for isolated ones."""
        keep = self.active
        if len(labels) != int(keep.sum()):
            raise ValueError(f"{len(labels)} labels for {int(keep.sum())} non-isolated nodes")
        full = np.full(self.n_nodes, -1, dtype=np.int64)
        full[keep] = labels
        return full

    def split_by_layer(self, values: np.ndarray) -> list[np.ndarray]:
        """Split a per-node array into one array per layer (group)."""
        return np.split(np.asarray(values), np.cumsum(self.layer_sizes)[:-1])
