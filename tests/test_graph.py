"""Weights to graph: hand-built adjacencies, isolated nodes, channel norms, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from nn_clustering.core.graph import cnn_graph, conv_channel_weights, mlp_graph
from nn_clustering.errors import GraphError


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


def test_dead_ends_removed_by_hand_example():
    """Units on no input-to-output path lose their edges, through a chain: hidden unit b2 has
    no outgoing weight, so it goes and takes input x0 (whose only edge fed b2) with it; c1 has
    no outgoing weight, so it goes and strands b1 (whose only outgoing edge fed c1); c0 has no
    incoming weight and goes too. Edges among the remaining nodes are unchanged."""
    w0 = np.array([[0.0, 0.0, 1.0],   # x0 -> b2 only
                   [1.0, 2.0, 0.0],   # x1 -> b0, b1
                   [3.0, 0.0, 4.0]])  # x2 -> b0, b2
    w1 = np.array([[0.0, 0.0, 7.0],   # b0 -> c2 only
                   [0.0, 6.0, 0.0],   # b1 -> c1 only
                   [0.0, 0.0, 0.0]])  # b2: no outgoing weight
    w2 = np.array([[1.0, 1.0],        # c0 -> outputs (but c0 has no incoming weight)
                   [0.0, 0.0],        # c1: no outgoing weight
                   [2.0, -3.0]])      # c2 -> o0, o1
    graph = mlp_graph([w0, w1, w2])
    live = graph.without_dead_ends()
    # nodes: x0 x1 x2 | b0 b1 b2 | c0 c1 c2 | o0 o1
    expected = np.array([0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1], bool)
    np.testing.assert_array_equal(live.active, expected)
    dense_before = graph.adjacency.toarray()
    dense_after = live.adjacency.toarray()
    np.testing.assert_array_equal(dense_after[np.ix_(expected, expected)], dense_before[np.ix_(expected, expected)])
    assert not dense_after[~expected].any()
    # already live graphs are unchanged
    full = mlp_graph([np.ones((3, 2)), np.ones((2, 2))])
    np.testing.assert_array_equal(full.without_dead_ends().adjacency.toarray(), full.adjacency.toarray())
