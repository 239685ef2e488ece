"""The clusterability regulariser's penalty and its exact gradient (method.md §2.6): the mean of
the smallest non-trivial eigenvalues of the normalised Laplacian of an MLP's weight graph.

For the graph of §3.1 (edge weights a = |w|, degrees d), L = I - D^-1/2 A D^-1/2. Take the
n_eigs + 1 smallest eigenvalues of L on the nodes with edges and drop the smallest (0, the
trivial one), as the successor paper does. For a simple eigenvalue lambda with unit eigenvector
v, and u = v / sqrt(d), the derivative with respect to one undirected edge weight a_mn (which
changes A_mn, A_nm, d_m and d_n) is

    d lambda / d a_mn = (1 - lambda) (u_m^2 + u_n^2) - 2 u_m u_n,

and d a / d w = sign(w). The graph is dense here (an eigendecomposition of the whole
normalised adjacency), which suits the small networks the regulariser trains.

Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import GraphError

#: Largest graph the dense eigendecomposition takes (nodes).
MAX_NODES = 4096


def _adjacency(kernels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The dense symmetric adjacency of an MLP's layered graph from its (in, out) kernels, and
    where each layer's nodes start."""
    sizes = [kernels[0].shape[0]] + [k.shape[1] for k in kernels]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if starts[-1] > MAX_NODES:
        raise GraphError(f"the clusterability penalty takes networks of up to {MAX_NODES} nodes (dense "
                         f"eigendecomposition), not {starts[-1]}")
    a = np.zeros((starts[-1], starts[-1]))
    for i, k in enumerate(kernels):
        a[starts[i]:starts[i + 1], starts[i + 1]:starts[i + 2]] = np.abs(k)
    return a + a.T, starts


def smallest_eigenpairs(kernels: Sequence[np.ndarray], n_eigs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The eigenvalues lambda_2 .. lambda_{n_eigs + 1} of the normalised Laplacian (on the nodes
    with edges), their eigenvectors scaled by 1 / sqrt(degree) (``u``, zero on isolated nodes,
    one column each) and the degrees."""
    a, _ = _adjacency([np.asarray(k, np.float64) for k in kernels])
    d = a.sum(axis=1)
    active = d > 0
    if active.sum() < n_eigs + 1:
        raise GraphError(f"the graph has {int(active.sum())} connected nodes, too few for {n_eigs} eigenvalues")
    s = 1.0 / np.sqrt(d[active])
    normalised = s[:, None] * a[np.ix_(active, active)] * s[None, :]
    mu, vectors = np.linalg.eigh(normalised)  # ascending; lambda = 1 - mu
    take = slice(len(mu) - n_eigs - 1, len(mu) - 1)
    u = np.zeros((len(d), n_eigs))
    u[active] = (vectors[:, take] * s[:, None])[:, ::-1]
    return (1.0 - mu[take])[::-1], u, d


def clusterability_penalty(kernels: Sequence[np.ndarray], n_eigs: int = 3) -> float:
    """The mean of the ``n_eigs`` smallest non-trivial eigenvalues of the normalised Laplacian."""
    values, _, _ = smallest_eigenpairs(kernels, n_eigs)
    return float(values.mean())


def penalty_gradient(kernels: Sequence[np.ndarray], n_eigs: int = 3) -> tuple[float, list[np.ndarray]]:
    """:func:`clusterability_penalty` and its exact gradient with respect to every kernel (the
    module docstring's formula, averaged over the eigenvalues)."""
    kernels = [np.asarray(k, np.float64) for k in kernels]
    values, u, _ = smallest_eigenpairs(kernels, n_eigs)
    _, starts = _adjacency(kernels)
    grads = []
    for i, k in enumerate(kernels):
        rows, cols = u[starts[i]:starts[i + 1]], u[starts[i + 1]:starts[i + 2]]
        g = np.zeros_like(k)
        for e, lam in enumerate(values):
            r, c = rows[:, e], cols[:, e]
            g += (1.0 - lam) * (r[:, None] ** 2 + c[None, :] ** 2) - 2.0 * r[:, None] * c[None, :]
        grads.append(np.sign(k) * g / len(values))
    return float(values.mean()), grads
