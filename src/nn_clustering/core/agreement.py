"""How alike two partitions of the same units are: adjusted Rand index and normalised mutual
information (method.md §4.2). Pure numpy and scipy."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import comb

from ..errors import GraphError


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts of units in cluster i of ``a`` and j of ``b``, over the units labelled (>= 0) in
    both."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise GraphError(f"partitions of {a.shape} and {b.shape} units; compare the same units")
    both = (a >= 0) & (b >= 0)
    if both.sum() < 2:
        raise GraphError("fewer than 2 units are labelled in both partitions")
    _, ia = np.unique(a[both], return_inverse=True)
    _, ib = np.unique(b[both], return_inverse=True)
    return sp.coo_array((np.ones(len(ia)), (ia, ib))).toarray()


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Hubert and Arabie's adjusted Rand index: 1 for the same partition, about 0 for unrelated
    ones (units labelled -1 in either are left out)."""
    table = _contingency(a, b)
    pairs = comb(table, 2).sum()
    rows, cols = comb(table.sum(axis=1), 2).sum(), comb(table.sum(axis=0), 2).sum()
    expected = rows * cols / comb(table.sum(), 2)
    top = 0.5 * (rows + cols)
    if top == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return float((pairs - expected) / (top - expected))


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalised_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information divided by the mean of the two entropies (scikit-learn's default,
    ``average_method="arithmetic"``): 1 for the same partition, 0 for independent ones."""
    table = _contingency(a, b)
    n = table.sum()
    pa, pb = table.sum(axis=1), table.sum(axis=0)
    nz = table > 0
    mi = float((table[nz] / n * np.log(table[nz] * n / np.outer(pa, pb)[nz])).sum())
    ha, hb = _entropy(pa), _entropy(pb)
    if ha == 0 and hb == 0:
        return 1.0
    return max(0.0, mi / (0.5 * (ha + hb)))
