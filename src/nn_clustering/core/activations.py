"""Activation graphs (method.md §3.6): units joined by how alike their activations are over a
dataset. Pure numpy and scipy.

:class:`ActivationSums` takes a group's activations batch by batch and keeps float64 sums of
products, so memory grows with the number of units squared and not with the number of examples
(Spearman, which needs every unit's ranks over the whole dataset, keeps the group's activations as
float32 until it ranks them). :class:`ActivationGraph` is the resulting graph: one node per unit,
layer by layer, a zero diagonal, and dead units (constant over the dataset, or never active)
isolated rather than NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import scipy.stats

from ..errors import GraphError
from .enums import Measure
from .nodes import LayeredNodes
from .parameters import checked


@dataclass
class ActivationSums:
    """Running sums over examples of one group of ``n_units`` units.

    ``update`` takes a batch of shape (examples, units). Pearson keeps the sum of each unit's
    activation and of every pair's product, both about a fixed shift (the first batch's means) so
    that large means do not cancel digits; co-activation keeps the count of examples on which both
    units exceed ``threshold``; Spearman keeps the activations themselves.
    """

    n_units: int
    measure: Measure = Measure.PEARSON
    threshold: float = 0.0
    count: int = 0
    shift: np.ndarray | None = None
    sums: np.ndarray = field(init=False)
    products: np.ndarray = field(init=False)
    kept: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.measure = checked("measure", self.measure)
        self.sums = np.zeros(self.n_units)
        self.products = np.zeros((self.n_units, self.n_units))

    def update(self, batch: np.ndarray) -> None:
        """Add a batch of activations, shape (examples, units)."""
        batch = np.asarray(batch)
        if batch.ndim != 2 or batch.shape[1] != self.n_units:
            raise GraphError(f"a batch of activations of shape {batch.shape} for a group of {self.n_units} units; "
                             "give (examples, units)")
        if not np.isfinite(batch).all():
            raise GraphError("the activations hold NaN or infinite values; check the model and its inputs")
        self.count += batch.shape[0]
        if self.measure == Measure.SPEARMAN:
            self.kept.append(batch.astype(np.float32))
        elif self.measure == Measure.COACTIVATION:
            active = (batch > self.threshold).astype(np.float32)
            self.products += (active.T @ active).astype(np.float64)  # exact: counts below 2**24 per batch
            self.sums += active.sum(axis=0, dtype=np.float64)
        else:
            centred = self._centred(batch)
            self.sums += centred.sum(axis=0)
            self.products += centred.T @ centred

    def _centred(self, batch: np.ndarray) -> np.ndarray:
        batch = batch.astype(np.float64)
        if self.shift is None:
            self.shift = batch.mean(axis=0)
        return batch - self.shift

    def correlation(self) -> np.ndarray:
        """Pearson (or Spearman) correlation of every pair of units; 0 for a dead unit's pairs and
        on the diagonal."""
        if self.measure == Measure.COACTIVATION:
            raise GraphError("co-activation has no correlation; read weights()")
        if self.count < 2:
            raise GraphError(f"correlations need at least 2 examples, got {self.count}")
        if self.measure == Measure.SPEARMAN:
            values = np.concatenate(self.kept).astype(np.float64)
            dead = _dead(values.mean(axis=0), values.var(axis=0))
            ranks = scipy.stats.rankdata(values, axis=0)  # average ranks for ties
            return correlation_of(ranks, dead)
        mean = self.sums / self.count
        covariance = self.products / self.count - np.outer(mean, mean)
        return _normalised(covariance, _dead(mean + self.shift, np.diag(covariance)))

    def weights(self) -> np.ndarray:
        """The graph's edge weights: r squared, or the share of examples on which both units are
        active; a zero diagonal."""
        if self.measure == Measure.COACTIVATION:
            if self.count == 0:
                raise GraphError("co-activation needs at least 1 example")
            out = self.products / self.count
            np.fill_diagonal(out, 0.0)
            return out
        return self.correlation() ** 2


#: A unit whose activations' variance is at most this share of their mean square is dead: constant
#: over the data up to the rounding of a float32 forward pass (which can differ between the rows of
#: one batch by a few units in the last place).
DEAD_VARIANCE = 1e-12


def _dead(mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Units constant over the data (up to rounding): variance <= DEAD_VARIANCE * mean square."""
    variance = np.clip(variance, 0.0, None)
    return variance <= DEAD_VARIANCE * (mean**2 + variance)


def _normalised(covariance: np.ndarray, dead: np.ndarray | None = None) -> np.ndarray:
    """Correlation from a covariance matrix; rows and columns of zero-variance (or ``dead``)
    units are 0."""
    variance = np.clip(np.diag(covariance).copy(), 0.0, None)
    live = variance > 0 if dead is None else (variance > 0) & ~dead
    scale = np.zeros_like(variance)
    scale[live] = 1.0 / np.sqrt(variance[live])
    out = covariance * np.outer(scale, scale)
    np.clip(out, -1.0, 1.0, out=out)
    np.fill_diagonal(out, 0.0)
    return out


def correlation_of(values: np.ndarray, dead: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of the columns of ``values`` (examples, units) in one pass, constant
    (or ``dead``) columns 0 and a zero diagonal: the reference that :class:`ActivationSums`
    streams."""
    values = np.asarray(values, np.float64)
    mean = values.mean(axis=0)
    centred = values - mean
    covariance = centred.T @ centred / len(values)
    return _normalised(covariance, _dead(mean, np.diag(covariance)) if dead is None else dead)


@dataclass
class ActivationGraph(LayeredNodes):
    """A dense, symmetric activation graph over the units of named layers, in layer order.

    ``weights`` (n, n) has a zero diagonal; a unit with no edge (dead) is isolated.
    """

    weights: np.ndarray
    layer_sizes: tuple[int, ...]
    names: tuple[str, ...] = ()
    measure: Measure = Measure.PEARSON

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, np.float64)
        n = int(sum(self.layer_sizes))
        if w.shape != (n, n):
            raise GraphError(f"activation weights of shape {w.shape} for {n} units in layers {self.layer_sizes}")
        if not np.allclose(w, w.T) or (w < 0).any() or np.diag(w).any():
            raise GraphError("activation weights must be symmetric, non-negative and zero on the diagonal")
        self.weights = w
        self.layer_sizes = tuple(int(s) for s in self.layer_sizes)
        if not self.names:
            self.names = tuple(f"layer_{i}" for i in range(len(self.layer_sizes)))

    @cached_property
    def degrees(self) -> np.ndarray:
        """Weighted degree of every unit."""
        return self.weights.sum(axis=1)

    @cached_property
    def active(self) -> np.ndarray:
        """Units with at least one edge."""
        return self.degrees > 0

    def without_isolated(self, dense: bool = True) -> tuple[np.ndarray | sp.csr_array, np.ndarray]:
        """The adjacency among the non-isolated units, and their layer indices."""
        keep = self.active
        sub = self.weights[np.ix_(keep, keep)]
        return (sub if dense else sp.csr_array(sub)), self.layer_of_node[keep]
