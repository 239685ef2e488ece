"""The weights type: a network's kernels (and biases where known) in layer order.

Every reader (``.npz``, Keras) produces a :class:`NetworkWeights`; the graph builders and the
lesion tests consume it. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from .dag import Wiring
from .enums import Architecture


@dataclass
class NetworkWeights:
    """Kernels (and biases where known) in layer order, and the network kind.

    ``kind`` is :attr:`Architecture.MLP` for Dense kernels (in, out) only and
    :attr:`Architecture.CNN` when conv kernels (h, w, in, out) come first. ``names`` are the
    layers' names where the file records them. ``wiring`` describes a network that is not a
    single chain (residual sums, concatenations); None for a chain of layers.
    """

    kernels: list[np.ndarray]
    biases: list[np.ndarray] = field(default_factory=list)
    kind: Architecture = Architecture.MLP
    source: str = ""
    names: list[str] = field(default_factory=list)
    wiring: Wiring | None = None

    @classmethod
    def from_arrays(cls, kernels, biases=(), source: str = "") -> NetworkWeights:
        """Weights from kernels in layer order (the kind follows from their ranks)."""
        kernels = [np.asarray(k) for k in kernels]
        return cls(kernels, [np.asarray(b) for b in biases], network_kind(kernels, source), source)

    def layer_name(self, i: int) -> str:
        """The name of weighted layer i (``kernel_i`` where the file records none)."""
        return self.names[i] if i < len(self.names) else f"kernel_{i}"

    @property
    def conv_kernels(self) -> list[np.ndarray]:
        """The conv kernels (4-D), in order; empty for an MLP."""
        return [k for k in self.kernels if np.ndim(k) == 4]


def network_kind(kernels: list[np.ndarray], source: str = "") -> Architecture:
    """``cnn`` if there are conv kernels (which must come before any dense one), else ``mlp``."""
    dims = [np.ndim(k) for k in kernels]
    if 4 not in dims:
        return Architecture.MLP
    if dims != sorted(dims, reverse=True) or set(dims) - {2, 4}:
        raise ModelError(
            f"{source or 'weights'}: kernel ranks {dims}; expected conv kernels (4-D) followed by dense "
            "ones (2-D), in layer order"
        )
    return Architecture.CNN
