"""The graph of a network as the tests build it, and the comparison of two graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nn_clustering.core.graph import NetworkWeights, graph_inputs
from nn_clustering.formats.loader import load_weights


def graph_of(network: NetworkWeights | str | Path):
    """The graph of ``network`` (read weights, or a model file read first)."""
    kernels, builder = graph_inputs(network if isinstance(network, NetworkWeights) else load_weights(network))
    return builder(kernels)


def same_graph(a, b, rtol: float | None = None) -> None:
    """Equal node groups and equal adjacency: entry for entry and of one graph type when ``rtol``
    is None, otherwise to relative ``rtol`` (files that store float32, where a hand computation
    multiplies in float64)."""
    assert tuple(a.layer_sizes) == tuple(b.layer_sizes)
    if rtol is None:
        assert type(a) is type(b)
        assert (a.adjacency != b.adjacency).nnz == 0
    else:
        np.testing.assert_allclose(a.adjacency.toarray(), b.adjacency.toarray(), rtol=rtol, atol=0)
