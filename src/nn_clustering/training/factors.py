"""The successor paper's training factors that change a network before training (method.md
§2.5): the clusterable initialisation. (The L1 and L2 weight penalties are the layers' kernel
regularisers, :mod:`.architectures`.)

Pure numpy: the initial kernels in, the scaled kernels out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The weight multiplier between units of different modules: MLP kernels and conv slices.
DOWN_MLP = 0.6
DOWN_CNN = 0.8


def up_weight(down: float, n_modules: int) -> float:
    """The multiplier within a module, 1 + (1 - down) (n - 1): a unit's expected multiplier
    over uniformly drawn modules, (up + (n - 1) down) / n, is then 1."""
    return 1.0 + (1.0 - down) * (n_modules - 1)


def unit_modules(sizes: Sequence[int], n_modules: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A module in 0..n_modules - 1 for every unit of every layer, drawn uniformly and
    independently; the last layer's (the classes') unit i is module i when it has at most
    ``n_modules`` units."""
    out = [rng.integers(0, n_modules, size=n) for n in sizes]
    if sizes[-1] <= n_modules:
        out[-1] = np.arange(sizes[-1])
    return out


def clusterable_kernels(kernels: Sequence[np.ndarray], n_modules: int, rng: np.random.Generator,
                        down: float) -> list[np.ndarray]:
    """The kernels with the clusterable initialisation: every unit (of the input and of every
    layer) gets a module (:func:`unit_modules`), and each kernel entry (an MLP weight, or a conv
    kernel's whole slice K[..., i, j]) between units of one module is multiplied by
    :func:`up_weight`, between units of different modules by ``down``. The first kernel is left
    as it is (its inputs, pixels, are no units with a role of their own)."""
    sizes = [kernels[0].shape[-2]] + [k.shape[-1] for k in kernels]
    modules = unit_modules(sizes, n_modules, rng)
    up = up_weight(down, n_modules)
    out = [np.array(kernels[0], copy=True)]
    for i, k in enumerate(kernels[1:], start=1):
        same = modules[i][:, None] == modules[i + 1][None, :]
        out.append(np.asarray(k) * np.where(same, up, down).astype(np.asarray(k).dtype))
    return out
