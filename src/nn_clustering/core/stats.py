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


def exceed_p(observed: float, reference: np.ndarray) -> float:
    """The right-sided empirical p-value (#{reference > observed} + 1) / (N + 1): random values
    above the observed one (method.md §6.3's class range)."""
    reference = np.asarray(reference, dtype=np.float64)
    return float((np.count_nonzero(reference > observed) + 1) / (reference.size + 1))


def shuffle_p(observed: float, shuffled: np.ndarray) -> float:
    """The shuffle test's p-value (#{shuffled <= observed} + 1) / (N + 1) (method.md §5): a
    shuffle that ties with the observed n-cut counts against it, as it does against
    significance."""
    shuffled = np.asarray(shuffled, dtype=np.float64)
    return float((np.count_nonzero(shuffled <= observed) + 1) / (shuffled.size + 1))


def z_score(observed: float, mean: float, sd: float) -> float:
    """(observed - mean) / sd; NaN (undefined) when sd is 0: a spread of zero gives no scale
    on which to measure the distance, whatever it is."""
    if sd > 0:
        return float((observed - mean) / sd)
    return math.nan


#: The significance level of the shuffle test unless the caller chooses another.
DEFAULT_LEVEL = 0.05


def smallest_p(n: int) -> float:
    """The smallest p-value that ``n`` shuffles can give, 1 / (N + 1)."""
    return 1.0 / (n + 1)


def shuffles_needed(level: float) -> int:
    """The fewest shuffles N whose smallest p-value 1 / (N + 1) is at most ``level``."""
    return max(1, math.ceil(1.0 / level - 1.0 - 1e-9))


@dataclass(frozen=True)
class ShuffleStats:
    """The observed n-cut against N shuffled n-cuts (method.md §5).

    ``significant`` is the claim at ``level``: p <= level, which N shuffles can support only
    when their smallest p-value 1 / (N + 1) is at most the level (``reachable``); with fewer
    shuffles no claim is made. ``below_all`` is the paper's criterion: the observed n-cut lies
    strictly below every shuffle, i.e. p = 1 / (N + 1), the test at the strictest level N
    shuffles can reach. ``z`` is NaN (undefined) when the shuffles' SD is 0.
    """

    observed: float
    mean: float
    sd: float
    z: float
    p_value: float
    significant: bool
    n: int
    level: float = DEFAULT_LEVEL
    below_all: bool = False

    @property
    def reachable(self) -> bool:
        """Whether N shuffles can reach the level at all: 1 / (N + 1) <= level."""
        return smallest_p(self.n) <= self.level

    def verdict(self) -> str:
        """The p-value and the claim it supports, in words; a note instead of a claim when N
        is too small to reach the level (used by the command line and the notebooks)."""
        p = f"p {self.p_value:.4g}"
        if not self.reachable:
            return (f"{p}, no significance claim: {self.n} shuffle{'s' if self.n != 1 else ''} cannot reach "
                    f"p <= {self.level:g} (the smallest p is 1/(N+1) = {smallest_p(self.n):.4g}); use at least "
                    f"{shuffles_needed(self.level)} shuffles")
        if not self.significant:
            return f"{p} > {self.level:g} -> not significantly more clusterable than its shuffles"
        below = f", below all {self.n} shuffles" if self.below_all else ""
        return f"{p} <= {self.level:g}{below} -> significantly more clusterable than its shuffles"

    def as_dict(self) -> dict[str, float | bool | int | None]:
        """Plain dict with non-finite values as None (JSON-safe)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def shuffle_stats(observed: float, shuffled: np.ndarray, level: float = DEFAULT_LEVEL) -> ShuffleStats:
    """p = (#{s_i <= x} + 1) / (N + 1); mean, population sd (ddof 0), z; significant when
    p <= ``level`` (never when 1 / (N + 1) > level); below_all when p = 1 / (N + 1)."""
    shuffled = np.asarray(shuffled, dtype=np.float64)
    if shuffled.size == 0:
        raise ValueError("no shuffled values")
    mean = float(shuffled.mean())
    sd = float(shuffled.std(ddof=0))
    p = shuffle_p(observed, shuffled)
    n = int(shuffled.size)
    return ShuffleStats(
        observed=float(observed),
        mean=mean,
        sd=sd,
        z=z_score(observed, mean, sd),
        p_value=p,
        significant=bool(smallest_p(n) <= level and p <= level),
        n=n,
        level=float(level),
        below_all=bool(np.count_nonzero(shuffled <= observed) == 0),
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


def fisher_combined_p(p_values: np.ndarray, n: int) -> float:
    """Fisher's combination of one network's lesion p-values (method.md §6.3): each empirical
    p = (r + 1) / (n + 1) from ``n`` random lesions is first moved half a step down,
    p - 1 / (2 (n + 1)), the midpoint of the p-values its rank r stands for (so that a p of 1 does
    not count as no evidence at all and the smallest p is not pinned to its bound); then
    X = -2 sum ln p_i, whose distribution under the null is chi-square with 2m degrees of freedom
    for m p-values, gives P(chi2_2m >= X). NaN for no p-values."""
    from scipy.stats import chi2

    p = np.asarray(p_values, np.float64) - 1.0 / (2 * (n + 1))
    if p.size == 0:
        return math.nan
    return float(chi2.sf(-2.0 * np.log(p).sum(), 2 * p.size))


def rank_count_test(p_values: np.ndarray, n: int) -> tuple[float, float]:
    """The chi-square count test of one network's lesion p-values (method.md §6.3): each
    empirical p = (r + 1) / (n + 1) is the rank r in 0..n of the true lesion among ``n`` random
    ones, uniform on 0..n under the null; the counts of the m ranks in those n + 1 categories
    against m / (n + 1) each give Pearson's statistic and its P(chi2_n >= statistic). NaN for no
    p-values."""
    from scipy.stats import chi2

    p = np.asarray(p_values, np.float64)
    if p.size == 0:
        return math.nan, math.nan
    ranks = np.rint(p * (n + 1)).astype(np.int64) - 1
    if ranks.min() < 0 or ranks.max() > n:
        raise ValueError(f"p-values outside (0, 1] for {n} random lesions")
    counts = np.bincount(ranks, minlength=n + 1)
    expected = p.size / (n + 1)
    statistic = float(((counts - expected) ** 2 / expected).sum())
    return statistic, float(chi2.sf(statistic, n))
