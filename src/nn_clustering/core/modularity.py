"""Newman's modularity Q of a partition, and the eigengap heuristic for k (method.md §4.1).
Pure numpy and scipy."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from ..errors import GraphError


def modularity(adjacency: sp.spmatrix | sp.sparray | np.ndarray, labels: np.ndarray, resolution: float = 1.0) -> float:
    """Newman's modularity of a weighted, undirected graph's partition:

    Q = sum over clusters c of [ W_c / 2m - resolution * (d_c / 2m)^2 ],

    with 2m the sum of all entries of the adjacency, W_c the sum of the entries between nodes of c
    (both orders) and d_c the sum of their degrees. Nodes labelled -1 (isolated, or outside the
    partition) are left out, with their edges.
    """
    a = sp.csr_array(adjacency, dtype=np.float64)
    labels = np.asarray(labels)
    if a.shape != (len(labels), len(labels)):
        raise GraphError(f"{len(labels)} labels for a graph of {a.shape[0]} nodes")
    keep = labels >= 0
    a = a[keep][:, keep]
    labels = labels[keep]
    total = float(a.sum())
    if total <= 0:
        raise GraphError("modularity needs a graph with at least one edge")
    _, index = np.unique(labels, return_inverse=True)
    member = sp.csr_array((np.ones(len(index)), (np.arange(len(index)), index)))
    within = (member.T @ a @ member).diagonal()
    degree = member.T @ np.asarray(a.sum(axis=1)).ravel()
    return float(within.sum() / total - resolution * np.sum((degree / total) ** 2))


#: Graphs up to this many nodes get a dense eigendecomposition; larger ones Lanczos (ARPACK).
DENSE_EIGENGAP = 2000


def laplacian_spectrum(adjacency: sp.spmatrix | sp.sparray | np.ndarray, count: int) -> np.ndarray:
    """The ``count`` smallest eigenvalues of the normalised Laplacian I - D^-1/2 A D^-1/2 of a
    graph without isolated nodes, ascending."""
    n = adjacency.shape[0]
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    if (degree <= 0).any():
        raise GraphError("the eigengap needs a graph without isolated nodes")
    scale = 1.0 / np.sqrt(degree)
    if n <= DENSE_EIGENGAP:
        a = np.asarray(adjacency.toarray() if sp.issparse(adjacency) else adjacency, np.float64)
        laplacian = np.eye(n) - a * np.outer(scale, scale)
        return scipy.linalg.eigh(laplacian, eigvals_only=True, subset_by_index=(0, count - 1))
    normalised = sp.diags(scale) @ sp.csr_array(adjacency, dtype=np.float64) @ sp.diags(scale)
    top = scipy.sparse.linalg.eigsh(normalised, k=count, which="LA", return_eigenvectors=False,
                                    v0=np.ones(n) / np.sqrt(n))
    return np.sort(1.0 - top)


def eigengap_k(adjacency: sp.spmatrix | sp.sparray | np.ndarray, k_max: int = 20) -> int:
    """The eigengap heuristic's k: the number of smallest eigenvalues of the normalised Laplacian
    I - D^-1/2 A D^-1/2 before the largest gap among the first ``k_max`` + 1 (at least 2).

    ``adjacency`` must have no isolated nodes (as every graph the partitioners see)."""
    n = adjacency.shape[0]
    if n < 3:
        raise GraphError(f"the eigengap needs at least 3 connected nodes, got {n}")
    values = laplacian_spectrum(adjacency, min(k_max, n - 2) + 1)
    gaps = np.diff(values)[1:]  # gap after the 2nd, 3rd, ... smallest eigenvalue
    return int(np.argmax(gaps)) + 2
