"""Normalised cut of a labelled graph (method.md §4): pure numpy/scipy.

For labels c over the non-isolated nodes, cut(c) is the weight of the edges leaving cluster c
and vol(c) the sum of its nodes' degrees; n-cut = sum over clusters of cut(c) / vol(c), in
[0, k], lower = more clusterable.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ClusteringError


def _one_hot(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """(n, n_labels) indicator matrix; rows of label -1 stay zero."""
    out = np.zeros((labels.size, n_labels))
    inside = np.flatnonzero(labels >= 0)
    out[inside, labels[inside]] = 1.0
    return out


def _ncut_from_weights(labels: np.ndarray, weight_to: np.ndarray) -> float:
    """n-cut from each node's label and its total edge weight into each cluster."""
    inside = np.flatnonzero(labels >= 0)
    lab, w = labels[inside], weight_to[inside]
    n_labels = weight_to.shape[1]
    vol = np.bincount(lab, weights=w.sum(axis=1), minlength=n_labels)
    within = np.bincount(lab, weights=w[np.arange(lab.size), lab], minlength=n_labels)
    used = vol > 0
    return float(np.sum((vol[used] - within[used]) / vol[used]))


def ncut(adjacency: sp.spmatrix | np.ndarray, labels: np.ndarray) -> float:
    """Normalised cut: sum over clusters of cut(c) / vol(c) (method.md §4).

    ``labels`` has one entry per node; nodes labelled -1 are left out with their edges.
    Clusters of zero volume contribute nothing.
    """
    labels = np.asarray(labels)
    n = adjacency.shape[0]
    if labels.shape != (n,):
        raise ClusteringError(f"{labels.shape[0]} labels for a graph of {n} nodes")
    if not np.any(labels >= 0):
        return 0.0
    weight_to = np.asarray(adjacency @ _one_hot(labels, int(labels.max()) + 1))
    return _ncut_from_weights(labels, weight_to)


def ncut_bipartite(
    block: np.ndarray,
    row_labels: np.ndarray,
    col_labels: np.ndarray,
    row_weights: np.ndarray | None = None,
    col_weights: np.ndarray | None = None,
) -> float:
    """n-cut of a bipartite graph A = [[0, B], [B^T, 0]] given as its block B, or as a scaled
    block S with B[i, j] = row_weights[i] * S[i, j] * col_weights[j].

    One pass over B: W = R^T B C, with R and C the row and column nodes' one-hot labels, is the
    edge weight between row cluster a and column cluster b. Cluster a's volume is the sum of
    row a and column a of W, and its internal weight 2 W[a, a] (each internal edge seen from
    both ends), so cut(a) = vol(a) - 2 W[a, a].
    """
    n_labels = int(max(row_labels.max(initial=-1), col_labels.max(initial=-1))) + 1
    if n_labels == 0:
        return 0.0
    rows, cols = _one_hot(row_labels, n_labels), _one_hot(col_labels, n_labels)
    if row_weights is not None:
        rows *= row_weights[:, None]
    if col_weights is not None:
        cols *= col_weights[:, None]
    between = rows.T @ (block @ cols)
    vol = between.sum(axis=1) + between.sum(axis=0)
    used = vol > 0
    return float(np.sum((vol[used] - 2.0 * np.diag(between)[used]) / vol[used]))
