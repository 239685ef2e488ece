"""Activation graphs, other partitioners and partition agreement (method.md §3.6, §4.1, §4.2,
§5.1), each against an independent oracle: numpy/scipy correlations, networkx's modularity,
scikit-learn's ARI and NMI, hand computations and planted sub-networks."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.stats
from error_lines import one_error_line
from model_files import onnx_mlp

from nn_clustering import CommunityPartition, NetworkWeights, ShuffleTest, SpectralNCut, cli
from nn_clustering import load_weights as nc_load_weights
from nn_clustering.core.activation_shuffle import (
    _pair_groups,
    activation_shuffle_test,
    shuffle_activation_weights,
)
from nn_clustering.core.activations import ActivationGraph, ActivationSums, correlation_of
from nn_clustering.core.agreement import adjusted_rand_index, normalised_mutual_info
from nn_clustering.core.enums import ActivationNull, Partitioner
from nn_clustering.core.modularity import eigengap_k, modularity
from nn_clustering.core.partition import community_labels, layer_partitions, partition_any
from nn_clustering.core.shuffle import ShuffleConfig
from nn_clustering.core.spectral import SpectralConfig
from nn_clustering.formats.activations import (
    build_activation_graph,
    build_layer_graphs,
    unit_runner,
)

# ----------------------------------------------------------------------------- correlations


def _stream(values: np.ndarray, measure: str, cuts=(3, 50, 51, 140)) -> ActivationSums:
    sums = ActivationSums(values.shape[1], measure)
    for part in np.split(values, list(cuts)):
        sums.update(part)
    return sums


def test_streamed_pearson_equals_numpy_even_with_large_means():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 7)) @ rng.normal(size=(7, 7)) + 1e4  # large means: the shift keeps digits
    got = _stream(values, "pearson").correlation()
    expected = np.corrcoef(values, rowvar=False)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    np.testing.assert_allclose(got, correlation_of(values), atol=1e-9)


def test_spearman_with_ties_equals_scipy():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, size=(150, 5)).astype(float)  # many ties
    values[:, 4] = values[:, 0] * 2 + rng.integers(0, 2, size=150)
    expected = scipy.stats.spearmanr(values).statistic
    np.fill_diagonal(expected, 0.0)
    sums = _stream(values, "spearman")
    np.testing.assert_allclose(sums.correlation(), expected, atol=1e-12)
    np.testing.assert_allclose(sums.weights(), expected**2, atol=1e-12)


def test_coactivation_is_the_share_of_examples_both_units_fire():
    acts = np.array([[1.0, 0.5, 0.0], [0.0, 2.0, 3.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    # units 0 and 1 both > 0 in rows 0 and 3; 0 and 2 in row 2; 1 and 2 in row 1
    expected = np.array([[0, 2, 1], [2, 0, 1], [1, 1, 0]]) / 4
    np.testing.assert_allclose(_stream(acts, "coactivation", cuts=(1, 3)).weights(), expected)


def test_dead_units_are_isolated_not_nan():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(100, 5))
    values[:, 2] = 3.25  # constant over the data
    for measure in ("pearson", "spearman"):
        w = _stream(values, measure, cuts=(40,)).weights()
        assert np.isfinite(w).all() and not w[2].any() and not w[:, 2].any()
    graph = ActivationGraph(_stream(values, "pearson", cuts=(40,)).weights(), (2, 3))
    assert graph.active.tolist() == [True, True, False, True, True]
    clustering = partition_any(graph, Partitioner.SPECTRAL, 2, seed=0)
    assert clustering.labels[2] == -1 and (np.delete(clustering.labels, 2) >= 0).all()


# ----------------------------------------------------------------------------- Q, eigengap, agreement


def _random_weighted_graph(seed: int, n: int = 30) -> nx.Graph:
    rng = np.random.default_rng(seed)
    g = nx.gnp_random_graph(n, 0.3, seed=seed)
    for u, v in g.edges:
        g[u][v]["weight"] = float(rng.uniform(0.1, 2.0))
    return g


@pytest.mark.parametrize("resolution", [1.0, 0.5, 2.0])
def test_modularity_equals_networkx(resolution):
    g = _random_weighted_graph(3)
    labels = np.random.default_rng(4).integers(0, 4, size=g.number_of_nodes())
    parts = [set(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    expected = nx.community.modularity(g, parts, weight="weight", resolution=resolution)
    adjacency = nx.to_scipy_sparse_array(g, weight="weight")
    assert modularity(adjacency, labels, resolution) == pytest.approx(expected, abs=1e-12)


def test_modularity_leaves_out_unlabelled_nodes():
    g = _random_weighted_graph(5)
    labels = np.random.default_rng(6).integers(0, 3, size=g.number_of_nodes())
    labels[:4] = -1
    sub = g.subgraph(range(4, g.number_of_nodes()))
    parts = [set(np.flatnonzero(labels == c)) for c in range(3)]
    expected = nx.community.modularity(sub, parts, weight="weight")
    assert modularity(nx.to_scipy_sparse_array(g, weight="weight"), labels) == pytest.approx(expected, abs=1e-12)


def _blocks(sizes, inside=1.0, between=0.01, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    a = np.where(labels[:, None] == labels[None, :], inside, between) * rng.uniform(0.8, 1.2, (labels.size,) * 2)
    a = (a + a.T) / 2
    np.fill_diagonal(a, 0.0)
    return a


def test_eigengap_finds_the_planted_number_of_blocks():
    assert eigengap_k(_blocks((10, 12, 8))) == 3
    assert eigengap_k(_blocks((6, 6, 6, 6, 6))) == 5


def test_ari_and_nmi_equal_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    for _ in range(5):
        a, b = rng.integers(0, 5, 60), rng.integers(0, 3, 60)
        b[:20] = a[:20]
        assert adjusted_rand_index(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)
        assert normalised_mutual_info(a, b) == pytest.approx(metrics.normalized_mutual_info_score(a, b), abs=1e-12)
    a = rng.integers(0, 4, 40)
    assert adjusted_rand_index(a, (a + 1) % 4) == 1.0
    assert normalised_mutual_info(a, (a + 1) % 4) == pytest.approx(1.0, abs=1e-12)
    # units labelled -1 in either partition are left out
    c = a.copy()
    c[:5] = -1
    assert adjusted_rand_index(a, c) == 1.0


# ----------------------------------------------------------------------------- partitioners


def test_leiden_is_deterministic_under_a_seed_and_finds_planted_blocks():
    a = _blocks((15, 15, 15), between=0.05, seed=1)
    truth = np.repeat(np.arange(3), 15)
    for partitioner in (Partitioner.LEIDEN, Partitioner.LOUVAIN):
        first = community_labels(a, partitioner, seed=11)
        np.testing.assert_array_equal(first, community_labels(a, partitioner, seed=11))
        assert adjusted_rand_index(first, truth) == 1.0
    g = _random_weighted_graph(8, n=60)
    adjacency = nx.to_scipy_sparse_array(g, weight="weight")
    runs = [community_labels(adjacency, Partitioner.LEIDEN, seed=s) for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_resolution_sets_the_scale_of_leiden_clusters():
    a = _blocks((10,) * 6, between=0.15, seed=2)
    few = community_labels(a, Partitioner.LEIDEN, resolution=0.2, seed=0).max() + 1
    many = community_labels(a, Partitioner.LEIDEN, resolution=1.0, seed=0).max() + 1
    assert few < many == 6


# ----------------------------------------------------------------------------- planted networks


def _planted_network(seed: int = 0, width: int = 8):
    """Two independent sub-networks side by side: inputs 0-5 feed units 0-7 of each hidden layer,
    inputs 6-11 units 8-15, all by positive weights; each half's inputs share one latent factor."""
    rng = np.random.default_rng(seed)

    def block(a: int, b: int) -> np.ndarray:
        k = np.zeros((2 * a, 2 * b), np.float32)
        k[:a, :b], k[a:, b:] = rng.uniform(0.2, 1, size=(a, b)), rng.uniform(0.2, 1, size=(a, b))
        return k

    kernels = [block(6, width), block(width, width), block(width, 2)]
    biases = [np.full(k.shape[1], -2.0, np.float32) for k in kernels]  # units fire when their half's latent is high
    n = 3000
    z = rng.normal(size=(n, 2))
    x = np.concatenate([z[:, [0]] + 0.3 * rng.normal(size=(n, 6)), z[:, [1]] + 0.3 * rng.normal(size=(n, 6))], 1)
    truth = np.tile(np.repeat([0, 1], width), 2)  # the two hidden layers' units
    return NetworkWeights.from_arrays(kernels, biases, source="planted"), x.astype(np.float32), truth


