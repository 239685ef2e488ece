"""The clusterability regulariser in Keras 3 (method.md §2.6): the penalty of
:mod:`nn_clustering.core.clusterability` written in ``keras.ops`` (so it runs on TensorFlow and
JAX alike), differentiable with its exact gradient.

The graph is bipartite between even and odd layers, so the largest eigenvalues 1 - lambda of its
normalised adjacency are the singular values of the scaled block M = D_r^-1/2 B D_c^-1/2 between
the two sides, and an eigenvector is a pair (x, y) of singular vectors over sqrt(2). Then
lambda = 1 - x^T M y, and with x and y held fixed this Rayleigh quotient has the eigenvalue's
exact derivative (its eigenvector's own change drops out at an eigenvector), so the backend
differentiates M alone, through the degrees and |w|: no derivative of an eigensolver, whose
division by the gaps between all pairs of eigenvalues breaks down on the repeated ones a layered
graph has.

In training the singular pairs are tracked from step to step: a few subspace iterations from the
previous step's basis, accepted when every penalised pair's residual ||M^T x - sigma y|| is below
:data:`TOLERANCE`, otherwise replaced by a full SVD (the first step always is).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

#: Subspace iterations per training step, extra basis vectors beyond the penalised ones, and the
#: largest residual of a penalised singular pair accepted without a full SVD.
ITERATIONS = 2
EXTRA = 4
TOLERANCE = 1e-4


def _magnitude(w):
    """|w| with derivative sign(w) (0 at w = 0, where a pruned weight stays)."""
    return w * ops.stop_gradient(ops.sign(w))


def layer_sizes(kernels: Sequence) -> list[int]:
    """The units of each layer of the graph of ``kernels``, inputs first."""
    return [int(kernels[0].shape[0])] + [int(k.shape[1]) for k in kernels]


def _block(kernels: Sequence):
    """The layered graph as the block B of |weights| from the units of even layers (rows) to
    those of odd layers (columns): every edge of the graph once."""
    sizes = layer_sizes(kernels)
    rows = []
    for i in range(0, len(sizes), 2):
        parts = []
        for j in range(1, len(sizes), 2):
            if j == i + 1:
                parts.append(_magnitude(kernels[i]))
            elif j == i - 1:
                parts.append(ops.transpose(_magnitude(kernels[j])))
            else:
                parts.append(ops.zeros((sizes[i], sizes[j]), dtype=kernels[0].dtype))
        rows.append(ops.concatenate(parts, axis=1))
    return ops.concatenate(rows, axis=0)


def _inverse_sqrt(d):
    return ops.where(d > 0, 1.0 / ops.sqrt(ops.maximum(d, 1e-30)), 0.0)


def _scaled_block(kernels: Sequence):
    """M = D_r^-1/2 B D_c^-1/2, differentiable with respect to the kernels."""
    b = _block(kernels)
    return _inverse_sqrt(ops.sum(b, axis=1))[:, None] * b * _inverse_sqrt(ops.sum(b, axis=0))[None, :]


def basis_width(kernels: Sequence, n_eigs: int) -> int:
    """Columns of the tracked basis: the trivial pair, the penalised ones and :data:`EXTRA`,
    at most the smaller side."""
    sizes = layer_sizes(kernels)
    return min(n_eigs + 1 + EXTRA, sum(sizes[0::2]), sum(sizes[1::2]))


def _full_svd(m, width: int) -> tuple:
    left, sigma, right_t = ops.svd(m, full_matrices=False)
    return left[:, :width], sigma[:width], ops.transpose(right_t[:width, :])


def _tracked_svd(m, basis, iterations: int = ITERATIONS) -> tuple:
    """The leading singular pairs of ``m`` from subspace iterations on ``basis`` (columns in the
    row space), with a Rayleigh-Ritz step: m (basis z) = x sigma exactly."""
    for _ in range(iterations):
        basis, _ = ops.qr(ops.matmul(ops.transpose(m), ops.matmul(m, basis)))
    left, sigma, z_t = ops.svd(ops.matmul(m, basis), full_matrices=False)
    return left, sigma, ops.matmul(basis, ops.transpose(z_t))


def _rayleigh_penalty(m, left, right, n_eigs: int):
    """The mean of lambda_i = 1 - x_i^T M y_i over the penalised pairs 1 .. n_eigs (pair 0 is
    the trivial one, sigma = 1), x and y held fixed."""
    take = slice(1, n_eigs + 1)
    return ops.mean(1.0 - ops.sum(left[:, take] * ops.matmul(m, right[:, take]), axis=0))


def clusterability_penalty(kernels: Sequence, n_eigs: int = 3):
    """The mean of the ``n_eigs`` smallest non-trivial eigenvalues of the normalised Laplacian
    of the graph of ``kernels`` (backend tensors or variables), from a full SVD, differentiable
    with respect to them by the exact formula of method.md §2.6."""
    m = _scaled_block(kernels)
    left, _, right = _full_svd(ops.stop_gradient(m), n_eigs + 1)
    return _rayleigh_penalty(m, left, right, n_eigs)


def tracked_penalty(kernels: Sequence, n_eigs: int, basis) -> tuple:
    """:func:`clusterability_penalty` from singular pairs tracked from ``basis`` (see the module
    docstring); returns the penalty, the next basis and 1 where a full SVD was needed (else 0)."""
    m = _scaled_block(kernels)
    fixed = ops.stop_gradient(m)
    left, sigma, right = _tracked_svd(fixed, ops.stop_gradient(basis))
    take = slice(0, n_eigs + 1)
    residual = ops.max(ops.norm(ops.matmul(ops.transpose(fixed), left[:, take]) - right[:, take] * sigma[None, take],
                                axis=0))
    converged = ops.logical_and(residual <= TOLERANCE, ops.all(ops.isfinite(sigma)))
    left, sigma, right = ops.cond(converged, lambda: (left, sigma, right),
                                  lambda: _full_svd(fixed, int(basis.shape[1])))
    return _rayleigh_penalty(m, left, right, n_eigs), right, 1 - ops.cast(converged, "int32")


@keras.saving.register_keras_serializable(package="nn_clustering")
class ClusterabilityRegularised(keras.Sequential):
    """A Sequential model whose loss adds ``strength`` times the clusterability penalty of its
    Dense kernels: in training on every ``every``-th batch (1: every batch, as the successor
    paper; training and pruning alike) from tracked singular pairs, in evaluation always, from a
    full SVD. ``penalty_step`` counts training batches and ``penalty_refreshes`` the full SVDs."""

    def __init__(self, layers=None, strength: float = 0.1, n_eigs: int = 3, every: int = 1, **kwargs):
        super().__init__(layers, **kwargs)
        self.strength, self.n_eigs, self.every = float(strength), int(n_eigs), int(every)
        # model variables, so that JAX's compiled step updates them too
        self.penalty_step = keras.Variable(0, dtype="int32", trainable=False, name="penalty_step")
        self.penalty_refreshes = keras.Variable(0, dtype="int32", trainable=False, name="penalty_refreshes")
        if self._kernels():
            self._make_basis()

    def _make_basis(self) -> None:
        """The tracked basis: orthonormal columns over the odd layers' units, a fixed start
        (the first training step replaces it by a full SVD's)."""
        kernels = self._kernels()
        start = np.linalg.qr(np.random.default_rng(0).normal(
            size=(sum(layer_sizes(kernels)[1::2]), basis_width(kernels, self.n_eigs))))[0]
        self.penalty_basis = keras.Variable(start.astype("float32"), trainable=False, name="penalty_basis")

    def _kernels(self) -> list:
        return [layer.kernel for layer in self.layers if isinstance(layer, keras.layers.Dense)]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        kernels = self._kernels()
        if not training:
            return loss + self.strength * ops.cast(clusterability_penalty(kernels, self.n_eigs), loss.dtype)
        basis = ops.cast(self.penalty_basis.value, kernels[0].dtype)

        def penalty():
            value, new_basis, refreshed = tracked_penalty(kernels, self.n_eigs, basis)
            return self.strength * ops.cast(value, loss.dtype), new_basis, refreshed

        if self.every == 1:
            value, basis, refreshed = penalty()
        else:
            step = self.penalty_step.value
            value, basis, refreshed = ops.cond(ops.equal(step % self.every, 0), penalty,
                                               lambda: (ops.zeros((), dtype=loss.dtype), basis,
                                                        ops.zeros((), dtype="int32")))
        self.penalty_step.assign(self.penalty_step.value + 1)
        self.penalty_refreshes.assign(self.penalty_refreshes.value + refreshed)
        self.penalty_basis.assign(ops.cast(basis, self.penalty_basis.dtype))
        return loss + value

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "n_eigs": self.n_eigs, "every": self.every}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        settings = {name: config.pop(name, default) for name, default in (("strength", 0.1), ("n_eigs", 3), ("every", 1))}
        model = super().from_config(config, custom_objects=custom_objects)
        model.strength, model.n_eigs, model.every = (float(settings["strength"]), int(settings["n_eigs"]),
                                                     int(settings["every"]))
        model._make_basis()
        return model
