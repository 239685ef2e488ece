"""The clusterability regulariser in Keras 3 (method.md §2.6): the penalty of
:mod:`nn_clustering.core.clusterability` written in ``keras.ops`` (so it runs on TensorFlow and
JAX alike), with the exact eigenvalue gradient as its custom gradient.

Differentiating through a symmetric eigensolver divides by the gaps between all pairs of
eigenvalues, and the normalised adjacency of a layered graph has repeated ones (zeros, whenever
its two sides differ in size), where those gaps are rounding noise; the closed form needs only
the penalised eigenpairs, and one pass over the weights. The eigenpairs come from one SVD of
the block between the graph's two sides (even and odd layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


def _sides(kernels: Sequence) -> tuple:
    """The layered graph as its two sides: the block B of |weights| from the units of even
    layers (rows) to those of odd layers (columns), every edge of the graph once, and where each
    layer's units start within its side."""
    sizes = [int(kernels[0].shape[0])] + [int(k.shape[1]) for k in kernels]
    offsets, counts = [], [0, 0]
    for i, size in enumerate(sizes):
        offsets.append(counts[i % 2])
        counts[i % 2] += size
    rows = []
    for i in range(0, len(sizes), 2):
        parts = []
        for j in range(1, len(sizes), 2):
            if j == i + 1:
                parts.append(ops.abs(kernels[i]))
            elif j == i - 1:
                parts.append(ops.transpose(ops.abs(kernels[j])))
            else:
                parts.append(ops.zeros((sizes[i], sizes[j]), dtype=kernels[0].dtype))
        rows.append(ops.concatenate(parts, axis=1))
    return ops.concatenate(rows, axis=0), sizes, offsets


def _inverse_sqrt(d):
    return ops.where(d > 0, 1.0 / ops.sqrt(ops.maximum(d, 1e-30)), 0.0)


def _eigenpairs(kernels: Sequence, n_eigs: int) -> tuple:
    """lambda_2 .. lambda_{n_eigs + 1} of the normalised Laplacian and, per layer, u = v /
    sqrt(degree) (zero on isolated nodes), one column per eigenvalue. The graph is bipartite
    between even and odd layers, so the largest eigenvalues of its normalised adjacency are the
    singular values of the scaled block between the sides, and an eigenvector is the pair of
    singular vectors over sqrt(2): one SVD of a matrix of a quarter of the adjacency's size."""
    b, sizes, offsets = _sides(kernels)
    s_rows, s_cols = _inverse_sqrt(ops.sum(b, axis=1)), _inverse_sqrt(ops.sum(b, axis=0))
    left, sigma, right_t = ops.svd(s_rows[:, None] * b * s_cols[None, :], full_matrices=False)
    take = slice(1, n_eigs + 1)  # singular values come in descending order; the first is 1
    sides = (left[:, take] * s_rows[:, None], ops.transpose(right_t[take, :]) * s_cols[:, None])
    scale = 2.0 ** -0.5
    u = [sides[i % 2][offsets[i]:offsets[i] + size] * scale for i, size in enumerate(sizes)]
    return 1.0 - sigma[take], u


def clusterability_penalty(kernels: Sequence, n_eigs: int = 3):
    """The mean of the ``n_eigs`` smallest non-trivial eigenvalues of the normalised Laplacian
    of the graph of ``kernels`` (backend tensors or variables), differentiable with respect to
    them by the exact formula of method.md §2.6."""

    @ops.custom_gradient
    def penalty(*ks):
        values, u = _eigenpairs(ks, n_eigs)

        def grad(*upstream, **_):
            (dy,) = upstream
            out = []
            for i, k in enumerate(ks):
                r, c = u[i], u[i + 1]
                g = ((1.0 - values)[None, None, :] * (r[:, None, :] ** 2 + c[None, :, :] ** 2)
                     - 2.0 * r[:, None, :] * c[None, :, :])
                out.append(dy * ops.sign(k) * ops.mean(g, axis=-1))
            return tuple(out)

        return ops.mean(values), grad

    return penalty(*kernels)


@keras.saving.register_keras_serializable(package="nn_clustering")
class ClusterabilityRegularised(keras.Sequential):
    """A Sequential model whose loss adds ``strength`` times the clusterability penalty of its
    Dense kernels: in training on every ``every``-th batch (1: every batch, as the successor
    paper; training and pruning alike), in evaluation always."""

    def __init__(self, layers=None, strength: float = 0.1, n_eigs: int = 3, every: int = 1, **kwargs):
        super().__init__(layers, **kwargs)
        self.strength, self.n_eigs, self.every = float(strength), int(n_eigs), int(every)
        # training batches seen (a model variable, so that JAX's compiled step updates it too)
        self.penalty_step = keras.Variable(0, dtype="int32", trainable=False, name="penalty_step")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        kernels = [layer.kernel for layer in self.layers if isinstance(layer, keras.layers.Dense)]

        def penalty():
            return self.strength * ops.cast(clusterability_penalty(kernels, self.n_eigs), loss.dtype)

        if self.every == 1 or not training:
            return loss + penalty()
        step = self.penalty_step.value
        self.penalty_step.assign(step + 1)
        return loss + ops.cond(ops.equal(step % self.every, 0), penalty, lambda: ops.zeros((), dtype=loss.dtype))

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "n_eigs": self.n_eigs, "every": self.every}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        settings = {name: config.pop(name, default) for name, default in (("strength", 0.1), ("n_eigs", 3), ("every", 1))}
        model = super().from_config(config, custom_objects=custom_objects)
        model.strength, model.n_eigs, model.every = (float(settings["strength"]), int(settings["n_eigs"]),
                                                     int(settings["every"]))
        return model
