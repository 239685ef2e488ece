"""Statistics of the shuffle and lesion tests (method.md §5 and §6): pure numpy."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


def empirical_p(observed: float, reference: np.ndarray) -> float:
    """One-sided empirical p-value (#{reference < observed} + 1) / (N + 1) of the lesion tests
    (method.md §6.1: random lesions that hurt *more* than the true one)."""
    reference = np.asarray(reference, dtype=np.float64)
    return float((np.count_nonzero(reference < observed) + 1) / (reference.size + 1))


def shuffle_p(observed: float, shuffled: np.ndarray) -> float:
    """The shuffle test's p-value (#{shuffled <= observed} + 1) / (N + 1) (method.md §5): a
    shuffle that ties with the observed n-cut counts against it, as it does against
    significance."""
    shuffled = np.asarray(shuffled, dtype=np.float64)
    return float((np.count_nonzero(shuffled <= observed) + 1) / (shuffled.size + 1))


def z_score(observed: float, mean: float, sd: float) -> float:
    """(observed - mean) / sd; +-inf when sd is 0 and observed differs, 0 when equal."""
    if sd > 0:
        return float((observed - mean) / sd)
    if observed == mean:
        return 0.0
    return math.copysign(math.inf, observed - mean)


@dataclass(frozen=True)
class ShuffleStats:
    """The observed n-cut against N shuffled n-cuts (method.md §5)."""

    observed: float
    mean: float
    sd: float
    z: float
    p_value: float
    significant: bool
    n: int

    def as_dict(self) -> dict[str, float | bool | int | None]:
        """Plain dict with non-finite values as None (JSON-safe)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def shuffle_stats(observed: float, shuffled: np.ndarray) -> ShuffleStats:
    """p = (#{s_i <= x} + 1) / (N + 1); mean, population sd (ddof 0), z; significant when p is
    its minimum 1 / (N + 1), i.e. the observed n-cut is strictly below every shuffle."""
    shuffled = np.asarray(shuffled, dtype=np.float64)
    if shuffled.size == 0:
        raise ValueError("no shuffled values")
    mean = float(shuffled.mean())
    sd = float(shuffled.std(ddof=0))
    p = shuffle_p(observed, shuffled)
    return ShuffleStats(
        observed=float(observed),
        mean=mean,
        sd=sd,
        z=z_score(observed, mean, sd),
        p_value=p,
        significant=bool(p == 1 / (shuffled.size + 1)),
        n=int(shuffled.size),
    )


def pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    """Pooled sample standard deviation of two samples (ddof 1 within each)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    dof = a.size + b.size - 2
    if dof <= 0:
        raise ValueError("need at least three values in total for a pooled SD")
    return float(np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / dof))


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d: (mean(a) - mean(b)) / pooled sample SD."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return z_score(float(a.mean()), float(b.mean()), pooled_sd(a, b))
