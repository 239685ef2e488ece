"""The clusterability regulariser in Keras 3 (method.md §2.6): the penalty of
:mod:`nn_clustering.core.clusterability` written in ``keras.ops`` (so it runs on TensorFlow and
JAX alike), with the exact eigenvalue gradient as its custom gradient.

Differentiating through a symmetric eigensolver divides by the gaps between all pairs of
eigenvalues, and the normalised adjacency of a layered graph has repeated ones (zeros, whenever
its two sides differ in size), where those gaps are rounding noise; the closed form needs only
the penalised eigenpairs, and one pass over the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


def _adjacency(kernels: Sequence) -> tuple:
    """The dense symmetric adjacency of the layered graph of |kernels| and the layer starts."""
    sizes = [int(kernels[0].shape[0])] + [int(k.shape[1]) for k in kernels]
    starts = [0]
    for s in sizes:
        starts.append(starts[-1] + s)
    rows = []
    for i, size in enumerate(sizes):
        parts = []
        for j, other in enumerate(sizes):
            if j == i + 1:
                parts.append(ops.abs(kernels[i]))
            elif j == i - 1:
                parts.append(ops.transpose(ops.abs(kernels[j])))
            else:
                parts.append(ops.zeros((size, other), dtype=kernels[0].dtype))
        rows.append(ops.concatenate(parts, axis=1))
    return ops.concatenate(rows, axis=0), starts


def _eigenpairs(kernels: Sequence, n_eigs: int) -> tuple:
    """lambda_2 .. lambda_{n_eigs + 1} of the normalised Laplacian and u = v / sqrt(degree)
    (zero on isolated nodes), one column per eigenvalue."""
    a, starts = _adjacency(kernels)
    d = ops.sum(a, axis=1)
    s = ops.where(d > 0, 1.0 / ops.sqrt(ops.maximum(d, 1e-30)), 0.0)
    mu, v = ops.eigh(s[:, None] * a * s[None, :])
    n = int(a.shape[0])
    take = slice(n - n_eigs - 1, n - 1)
    return 1.0 - mu[take], v[:, take] * s[:, None], starts


def clusterability_penalty(kernels: Sequence, n_eigs: int = 3):
    """The mean of the ``n_eigs`` smallest non-trivial eigenvalues of the normalised Laplacian
    of the graph of ``kernels`` (backend tensors or variables), differentiable with respect to
    them by the exact formula of method.md §2.6."""

    @ops.custom_gradient
    def penalty(*ks):
        values, u, starts = _eigenpairs(ks, n_eigs)

        def grad(*upstream, **_):
            (dy,) = upstream
            out = []
            for i, k in enumerate(ks):
                r, c = u[starts[i]:starts[i + 1]], u[starts[i + 1]:starts[i + 2]]
                g = ((1.0 - values)[None, None, :] * (r[:, None, :] ** 2 + c[None, :, :] ** 2)
                     - 2.0 * r[:, None, :] * c[None, :, :])
                out.append(dy * ops.sign(k) * ops.mean(g, axis=-1))
            return tuple(out)

        return ops.mean(values), grad

    return penalty(*kernels)


@keras.saving.register_keras_serializable(package="nn_clustering")
class ClusterabilityRegularised(keras.Sequential):
    """A Sequential model whose training loss adds ``strength`` times the clusterability
    penalty of its Dense kernels (every batch, training and pruning alike)."""

    def __init__(self, layers=None, strength: float = 0.1, n_eigs: int = 3, **kwargs):
        super().__init__(layers, **kwargs)
        self.strength, self.n_eigs = float(strength), int(n_eigs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        kernels = [layer.kernel for layer in self.layers if isinstance(layer, keras.layers.Dense)]
        return loss + self.strength * clusterability_penalty(kernels, self.n_eigs)

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "n_eigs": self.n_eigs}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        strength, n_eigs = config.pop("strength", 0.1), config.pop("n_eigs", 3)
        model = super().from_config(config, custom_objects=custom_objects)
        model.strength, model.n_eigs = float(strength), int(n_eigs)
        return model