@pytest.mark.parametrize("measure", ["pearson", "spearman", "coactivation"])
def test_planted_sub_networks_are_recovered_from_activations(measure):
    weights, x, truth = _planted_network()
    graph = build_activation_graph(weights, x, measure)
    assert graph.layer_sizes == (8 * 2, 8 * 2) and graph.names == ("kernel_0", "kernel_1")
    found = partition_any(graph, Partitioner.SPECTRAL, 2, seed=0)
    live = found.labels >= 0
    assert adjusted_rand_index(found.labels[live], truth[live]) == 1.0
    for partitioner in (Partitioner.LEIDEN, Partitioner.LOUVAIN):
        found = partition_any(graph, partitioner, seed=0)
        assert adjusted_rand_index(found.labels, truth) == 1.0 and found.n_clusters == 2


@pytest.mark.parametrize("partitioner", ["leiden", "louvain"])
def test_planted_sub_networks_are_recovered_from_weights(partitioner):
    weights, _, _ = _planted_network()
    model = CommunityPartition(partitioner=partitioner, random_state=3).fit(weights)
    halves = np.concatenate([np.repeat([0, 1], n // 2) for n in (12, 16, 16, 4)])
    assert model.n_clusters_ == 2 and adjusted_rand_index(model.labels_, halves) == 1.0
    assert model.modularity_ == pytest.approx(0.5, abs=0.02)  # two equal halves with no edge between
    spectral = SpectralNCut(n_clusters=2, random_state=3).fit(weights)
    assert adjusted_rand_index(spectral.labels_, halves) == 1.0 and spectral.ncut_ == pytest.approx(0.0, abs=1e-12)


def test_weight_and_activation_partitions_agree_on_a_planted_network():
    weights, x, truth = _planted_network(seed=4)
    by_weights = SpectralNCut(n_clusters=2, random_state=0).fit(weights)
    by_acts = SpectralNCut(n_clusters=2, graph="activations", data=x, measure="pearson", random_state=0).fit(weights)
    hidden = np.concatenate(by_weights.labels_by_layer_[1:3])
    assert adjusted_rand_index(hidden, by_acts.labels_) == 1.0
    assert by_acts.layer_names_ == ["kernel_0", "kernel_1"] and set(by_acts.labels_by_name_) == {"kernel_0", "kernel_1"}
    assert by_acts.ncut_ < 0.05 and by_acts.modularity_ == pytest.approx(0.5, abs=0.02)


# ----------------------------------------------------------------------------- the null


def test_shuffles_keep_each_layer_pair_s_weights():
    rng = np.random.default_rng(9)
    graph = ActivationGraph(_blocks((4, 5, 3), seed=3), (4, 5, 3))
    live, _ = graph.without_isolated()
    layers = graph.layer_of_node
    for null in ActivationNull:
        out = shuffle_activation_weights(live, _pair_groups(graph, null), rng)
        np.testing.assert_array_equal(out, out.T)
        assert not np.diag(out).any()
        rows, cols = np.triu_indices(12, 1)
        assert sorted(out[rows, cols]) == sorted(live[rows, cols])
        if null == ActivationNull.LAYER_PAIRS:
            for pair in {(layers[i], layers[j]) for i, j in zip(rows, cols, strict=True)}:
                where = (layers[rows] == pair[0]) & (layers[cols] == pair[1])
                assert sorted(out[rows[where], cols[where]]) == sorted(live[rows[where], cols[where]])


def test_activation_shuffle_test_is_significant_for_planted_modules_and_reproducible():
    weights, x, _ = _planted_network(seed=5)
    graph = build_activation_graph(weights, x, "spearman")
    spectral = SpectralConfig(n_clusters=2)
    one = activation_shuffle_test(graph, spectral, ShuffleConfig(n_shuffles=19, random_state=3), progress=False)
    two = activation_shuffle_test(graph, spectral, ShuffleConfig(n_shuffles=19, random_state=3, n_jobs=2),
                                  progress=False)
    np.testing.assert_array_equal(one.shuffled_ncuts, two.shuffled_ncuts)
    assert one.stats.below_all and one.stats.significant
    test = ShuffleTest(n_clusters=2, n_shuffles=19, graph="activations", data=x, null="edges", random_state=3,
                       progress=False).fit(weights)
    assert test.below_all_ and test.ncut_ == pytest.approx(one.clustering.ncut)


# ----------------------------------------------------------------------------- runners and layers


def test_onnx_runner_equals_the_numpy_forward_pass(tmp_path):
    pytest.importorskip("onnxruntime")
    weights, x, _ = _planted_network(seed=6)
    path = onnx_mlp(tmp_path / "net.onnx", weights.kernels, weights.biases)
    by_onnx, by_numpy = unit_runner(path), unit_runner(weights)
    assert by_onnx.names == ("fc0", "fc1") and by_onnx.sizes == by_numpy.sizes == (16, 16)
    for a, b in zip(by_onnx.run(x[:50]), by_numpy.run(x[:50]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(build_activation_graph(path, x).weights, build_activation_graph(weights, x).weights,
                               atol=1e-6)


def test_keras_runner_equals_the_numpy_forward_pass():
    keras = pytest.importorskip("keras")
    weights, x, _ = _planted_network(seed=7)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="a"),
                              keras.layers.Dropout(0.5), keras.layers.Dense(16, activation="relu", name="b"),
                              keras.layers.Dense(4, name="out")])
    for layer, k, b in zip([m for m in model.layers if isinstance(m, keras.layers.Dense)], weights.kernels,
                           weights.biases, strict=True):
        layer.set_weights([k, b])
    by_keras = unit_runner(model)
    assert by_keras.names == ("a", "b")
    for a, b in zip(by_keras.run(x[:64]), unit_runner(weights).run(x[:64]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)  # Dropout is off when activations are read


def test_layer_graphs_partition_each_layer_on_its_own():
    weights, x, truth = _planted_network(seed=8)
    graphs = build_layer_graphs(weights, x, "pearson")
    assert [g.names for g in graphs] == [("kernel_0",), ("kernel_1",)]
    results = layer_partitions(graphs, Partitioner.SPECTRAL, n_clusters=2, random_state=1)
    for (row, labels), part in zip(results, np.split(truth, 2), strict=True):
        assert row.units == 16 and row.n_clusters == 2 and adjusted_rand_index(labels, part) == 1.0
    assert [r.as_dict() for r, _ in results] == [r.as_dict() for r, _ in layer_partitions(graphs, "spectral", 2,
                                                                                         random_state=1)]


# ----------------------------------------------------------------------------- the command line


@pytest.fixture
def planted_files(tmp_path):
    weights, x, _ = _planted_network(seed=9)
    model = tmp_path / "net.npz"
    np.savez(model, **{f"kernel_{i}": k for i, k in enumerate(weights.kernels)},
             **{f"bias_{i}": b for i, b in enumerate(weights.biases)})
    data = tmp_path / "inputs.npz"
    np.savez(data, x=x[:800])
    return model, data


def test_cli_clusters_activations_and_partitions_with_leiden(planted_files, tmp_path, capsys):
    model, data = planted_files
    out = tmp_path / "r.json"
    assert cli.main(["cluster", str(model), "--graph", "activations", "--data", str(data), "--k", "2",
                     "--shuffles", "19", "--quiet", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "spearman activation graph" in printed and "below all 19 shuffles" in printed
    record = json.loads(out.read_text())
    assert record["graph"] == "activations" and record["null"] == "layer_pairs" and len(record["labels"]) == 32
    assert cli.main(["cluster", str(model), "--partitioner", "leiden", "--graph", "activations", "--data",
                     str(data), "--measure", "pearson", "--output", str(tmp_path / "leiden.json")]) == 0
    assert "leiden (resolution 1): 2 clusters" in capsys.readouterr().out
    record = json.loads((tmp_path / "leiden.json").read_text())
    assert record["n_clusters"] == 2 and record["data"] == str(data) and len(record["layers"]) == 2
    assert cli.main(["cluster", str(model), "--graph", "activations", "--data", str(data), "--layerwise",
                     "--k", "2", "--quiet"]) == 0
    assert capsys.readouterr().out.count("units (") == 2


@pytest.mark.parametrize("extra, message", [
    (["--graph", "activations"], "needs --data"),
    (["--graph", "activations", "--data", "WRONG"], "values per example, but the network takes 12"),
    (["--graph", "activations", "--data", "CONSTANT", "--quiet"], "constant over these inputs"),
    (["--layerwise"], "add --graph activations"),
    (["--graph", "activations", "--data", "CONSTANT", "--drop-dead-ends"], "leave the option out"),
    (["--partitioner", "leiden", "--resolution", "-1"], "resolution must be a number above 0"),
    (["--graph", "activations", "--data", "MISSING"], "no such file"),
])
def test_cli_bad_activation_input_is_one_line(planted_files, tmp_path, capsys, extra, message):
    model, _ = planted_files
    np.savez(tmp_path / "wrong.npz", x=np.ones((10, 7)))
    np.savez(tmp_path / "constant.npz", x=np.ones((10, 12)))
    names = {"WRONG": "wrong.npz", "CONSTANT": "constant.npz", "MISSING": "missing.npz"}
    extra = [str(tmp_path / names[e]) if e in names else e for e in extra]
    assert message in one_error_line(capsys, cli.main(["cluster", str(model), *extra]))


def test_cli_refuses_to_run_a_network_it_cannot(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "cnn.npz"
    np.savez(path, kernel_0=rng.normal(size=(3, 3, 1, 4)), kernel_1=rng.normal(size=(3, 3, 4, 4)),
             bias_0=np.zeros(4), bias_1=np.zeros(4))
    np.savez(tmp_path / "images.npz", x=np.random.default_rng(1).random((5, 6, 6)))
    line = one_error_line(capsys, cli.main(["cluster", str(path), "--graph", "activations", "--data",
                                            str(tmp_path / "images.npz")]))
    assert "activation graphs are built for MLPs" in line


# ----------------------------------------------------------------------------- transformers

TRANSFORMERS = Path(__file__).parent / "fixtures" / "transformers"


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "bert"])
@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_transformer_mlp_units_equal_the_numpy_evaluation(family, exporter):
    """onnxruntime's MLP activations against the project's own numpy evaluator of the graph."""
    pytest.importorskip("onnxruntime")
    from onnx import load, numpy_helper

    from nn_clustering.formats.onnx_transformer import evaluate_graph, mlp_unit_tensors

    path = TRANSFORMERS / f"{family}.{exporter}.onnx"
    runner = unit_runner(path)
    weights = nc_load_weights(path)
    assert runner.tokens and runner.n_inputs == 8 and runner.batch == 1
    assert set(runner.names) <= set(weights.wiring.names)  # the weight graph's names for the same units
    ids = np.random.default_rng(0).integers(0, 40, size=(1, 8))
    graph = load(str(path)).graph
    ev = evaluate_graph(graph, str(path), numpy_helper.to_array, value=ids)
    units = mlp_unit_tensors(graph, str(path), numpy_helper.to_array)
    for (tensor, _, size), got in zip(units, runner.run(ids), strict=True):
        assert got.shape == (8, size)
        np.testing.assert_allclose(got, ev.values[tensor].reshape(8, size), atol=1e-5)


def test_cli_coactivation_of_a_transformer_layer_by_layer(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    ids = tmp_path / "tokens.npz"
    np.savez(ids, x=np.random.default_rng(1).integers(0, 50, size=(30, 8)))
    out = tmp_path / "layers.json"
    assert cli.main(["cluster", str(TRANSFORMERS / "gpt2.dynamo.onnx"), "--graph", "activations", "--data",
                     str(ids), "--measure", "coactivation", "--layerwise", "--k", "2", "--quiet",
                     "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "transformer.h.0.mlp.c_fc: 32 units" in printed and "transformer.h.1.mlp.c_fc: 32 units" in printed
    layers = json.loads(out.read_text())["layers"]
    assert [row["layer"] for row in layers] == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    np.savez(ids, x=np.ones((4, 5), np.int64))  # the fixtures were exported for 8 tokens
    line = one_error_line(capsys, cli.main(["cluster", str(TRANSFORMERS / "gpt2.dynamo.onnx"), "--graph",
                                            "activations", "--data", str(ids), "--layerwise", "--quiet"]))
    assert "sequences of 5 tokens, but the model was exported for 8" in line
    np.savez(ids, x=np.random.default_rng(2).random((4, 8)))  # images, not token ids
    line = one_error_line(capsys, cli.main(["cluster", str(TRANSFORMERS / "gpt2.dynamo.onnx"), "--graph",
                                            "activations", "--data", str(ids), "--quiet"]))
    assert "token ids of shape (4, 8) and type float64; give non-negative integers" in line


def test_eigengap_sparse_path_equals_the_dense_one(monkeypatch):
    import scipy.sparse as sp

    from nn_clustering.core import modularity as mod

    a = _blocks((30, 40, 50, 20), between=0.05, seed=4)
    dense = mod.laplacian_spectrum(a, 6)
    monkeypatch.setattr(mod, "DENSE_EIGENGAP", 10)
    np.testing.assert_allclose(mod.laplacian_spectrum(sp.csr_array(a), 6), dense, atol=1e-8)
    assert mod.eigengap_k(sp.csr_array(a)) == 4


def test_cli_suggests_k_by_the_eigengap(planted_files, capsys):
    model, data = planted_files
    assert cli.main(["cluster", str(model), "--graph", "activations", "--data", str(data), "--k", "2",
                     "--shuffles", "5", "--quiet", "--suggest-k"]) == 0
    assert "suggests k = 2" in capsys.readouterr().out


def test_keras_cnn_units_are_channel_means_as_a_numpy_convolution_gives_them():
    keras = pytest.importorskip("keras")
    from scipy.signal import correlate2d

    rng = np.random.default_rng(3)
    k0, k1 = rng.normal(size=(3, 3, 1, 4)), rng.normal(size=(3, 3, 4, 5))
    b0, b1 = rng.normal(size=4) * 0.1, rng.normal(size=5) * 0.1
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                                                           name="c0"),
                              keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="c1"),
                              keras.layers.Flatten(), keras.layers.Dense(3, name="out")])
    model.get_layer("c0").set_weights([k0, b0])
    model.get_layer("c1").set_weights([k1, b1])
    x = rng.random((7, 6, 6, 1)).astype(np.float32)

    def conv(images, kernel, bias):  # 'same' cross-correlation, channels last, then ReLU
        out = np.stack([sum(correlate2d(img[:, :, i], kernel[:, :, i, o], mode="same")
                            for i in range(kernel.shape[2])) + bias[o] for img in images
                        for o in range(kernel.shape[3])]).reshape(len(images), kernel.shape[3], 6, 6)
        return np.maximum(out.transpose(0, 2, 3, 1), 0)

    h0 = conv(x, k0, b0)
    h1 = conv(h0, k1, b1)
    runner = unit_runner(model)
    assert runner.names == ("c0", "c1") and runner.sizes == (4, 5) and runner.n_inputs == 36
    got = runner.run(x.reshape(7, -1))
    np.testing.assert_allclose(got[0], h0.mean(axis=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(got[1], h1.mean(axis=(1, 2)), atol=1e-5)
    assert SpectralNCut(n_clusters=2, graph="activations", data=x).fit(model).layer_names_ == ["c0", "c1"]


@pytest.mark.slow
def test_activation_shuffles_on_a_dask_local_cluster_are_the_local_ones():
    pytest.importorskip("dask.distributed")
    weights, x, _ = _planted_network(seed=10)
    graph = build_activation_graph(weights, x[:500], "pearson")
    spectral = SpectralConfig(n_clusters=2)
    local = activation_shuffle_test(graph, spectral, ShuffleConfig(n_shuffles=8, random_state=2), progress=False)
    dask = activation_shuffle_test(graph, spectral, ShuffleConfig(n_shuffles=8, random_state=2, n_jobs=2,
                                                                  scheduler="local"), progress=False)
    np.testing.assert_array_equal(local.shuffled_ncuts, dask.shuffled_ncuts)


def test_an_input_npz_whose_header_claims_a_huge_array_is_refused_before_reading(tmp_path, capsys, planted_files):
    import zipfile

    model, _ = planted_files
    bomb = tmp_path / "bomb.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 12), np.float32))
    header["shape"] = (10**9, 12)
    with zipfile.ZipFile(bomb, "w") as archive, archive.open("x.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 96)
    line = one_error_line(capsys, cli.main(["cluster", str(model), "--graph", "activations", "--data", str(bomb),
                                            "--quiet"]))
    assert "bomb.npz" in line and "x" in line


def test_an_onnx_cnn_gives_the_channel_means_its_keras_twin_gives(tmp_path):
    """The same CNN as a Keras file and as an ONNX file (the other format as the oracle; the Keras
    runner is checked against a numpy convolution above)."""
    pytest.importorskip("keras")
    pytest.importorskip("onnxruntime")
    from test_dag import cnn_arrays, keras_sequential, onnx_cnn

    kernels, biases = cnn_arrays()
    by_keras = unit_runner(keras_sequential(kernels, biases, tmp_path / "net.keras", conv=3, input_shape=(6, 6, 1)))
    by_onnx = unit_runner(onnx_cnn(tmp_path / "net.onnx", kernels, biases))
    assert by_onnx.names == ("conv0", "conv1", "conv2") and by_onnx.sizes == by_keras.sizes == (6, 8, 5)
    x = np.random.default_rng(4).random((20, 36)).astype(np.float32)
    for a, b in zip(by_onnx.run(x), by_keras.run(x), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    fit = SpectralNCut(n_clusters=2, graph="activations", data=x, measure="pearson").fit(tmp_path / "net.onnx")
    assert fit.layer_names_ == SpectralNCut(n_clusters=2).fit(tmp_path / "net.onnx").layer_names_
