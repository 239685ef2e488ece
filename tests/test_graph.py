"""Weights to graph: hand-built adjacencies, isolated nodes, channel norms, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from nn_clustering.errors import GraphError
from nn_clustering.graph import cnn_graph, conv_channel_weights, mlp_graph


def test_mlp_adjacency_matches_hand_construction():
    w0 = np.array([[1.0, -2.0, 0.0], [0.5, 0.0, -3.0]])  # 2 -> 3
    w1 = np.array([[4.0], [0.0], [-1.5]])  # 3 -> 1
    graph = mlp_graph([w0, w1])
    expected = np.zeros((6, 6))
    for i in range(2):
        for j in range(3):
            expected[i, 2 + j] = expected[2 + j, i] = abs(w0[i, j])
    for i in range(3):
        expected[2 + i, 5] = expected[5, 2 + i] = abs(w1[i, 0])
    np.testing.assert_array_equal(graph.adjacency.toarray(), expected)
    assert graph.layer_sizes == (2, 3, 1)
    assert graph.adjacency.diagonal().sum() == 0
    assert graph.adjacency.nnz == 2 * np.count_nonzero(expected[np.triu_indices(6)])


def test_isolated_nodes_removed_and_labels_mapped_back():
    w0 = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]])  # input 1 is dead
    w1 = np.array([[1.0, 0.0], [2.0, 0.0]])  # output 1 gets nothing
    graph = mlp_graph([w0, w1])
    np.testing.assert_array_equal(graph.active, [True, False, True, True, True, True, False])
    sub, layers = graph.without_isolated()
    assert sub.shape == (5, 5)
    np.testing.assert_array_equal(layers, [0, 0, 1, 1, 2])
    full = graph.expand_labels(np.array([0, 1, 0, 1, 0]))
    np.testing.assert_array_equal(full, [0, -1, 1, 0, 1, 0, -1])


def test_conv_channel_weights_are_entrywise_norms():
    k = np.arange(2 * 2 * 2 * 3, dtype=float).reshape(2, 2, 2, 3) - 10.0
    l1 = conv_channel_weights(k, "l1")
    l2 = conv_channel_weights(k, "l2")
    for i in range(2):
        for j in range(3):
            s = k[:, :, i, j]
            assert l1[i, j] == pytest.approx(sum(abs(v) for v in s.ravel()))
            assert l2[i, j] == pytest.approx(np.sqrt(sum(v * v for v in s.ravel())))
    graph = cnn_graph([k, np.ones((3, 3, 3, 4))])
    assert graph.layer_sizes == (2, 3, 4)
    assert graph.adjacency[0, 2 + 1] == pytest.approx(l1[0, 1])
    assert graph.adjacency[2, 5] == pytest.approx(9.0)


@pytest.mark.parametrize(
    "kernels, message",
    [
        ([np.array([[np.nan, 1.0]]), np.ones((2, 1))], "NaN/inf"),
        ([np.array([[np.inf, 1.0]])], "NaN/inf"),
        ([np.ones((3, 4)), np.ones((5, 2))], "do not chain"),
        ([np.ones((3, 0))], "empty"),
        ([np.ones((3, 4)), np.zeros((4, 2))], "all zeros"),
        ([np.ones(3)], "2-D"),
        ([], "no kernels"),
    ],
)
def test_bad_weights_give_clear_errors(kernels, message):
    with pytest.raises(GraphError, match=message):
        mlp_graph(kernels)
