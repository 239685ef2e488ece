"""k-means++ and Lloyd's k-means for every restart at once (method.md §4): pure numpy.

The definition is scikit-learn's: greedy k-means++ seeding (2 + log k local trials), Lloyd
iterations until the labels stop changing or the centres move less than ``tol`` (relative to
the mean per-feature variance), an empty cluster takes the point farthest from its centre,
best inertia of ``n_init`` restarts wins. All restarts run together as batched numpy products.
"""

from __future__ import annotations

import numpy as np


def _augmented(x: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The points as [x, |x|^2, 1], the left factor of :func:`_sq_dists`."""
    return np.column_stack([x, xx, np.ones(len(x))])


def _sq_dists(x_aug: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distances between the points and centres (r, c, d), as (r, c, n).

    One BLAS product of [-2 c, 1, |c|^2] with [x, |x|^2, 1] (``x_aug``, :func:`_augmented`),
    in less time than three steps. A BLAS that accumulates the inner sum in order (OpenBLAS's
    kernels do) adds -2 x.c, then |x|^2, then |c|^2: the same rounding as the three steps
    done apart.
    """
    r, c, dim = centres.shape
    flat = centres.reshape(r * c, dim)
    c_aug = np.column_stack([-2.0 * flat, np.ones(r * c), np.einsum("kd,kd->k", flat, flat)])
    d = c_aug @ x_aug.T
    return np.maximum(d, 0.0, out=d).reshape(r, c, len(x_aug))


def _first_argmin(scores: np.ndarray, hits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``scores.argmin(axis=1)`` and the minima of an (r, c, n) array, faster than argmin
    along a middle axis: the minimum, then the smallest index attaining it. Index j is
    weighted c - j where the score equals the minimum, so the largest weight (a maximum of
    small unsigned integers along the middle axis) marks the first minimum. Labels come back
    in the smallest unsigned type that holds c. ``hits`` is an optional boolean (r, c, n)
    work buffer."""
    best = scores.min(axis=1)
    c = scores.shape[1]
    small = np.min_scalar_type(c)
    hits = np.equal(scores, best[:, None, :], out=hits)
    weighted = hits.view(np.uint8)
    if small != np.uint8:
        weighted = weighted.astype(small)
    np.multiply(weighted, np.arange(c, 0, -1, dtype=small)[None, :, None], out=weighted)
    return np.subtract(small.type(c), weighted.max(axis=1), dtype=small), best


def _scores(x1: np.ndarray, centres: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """|c|^2 - 2 x.c for every restart, centre and point, as (r, c, n), from one BLAS product.

    ``x1`` is the points with a column of ones appended; the product with [-2 c, |c|^2] takes
    about half the time of adding |c|^2 afterwards, with the same rounding when the BLAS
    accumulates the inner sum in order (scaling by -2 is exact). ``out`` is an optional
    (r * c, n) buffer for the product.
    """
    r, c, dim = centres.shape
    flat = centres.reshape(r * c, dim)
    c_aug = np.column_stack([-2.0 * flat, np.einsum("kd,kd->k", flat, flat)])
    return np.matmul(c_aug, x1.T, out=out).reshape(r, c, -1)


def _distances(best: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Squared distances to the nearest centre, (r, n), from the label step's minimum scores
    ``best`` (|c|^2 - 2 x.c) and the points' squared norms ``xx``."""
    return np.maximum(best + xx[None, :], 0.0)


def kmeans_plus_plus(x: np.ndarray, k: int, n_init: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn: 2 + log k local trials), n_init restarts at once."""
    n, dim = x.shape
    trials = 2 + int(np.log(k))
    xx = np.einsum("nd,nd->n", x, x)
    x_aug = _augmented(x, xx)
    rows = np.arange(n_init)
    centres = np.empty((n_init, k, dim))
    centres[:, 0] = x[rng.integers(0, n, size=n_init)]
    closest = _sq_dists(x_aug, centres[:, :1])[:, 0]  # (r, n)
    for c in range(1, k):
        cum = np.cumsum(closest, axis=1)
        draws = rng.random((n_init, trials)) * cum[:, -1:]
        # shift row r by r * stride so that all rows form one increasing sequence
        offsets = (rows * (cum[:, -1].max() + 1.0))[:, None]
        cum += offsets
        draws += offsets
        flat = np.searchsorted(cum.ravel(), draws.ravel())
        cand = np.minimum(flat.reshape(n_init, trials) - rows[:, None] * n, n - 1)
        new_closest = _sq_dists(x_aug, x[cand])  # (r, t, n): each candidate's distances,
        np.minimum(new_closest, closest[:, None, :], out=new_closest)  # then the closest
        best = new_closest.sum(axis=2).argmin(axis=1)  # (r,)
        centres[:, c] = x[cand[rows, best]]
        closest = new_closest[rows, best]
    return centres


#: Below one moved label in this many, cluster sums are updated by the moved points alone.
MOVED_FRACTION = 20


def _cluster_sums(
    x: np.ndarray, labels: np.ndarray, k: int, work: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per restart, the sum of each cluster's points (r, k, d) and its size (r, k): the 0/1
    membership matrix (r, k, n) times the points, one BLAS product per restart. ``work`` is a
    pair of (r, k, n) buffers, boolean and float."""
    r, n = labels.shape
    member, member_float = work
    np.equal(labels[:, None, :], np.arange(k, dtype=labels.dtype)[None, :, None], out=member)
    np.copyto(member_float, member)
    flat = (labels + k * np.arange(r)[:, None]).ravel()
    return member_float @ x, np.bincount(flat, minlength=r * k).reshape(r, k).astype(float)


def _moved_sums(
    x: np.ndarray, old: np.ndarray, new: np.ndarray, moved: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The change of :func:`_cluster_sums` when labels ``old`` become ``new`` (both (r, n);
    ``moved`` marks where they differ): each moved point added to its new cluster and taken
    from its old one."""
    r, dim = old.shape[0], x.shape[1]
    rows, points = np.nonzero(moved)
    target = np.concatenate([rows * k + new[rows, points], rows * k + old[rows, points]])
    sign = np.repeat([1.0, -1.0], rows.size)
    index = (target[:, None] * dim + np.arange(dim)).ravel()
    points_twice = np.concatenate([x[points], -x[points]]).ravel()
    sums = np.bincount(index, points_twice, minlength=r * k * dim).reshape(r, k, dim)
    return sums, np.bincount(target, sign, minlength=r * k).reshape(r, k)


def kmeans(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    n_init: int = 25,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> tuple[np.ndarray, float]:
    """Lloyd's k-means from k-means++ seeds, all restarts at once; best inertia wins.

    A restart stops when its labels no longer change or its centres move less than ``tol``
    (relative to the mean per-feature variance, as in scikit-learn). Empty clusters take the
    point farthest from its centre. Returns (labels, inertia) of the best restart.

    Cluster sums are kept from one iteration to the next: once fewer than one label in
    :data:`MOVED_FRACTION` moves, only the moved points update them. The final centres are the
    means of the final labels computed afresh by the full product (as a restart's first means
    are), and the final labels and inertias come from scoring them.
    """
    n = x.shape[0]
    xx = np.einsum("nd,nd->n", x, x)
    x1 = np.column_stack([x, np.ones(n)])
    centres = kmeans_plus_plus(x, k, n_init, rng)
    tol_abs = tol * float(np.mean(np.var(x, axis=0)))
    labels = np.full((n_init, n), k, dtype=np.min_scalar_type(k))  # k: no label yet
    # work buffers reused by every iteration (fresh multi-megabyte arrays cost page faults)
    float_work, bool_work = np.empty(n_init * k * n), np.empty(n_init * k * n, dtype=bool)
    active = np.arange(n_init)
    sums, sizes = np.zeros((n_init, k, x.shape[1])), np.zeros((n_init, k))  # of each restart's clusters
    for step in range(max_iter):
        if active.size == 0:
            break
        size = active.size * k * n
        floats = float_work[:size].reshape(active.size, k, n)
        bools = bool_work[:size].reshape(active.size, k, n)
        scores = _scores(x1, centres[active], out=floats.reshape(active.size * k, n))
        new_labels, best = _first_argmin(scores, hits=bools)  # (a, n) each
        before = labels[active]
        moved = new_labels != before
        changed = moved.any(axis=1)
        labels[active] = new_labels
        if step == 0 or np.count_nonzero(moved) * MOVED_FRACTION > moved.size:
            sums[active], sizes[active] = _cluster_sums(x, new_labels, k, (bools, floats))
        else:
            delta_sums, delta_sizes = _moved_sums(x, before, new_labels, moved, k)
            sums[active] += delta_sums
            sizes[active] += delta_sizes
        counts = sizes[active]
        new = sums[active] / np.maximum(counts, 1.0)[:, :, None]
        empty = np.nonzero(counts == 0)
        if empty[0].size:  # distances only when a cluster needs the farthest point
            dist = _distances(best, xx)
            for r, c in zip(*empty, strict=True):
                far = int(dist[r].argmax())
                new[r, c] = x[far]
                dist[r, far] = -1.0
        shift = ((new - centres[active]) ** 2).sum(axis=(1, 2))
        centres[active] = new
        active = active[changed & (shift > tol_abs)]
    # final centres afresh from the final labels: the same bits as a restart's own means, whatever
    # rounding the moved-point updates of the sums carried; empty clusters keep their repair
    sums, sizes = _cluster_sums(x, labels, k, (bool_work.reshape(n_init, k, n), float_work.reshape(n_init, k, n)))
    filled = sizes > 0
    centres[filled] = sums[filled] / sizes[filled][:, None]
    final, best = _first_argmin(_scores(x1, centres))
    inertia = _distances(best, xx).sum(axis=1)
    winner = int(inertia.argmin())
    return final[winner].astype(np.intp), float(inertia[winner])
