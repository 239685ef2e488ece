"""k-means++ and Lloyd's k-means for every restart at once (method.md §4): pure numpy.

The definition is scikit-learn's: greedy k-means++ seeding (2 + log k local trials), Lloyd
iterations until the labels stop changing or the centres move less than ``tol`` (relative to
the mean per-feature variance), an empty cluster takes the point farthest from its centre,
best inertia of ``n_init`` restarts wins. All restarts run together as batched numpy products.

Three things make it fast without changing the labels: the label step scores in float32 and
falls back to float64 for the points a rounding bound cannot decide (:func:`_label_step`); the
cluster sums are updated by the points that moved once few move (:func:`_moved_sums`); and the
work buffers are reused by every iteration.
"""

from __future__ import annotations

import numpy as np

#: Above one point in this many too close to call in float32, the label step is float64 throughout.
UNSURE_FRACTION = 16
#: Below one moved label in this many, cluster sums are updated by the moved points alone.
MOVED_FRACTION = 10


def _augmented(x: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The points as the rows [x, |x|^2, 1], transposed (contiguous), the right factor of
    :func:`_sq_dists`."""
    return np.vstack([x.T, xx, np.ones(len(x))])


def _sq_dists(x_aug_t: np.ndarray, centres: np.ndarray, upper: np.ndarray | None = None) -> np.ndarray:
    """Squared distances between the points and centres (r, c, d), as (r, c, n); each capped
    at ``upper`` (broadcast to (r, c, n)) when given.

    One BLAS product of [-2 c, 1, |c|^2] with [x, |x|^2, 1]^T (``x_aug_t``, :func:`_augmented`),
    in less time than three steps. A BLAS that accumulates the inner sum in order (OpenBLAS's
    kernels do) adds -2 x.c, then |x|^2, then |c|^2: the same rounding as the three steps
    done apart. Rounding can leave a tiny negative number, which is raised to 0.
    """
    r, c, dim = centres.shape
    flat = centres.reshape(r * c, dim)
    c_aug = np.column_stack([-2.0 * flat, np.ones(r * c), np.einsum("kd,kd->k", flat, flat)])
    d = (c_aug @ x_aug_t).reshape(r, c, -1)
    np.maximum(d, 0.0, out=d)
    return d if upper is None else np.minimum(d, upper, out=d)


def _first_true(hits: np.ndarray) -> np.ndarray:
    """The first index along the middle axis of a boolean (r, c, n) array where it is true (c
    where none is), faster than argmax along a middle axis: index j is weighted c - j where
    true, so the largest weight (a maximum of small unsigned integers) marks the first. Labels
    come back in the smallest unsigned type that holds c; ``hits`` is overwritten."""
    c = hits.shape[1]
    small = np.min_scalar_type(c)
    weighted = hits.view(np.uint8)
    if small != np.uint8:
        weighted = weighted.astype(small)
    np.multiply(weighted, np.arange(c, 0, -1, dtype=small)[None, :, None], out=weighted)
    return np.subtract(small.type(c), weighted.max(axis=1), dtype=small)


def _first_argmin(scores: np.ndarray, hits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``scores.argmin(axis=1)`` and the minima of an (r, c, n) array, faster than argmin
    along a middle axis: the minimum, then the first index attaining it (:func:`_first_true`).
    ``hits`` is an optional boolean (r, c, n) work buffer."""
    best = scores.min(axis=1)
    return _first_true(np.equal(scores, best[:, None, :], out=hits)), best


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
    x_aug_t = _augmented(x, xx)
    rows = np.arange(n_init)
    centres = np.empty((n_init, k, dim))
    centres[:, 0] = x[rng.integers(0, n, size=n_init)]
    closest = _sq_dists(x_aug_t, centres[:, :1])[:, 0]  # (r, n)
    for c in range(1, k):
        cum = np.cumsum(closest, axis=1)
        draws = rng.random((n_init, trials)) * cum[:, -1:]
        # shift row r by r * stride so that all rows form one increasing sequence
        offsets = (rows * (cum[:, -1].max() + 1.0))[:, None]
        cum += offsets
        draws += offsets
        flat = np.searchsorted(cum.ravel(), draws.ravel())
        cand = np.minimum(flat.reshape(n_init, trials) - rows[:, None] * n, n - 1)
        new_closest = _sq_dists(x_aug_t, x[cand], upper=closest[:, None, :])  # (r, t, n)
        best = new_closest.sum(axis=2).argmin(axis=1)  # (r,)
        centres[:, c] = x[cand[rows, best]]
        closest = new_closest[rows, best]
    return centres


def _float32_error(dim: int) -> float:
    """Bound on |float32 score - float64 score| per unit of max |c|^2 + 2 |x| max |c|, for
    points and centres of ``dim`` coordinates: the inputs' rounding to float32 (3 roundings per
    term), the float32 sum of the dim + 1 terms and the float64 sum's own rounding, with a
    safety factor of 2 (:func:`_label_step`)."""
    return 2.0 * ((dim + 4) * 2.0**-24 + (dim + 1) * 2.0**-53)


#: Points (hence centres, their means) of at most this size keep float32 scores far from overflow.
FLOAT32_RANGE = 1e15


class _Points:
    """The points as the Lloyd steps use them: as given (``x``) with their squared norms
    (``xx``), float64 with a column of ones, the same in float32 (transposed) and their float32
    norms; ``float32`` says whether they are within :data:`FLOAT32_RANGE`."""

    def __init__(self, x: np.ndarray, xx: np.ndarray) -> None:
        self.x, self.xx = x, xx
        self.float32 = bool(np.abs(x).max(initial=0.0) <= FLOAT32_RANGE)
        self.x1 = np.column_stack([x, np.ones(len(x))])
        self.x1_32_t = np.ascontiguousarray(self.x1.T, dtype=np.float32)
        self.norms_32 = np.sqrt(xx).astype(np.float32)
        self.error = _float32_error(x.shape[1])


def _label_step(
    points: _Points, centres: np.ndarray, scores_32: np.ndarray, hits: np.ndarray, floats: np.ndarray
) -> np.ndarray:
    """The labels (r, n) of the float64 label step (the first nearest centre), decided in float32
    where a rounding bound proves them.

    A point's float32 score for a centre differs from the float64 one by at most
    ``E = error * (max |c|^2 + 2 |x| max |c|)`` (:func:`_float32_error`), so the float64 first
    minimum scores at most 2 E above the float32 minimum in float32. Where no other centre
    scores within that margin the float32 argmin is it; the other points (ties, near-ties, and
    anything that underflows in float32) are scored in float64, one by one, or all
    points by one product when they are more than one in :data:`UNSURE_FRACTION`. ``scores_32``, ``hits`` and
    ``floats`` are (r, c, n) work buffers: float32, boolean and float64. Points beyond
    :data:`FLOAT32_RANGE` are scored in float64 throughout.
    """
    r, c, dim = centres.shape
    if not points.float32:
        return _first_argmin(_scores(points.x1, centres, out=floats.reshape(r * c, -1)), hits)[0]
    flat = centres.reshape(r * c, dim)
    sq = np.einsum("kd,kd->k", flat, flat)
    c_aug = np.column_stack([-2.0 * flat, sq])
    np.matmul(c_aug.astype(np.float32), points.x1_32_t, out=scores_32.reshape(r * c, -1))
    threshold = scores_32.min(axis=1)  # (r, n)
    largest = sq.reshape(r, c).max(axis=1)  # max |c|^2 per restart
    margin = 2.0 * points.error
    threshold += np.multiply.outer((2.0 * margin * np.sqrt(largest)).astype(np.float32), points.norms_32)
    threshold += (margin * largest + np.finfo(np.float32).tiny).astype(np.float32)[:, None]
    np.less_equal(scores_32, threshold[:, None, :], out=hits)
    near = np.add.reduce(hits.view(np.uint8), axis=1, dtype=np.min_scalar_type(c))
    unsure = np.flatnonzero(near != 1)  # flat indices: much faster than a 2-d nonzero
    if unsure.size * UNSURE_FRACTION > near.size:
        return _first_argmin(_scores(points.x1, centres, out=floats.reshape(r * c, -1)), hits)[0]
    labels = _first_true(hits)
    if unsure.size:
        rows, cols = np.divmod(unsure, near.shape[1])
        exact = np.einsum("mcd,md->mc", c_aug.reshape(r, c, dim + 1)[rows], points.x1[cols])
        labels[rows, cols] = exact.argmin(axis=1)
    return labels


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
    where = np.flatnonzero(moved)  # flat indices: much faster than a 2-d nonzero
    rows, points = np.divmod(where, moved.shape[1])
    into, out_of = rows * k + new.ravel()[where], rows * k + old.ravel()[where]
    moving = x[points].ravel()
    columns = np.arange(dim)
    sums = np.bincount((into[:, None] * dim + columns).ravel(), moving, minlength=r * k * dim)
    sums -= np.bincount((out_of[:, None] * dim + columns).ravel(), moving, minlength=r * k * dim)
    sizes = np.bincount(into, minlength=r * k) - np.bincount(out_of, minlength=r * k)
    return sums.reshape(r, k, dim), sizes.reshape(r, k)


class _Work:
    """Work buffers reused by every iteration (fresh multi-megabyte arrays cost page faults):
    room for an (r, k, n) float64, boolean and float32 array, for up to ``n_init`` restarts."""

    def __init__(self, n_init: int, k: int, n: int) -> None:
        self.k, self.n = k, n
        self.floats, self.bools = np.empty(n_init * k * n), np.empty(n_init * k * n, dtype=bool)
        self.floats_32 = np.empty(n_init * k * n, dtype=np.float32)

    def views(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The float32, boolean and float64 buffers' first r * k * n entries, as (r, k, n)."""
        size, shape = r * self.k * self.n, (r, self.k, self.n)
        floats = self.floats[:size].reshape(shape)
        bools = self.bools[:size].reshape(shape)
        return self.floats_32[:size].reshape(shape), bools, floats


def _update_sums(
    points: _Points,
    before: np.ndarray,
    after: np.ndarray,
    moved: np.ndarray,
    first: bool,
    state: tuple[np.ndarray, np.ndarray, np.ndarray],
    work: tuple[np.ndarray, np.ndarray],
) -> None:
    """Bring the active restarts' cluster sums and sizes up to date with their new labels.

    Parameters
    ----------
    points : _Points
        The points.
    before, after : numpy.ndarray
        The active restarts' labels before and after the label step, (a, n).
    moved : numpy.ndarray
        Where ``before`` and ``after`` differ, boolean (a, n).
    first : bool
        Whether this is the first iteration (no sums yet).
    state : tuple of numpy.ndarray
        ``(sums, sizes, active)``: every restart's cluster sums (r, k, d) and sizes (r, k),
        updated in place at the rows ``active`` (a,).
    work : tuple of numpy.ndarray
        Boolean and float64 (a, k, n) work buffers (:func:`_cluster_sums`).

    Notes
    -----
    On the first iteration, or when more than one label in :data:`MOVED_FRACTION` moved, the
    sums are recomputed (:func:`_cluster_sums`); otherwise the moved points update them
    (:func:`_moved_sums`).
    """
    sums, sizes, active = state
    k = sums.shape[1]
    if first or np.count_nonzero(moved) * MOVED_FRACTION > moved.size:
        sums[active], sizes[active] = _cluster_sums(points.x, after, k, work)
    else:
        delta_sums, delta_sizes = _moved_sums(points.x, before, after, moved, k)
        sums[active] += delta_sums
        sizes[active] += delta_sizes


def _fill_empty(points: _Points, new: np.ndarray, counts: np.ndarray, centres: np.ndarray) -> None:
    """Give each empty cluster the point farthest from its centre (scikit-learn's repair).

    Parameters
    ----------
    points : _Points
        The points.
    new : numpy.ndarray
        The active restarts' new centres (a, k, d); empty clusters' rows are overwritten.
    counts : numpy.ndarray
        The active restarts' cluster sizes (a, k).
    centres : numpy.ndarray
        The active restarts' current centres (a, k, d), which the distances are measured to.

    Notes
    -----
    Distances are computed only for restarts with an empty cluster. Within a restart the
    empty clusters take the farthest points in turn, each point at most once.
    """
    empty = np.nonzero(counts == 0)
    if not empty[0].size:
        return
    rows = np.unique(empty[0])
    dist = np.zeros((len(counts), len(points.xx)))
    dist[rows] = _distances(_first_argmin(_scores(points.x1, centres[rows]))[1], points.xx)
    for r, c in zip(*empty, strict=True):
        far = int(dist[r].argmax())
        new[r, c] = points.x[far]
        dist[r, far] = -1.0


def _lloyd(points: _Points, centres: np.ndarray, max_iter: int, tol_abs: float, work: _Work) -> np.ndarray:
    """Lloyd iterations of every restart at once.

    Parameters
    ----------
    points : _Points
        The points.
    centres : numpy.ndarray
        The restarts' seeds (r, k, d); updated in place to their last centres.
    max_iter : int
        Most iterations of a restart.
    tol_abs : float
        A restart stops once its centres move (summed squared shift) no more than this.
    work : _Work
        Work buffers for r restarts.

    Returns
    -------
    numpy.ndarray
        The restarts' last labels (r, n), in the smallest unsigned type that holds k.
    """
    n_init, k, dim = centres.shape
    labels = np.full((n_init, len(points.xx)), k, dtype=np.min_scalar_type(k))  # k: no label yet
    active = np.arange(n_init)
    sums, sizes = np.zeros((n_init, k, dim)), np.zeros((n_init, k))  # of each restart's clusters
    for step in range(max_iter):
        if active.size == 0:
            break
        scores_32, bools, floats = work.views(active.size)
        new_labels = _label_step(points, centres[active], scores_32, bools, floats)
        before = labels[active]
        moved = new_labels != before
        changed = moved.any(axis=1)
        labels[active] = new_labels
        _update_sums(points, before, new_labels, moved, step == 0, (sums, sizes, active), (bools, floats))
        counts = sizes[active]
        new = sums[active] / np.maximum(counts, 1.0)[:, :, None]
        _fill_empty(points, new, counts, centres[active])
        shift = ((new - centres[active]) ** 2).sum(axis=(1, 2))
        centres[active] = new
        active = active[changed & (shift > tol_abs)]
    return labels


def _best_restart(points: _Points, centres: np.ndarray, labels: np.ndarray, work: _Work) -> tuple[np.ndarray, float]:
    """The labels and inertia of the restart with the least inertia.

    Parameters
    ----------
    points : _Points
        The points.
    centres : numpy.ndarray
        The restarts' last centres (r, k, d); non-empty clusters' are replaced by their means.
    labels : numpy.ndarray
        The restarts' last labels (r, n).
    work : _Work
        Work buffers for r restarts.

    Returns
    -------
    labels : numpy.ndarray
        The winning restart's labels (n,), as ``numpy.intp``.
    inertia : float
        Its sum of squared distances to the nearest centre.

    Notes
    -----
    The centres are the means of the labels computed afresh by the full product: the same bits
    as a restart's own means, whatever rounding the moved-point updates of the sums carried;
    empty clusters keep their repair. Labels and inertias come from scoring them in float64.
    """
    k = centres.shape[1]
    sums, sizes = _cluster_sums(points.x, labels, k, work.views(len(labels))[1:])
    filled = sizes > 0
    centres[filled] = sums[filled] / sizes[filled][:, None]
    final, best = _first_argmin(_scores(points.x1, centres))
    inertia = _distances(best, points.xx).sum(axis=1)
    winner = int(inertia.argmin())
    return final[winner].astype(np.intp), float(inertia[winner])


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
    are), and the final labels and inertias come from scoring them in float64.
    """
    points = _Points(x, np.einsum("nd,nd->n", x, x))
    centres = kmeans_plus_plus(x, k, n_init, rng)
    tol_abs = tol * float(np.mean(np.var(x, axis=0)))
    work = _Work(n_init, k, x.shape[0])
    labels = _lloyd(points, centres, max_iter, tol_abs, work)
    return _best_restart(points, centres, labels, work)
