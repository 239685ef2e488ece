"""Graphs of directed acyclic networks and the model readers (method.md §3): the same network
as .npz, .keras, ONNX and a safetensors state_dict gives the same graph; residual sums and
concatenations give the hand-computed edge blocks; unsupported models get one clear line."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from graphs import graph_of, same_graph
from model_files import float32, onnx_conv, onnx_mlp, save_onnx

from nn_clustering import NetworkWeights, SpectralNCut, load_weights
from nn_clustering.core.dag import DagGraph, Feed, Piece, Wiring
from nn_clustering.core.graph import (
    Graph,
    conv_channel_weights,
    dag_graph,
    graph_inputs,
    group_names,
)
from nn_clustering.core.shuffle import ShuffleConfig, shuffle_kernels, shuffle_test
from nn_clustering.core.spectral import SpectralConfig, cluster_graph
from nn_clustering.errors import ModelError
from nn_clustering.formats.wiring import WiringRecorder

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

# --------------------------------------------------------------------------- hand-computed


def residual_recorder(ka, kb, kc, kd) -> NetworkWeights:
    """conv a reads the input; b and c read a; d reads b + c."""
    rec = WiringRecorder("hand")
    x = rec.input(ka.shape[2])
    a = rec.weighted("a", ka, None, x, linear=False)
    b = rec.weighted("b", kb, None, a, linear=False)
    c = rec.weighted("c", kc, None, a, linear=False)
    rec.weighted("d", kd, None, rec.add("sum", [b, c]), linear=False)
    return rec.finish()


@pytest.mark.parametrize("seed", range(40))
def test_adjacency_is_the_canonical_csr_of_the_blocks_added_both_ways(seed, monkeypatch):
    """Random groups and blocks (dense, sparse and empty ones, blocks both ways between two
    groups, a group's block to itself, groups with no edges): the CSR equals the dense matrix
    with each block and its transpose added by hand, entry for entry, with sorted indices and no
    stored zeros, also when a row group is laid out in several chunks."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr("nn_clustering.core.dag.CHUNK_ENTRIES", int(rng.choice([1, 7, 2**22])))
    sizes = tuple(int(n) for n in rng.integers(1, 9, rng.integers(1, 6)))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pairs = {(int(rng.integers(len(sizes))), int(rng.integers(len(sizes)))) for _ in range(rng.integers(0, 8))}
    edges, expected = [], np.zeros((starts[-1], starts[-1]))
    for s, t in sorted(pairs):
        density = rng.choice([0.0, 0.5, 1.0])
        block = np.abs(rng.normal(size=(sizes[s], sizes[t]))) * (rng.random((sizes[s], sizes[t])) < density)
        edges.append((s, t, block))
        expected[starts[s] : starts[s + 1], starts[t] : starts[t + 1]] += block
        expected[starts[t] : starts[t + 1], starts[s] : starts[s + 1]] += block.T
    adjacency = DagGraph(sizes, tuple(edges)).adjacency
    np.testing.assert_array_equal(adjacency.toarray(), expected)
    assert adjacency.has_sorted_indices and np.all(adjacency.data != 0) and adjacency.nnz == np.count_nonzero(expected)


def test_residual_sum_has_exactly_the_expected_edge_blocks():
    rng = np.random.default_rng(0)
    ka, kb, kc, kd = (float32(rng, 3, 3, n_in, n_out, sparsity=0.3)
                      for n_in, n_out in ((2, 4), (4, 3), (4, 3), (3, 5)))
    weights = residual_recorder(ka, kb, kc, kd)
    assert weights.wiring is not None and group_names(weights) == ["a", "b", "c", "d"]
    graph = graph_of(weights)
    assert isinstance(graph, DagGraph) and graph.layer_sizes == (4, 3, 3, 5)
    # by hand: nodes a0-3, b4-6, c7-9, d10-14; b and c both reach d with d's channel weights
    l1 = [np.abs(k.astype(np.float64)).sum(axis=(0, 1)) for k in (kb, kc, kd)]
    expected = np.zeros((15, 15))
    expected[0:4, 4:7], expected[0:4, 7:10] = l1[0], l1[1]
    expected[4:7, 10:15], expected[7:10, 10:15] = l1[2], l1[2]
    expected += expected.T
    np.testing.assert_array_equal(graph.adjacency.toarray(), expected)


def test_concatenation_feeds_each_source_its_own_slice():
    rng = np.random.default_rng(1)
    k1, k2, k3 = float32(rng, 6, 4), float32(rng, 6, 2), float32(rng, 6, 3)
    rec = WiringRecorder("concat")
    x = rec.input(6)
    h1 = rec.weighted("h1", k1, None, x, linear=False)
    h2 = rec.weighted("h2", k2, None, x, linear=False)
    joined = rec.concat("cat", [h1, h2])
    assert joined.size == 6
    rec.weighted("out", k3, None, joined, linear=False)
    graph = graph_of(rec.finish())
    a = graph.adjacency.toarray()
    # groups: input 0-5, h1 6-9, h2 10-11, out 12-14; h1 feeds k3's rows 0-3, h2 rows 4-5
    np.testing.assert_array_equal(a[6:10, 12:15], np.abs(k3[:4]))
    np.testing.assert_array_equal(a[10:12, 12:15], np.abs(k3[4:]))
    np.testing.assert_array_equal(a[0:6, 6:10], np.abs(k1))
    assert not a[6:12, 6:12].any()


def test_chain_wiring_gives_todays_graph():
    rng = np.random.default_rng(2)
    kernels = [float32(rng, 10, 6), float32(rng, 6, 4), float32(rng, 4, 3)]
    chain = Wiring(("input", "l0", "l1", "l2"), (10, 6, 4, 3),
                   tuple(Feed(i + 1, (Piece(i, 0, 0, n),)) for i, n in enumerate((10, 6, 4))), (0, 1, 2))
    assert chain.is_chain()
    graph = dag_graph(kernels, chain)
    assert isinstance(graph, Graph)
    same_graph(graph, graph_of(NetworkWeights.from_arrays(kernels)))


def test_dag_ncut_matches_networkx_and_dense_equals_sparse():
    rng = np.random.default_rng(3)
    ka, kb, kc, kd = (float32(rng, 3, 3, n_in, n_out, sparsity=0.2)
                      for n_in, n_out in ((2, 30), (30, 25), (30, 25), (25, 40)))
    graph = graph_of(residual_recorder(ka, kb, kc, kd))
    config = SpectralConfig(2)
    dense = cluster_graph(graph, config, seed=0, solver="dense")
    sparse = cluster_graph(graph, config, seed=0, solver="sparse")
    np.testing.assert_allclose(sparse.ncut, dense.ncut, rtol=0, atol=1e-9)
    assert np.array_equal(sparse.labels == sparse.labels[0], dense.labels == dense.labels[0])
    g = nx.from_scipy_sparse_array(graph.adjacency)
    side = set(np.flatnonzero(dense.labels == 0).tolist())
    oracle = nx.normalized_cut_size(g, side, set(g) - side, weight="weight")
    assert dense.ncut == pytest.approx(oracle, rel=1e-12)


def test_planted_modules_of_a_residual_network_are_recovered():
    """Two residual towers that share nothing: k = 2 must split them exactly."""
    rng = np.random.default_rng(4)
    rec = WiringRecorder("towers")
    x = rec.input(40)
    parts = []
    for t in range(2):
        stem = np.zeros((40, 30), np.float32)
        stem[t * 20:(t + 1) * 20] = float32(rng, 20, 30, sparsity=0.2)
        h = rec.weighted(f"stem{t}", stem, None, x, linear=False)
        r = rec.weighted(f"res{t}", float32(rng, 30, 30, sparsity=0.2), None, h, linear=False)
        parts.append(rec.add(f"sum{t}", [h, r]))
    joined = rec.concat("cat", parts)
    head = np.zeros((60, 20), np.float32)
    head[:30, :10], head[30:, 10:] = float32(rng, 30, 10, sparsity=0.2), float32(rng, 30, 10, sparsity=0.2)
    rec.weighted("head", head, None, joined, linear=False)
    weights = rec.finish()
    graph = graph_of(weights)
    labels = cluster_graph(graph, SpectralConfig(2), seed=0).labels
    groups = dict(zip(group_names(weights), graph.split_by_layer(labels), strict=True))
    tower0 = np.concatenate([groups["input"][:20], groups["stem0"], groups["res0"], groups["head"][:10]])
    tower1 = np.concatenate([groups["input"][20:], groups["stem1"], groups["res1"], groups["head"][10:]])
    tower0, tower1 = tower0[tower0 >= 0], tower1[tower1 >= 0]
    assert len(set(tower0)) == 1 and len(set(tower1)) == 1 and tower0[0] != tower1[0]


def test_shuffles_move_every_block_derived_from_a_kernel():
    rng = np.random.default_rng(5)
    ka, kb, kc, kd = (float32(rng, 3, 3, n_in, n_out, sparsity=0.3)
                      for n_in, n_out in ((2, 6), (6, 5), (6, 5), (5, 7)))
    weights = residual_recorder(ka, kb, kc, kd)
    kernels, builder = graph_inputs(weights)
    shuffled = builder(shuffle_kernels(kernels, "layer", np.random.default_rng(0)))
    blocks = {(s, t): b for s, t, b in shuffled.edges}
    np.testing.assert_array_equal(blocks[(1, 3)], blocks[(2, 3)])  # both from d's shuffled kernel
    assert not np.array_equal(blocks[(1, 3)], conv_channel_weights(kd))
    np.testing.assert_allclose(np.sort(blocks[(1, 3)].ravel()), np.sort(conv_channel_weights(kd).ravel()))
    result = shuffle_test(kernels, SpectralConfig(2), ShuffleConfig(n_shuffles=4, random_state=1), builder, progress=False)
    assert result.shuffled_ncuts.shape == (4,) and np.isfinite(result.shuffled_ncuts).all()


def test_dead_ends_of_a_dag_are_cut_off():
    rng = np.random.default_rng(6)
    kb = float32(rng, 3, 3, 4, 3, sparsity=0.0)
    kb[..., 0] = 0.0  # channel 0 of b receives nothing
    ka, kc, kd = (float32(rng, 3, 3, i, o, sparsity=0.0) for i, o in ((2, 4), (4, 3), (3, 5)))
    graph = graph_of(residual_recorder(ka, kb, kc, kd))
    assert graph.active[4]  # b's channel 0 still sends to d
    live = graph.without_dead_ends()
    assert not live.active[4] and live.active.sum() == graph.active.sum() - 1


# --------------------------------------------------------------------------- three ways


def mlp_arrays(seed: int = 7):
    rng = np.random.default_rng(seed)
    sizes = (12, 9, 7, 4)
    kernels = [float32(rng, a, b) for a, b in zip(sizes, sizes[1:], strict=False)]
    return kernels, [float32(rng, b, sparsity=0.0) for b in sizes[1:]]


def save_state_dict(path, kernels, biases, prefix="net"):
    from safetensors.numpy import save_file

    tensors = {}
    for i, (k, b) in enumerate(zip(kernels, biases, strict=True)):
        w = k.T if k.ndim == 2 else k.transpose(3, 2, 0, 1)
        tensors[f"{prefix}.{2 * i}.weight"], tensors[f"{prefix}.{2 * i}.bias"] = np.ascontiguousarray(w), b
    save_file(tensors, str(path))
    return path


def keras_sequential(kernels, biases, path, conv: int = 0, input_shape=None):
    keras = pytest.importorskip("keras")
    layers = [keras.Input(input_shape or (kernels[0].shape[0],))]
    for i, k in enumerate(kernels):
        if i == conv and conv:
            layers.append(keras.layers.Flatten())
        layers.append(keras.layers.Conv2D(k.shape[3], k.shape[:2], padding="same", activation="relu")
                      if k.ndim == 4 else keras.layers.Dense(k.shape[1], activation="relu"))
    model = keras.Sequential(layers)
    weighted = [layer for layer in model.layers if layer.weights]
    for layer, k, b in zip(weighted, kernels, biases, strict=True):
        layer.set_weights([k, b])
    model.save(path)
    return path


@pytest.mark.parametrize("k", [2, 3])
def test_mlp_gives_one_graph_as_npz_keras_onnx_and_safetensors(tmp_path, k):
    kernels, biases = mlp_arrays()
    np.savez(tmp_path / "net.npz", *kernels)
    paths = [tmp_path / "net.npz", keras_sequential(kernels, biases, tmp_path / "net.keras"),
             onnx_mlp(tmp_path / "net.onnx", kernels, biases), save_state_dict(tmp_path / "net.safetensors", kernels, biases)]
    fits = [SpectralNCut(n_clusters=k).fit(p) for p in paths]
    for fit in fits[1:]:
        same_graph(fits[0].graph_, fit.graph_)
        assert fit.ncut_ == fits[0].ncut_ and np.array_equal(fit.labels_, fits[0].labels_)
    onnx_weights = load_weights(paths[2])
    assert onnx_weights.names == ["fc0", "fc1", "fc2"] and onnx_weights.wiring is None
    for a, b in zip(onnx_weights.biases, biases, strict=True):
        np.testing.assert_array_equal(a, b)


def cnn_arrays(seed: int = 8):
    rng = np.random.default_rng(seed)
    convs = [float32(rng, 3, 3, 1, 6), float32(rng, 3, 3, 6, 8), float32(rng, 3, 3, 8, 5)]
    dense = [float32(rng, 5 * 6 * 6, 4)]
    kernels = convs + dense
    return kernels, [float32(rng, k.shape[-1], sparsity=0.0) for k in kernels]


def onnx_cnn(path, kernels, biases):
    nodes, weights, x = [], {}, "x"
    for i, (k, b) in enumerate(zip(kernels[:3], biases[:3], strict=True)):
        nodes += [onnx_conv(f"conv{i}", x, k, b, f"c{i}", weights), helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    nodes.append(helper.make_node("Flatten", [x], ["flat"]))
    weights["fc.weight"], weights["fc.bias"] = kernels[3].T, biases[3]
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["y"], transB=1))
    return save_onnx(path, nodes, weights, [1, 1, 6, 6], "y")


def test_cnn_gives_one_graph_as_npz_keras_onnx_and_safetensors(tmp_path):
    kernels, biases = cnn_arrays()
    np.savez(tmp_path / "net.npz", *kernels)
    paths = [tmp_path / "net.npz", keras_sequential(kernels, biases, tmp_path / "net.keras", conv=3, input_shape=(6, 6, 1)),
             onnx_cnn(tmp_path / "net.onnx", kernels, biases), save_state_dict(tmp_path / "net.safetensors", kernels, biases)]
    fits = [SpectralNCut(n_clusters=3).fit(p) for p in paths]
    assert fits[0].graph_.layer_sizes == (6, 8, 5)
    for fit in fits[1:]:
        same_graph(fits[0].graph_, fit.graph_)
        assert fit.ncut_ == fits[0].ncut_ and np.array_equal(fit.labels_, fits[0].labels_)
    assert load_weights(paths[2]).names == ["conv0", "conv1", "conv2", "fc"]


def keras_residual(seed: int = 9):
    """Conv stem, two convs summed (a residual block), a concatenation, batch norms folded."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(seed)
    x = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(x)
    a = keras.layers.BatchNormalization(name="a_bn")(a)
    a = keras.layers.Activation("relu")(a)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(a)
    c = keras.layers.Conv2D(4, 1, name="c")(b)
    s = keras.layers.Add(name="sum")([a, c])
    d = keras.layers.Conv2D(3, 3, padding="same", name="d")(s)
    cat = keras.layers.Concatenate(name="cat")([s, d])
    e = keras.layers.Conv2D(5, 1, name="e")(keras.layers.ReLU()(cat))
    y = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(e))
    model = keras.Model(x, y)
    bn = model.get_layer("a_bn")
    bn.set_weights([w + np.linspace(0.5, 1.5, 4).astype(np.float32) for w in bn.get_weights()])
    return model


def onnx_twin(model, path):
    """The ONNX graph torch.onnx.export would write for :func:`keras_residual` (a batch norm node
    kept, OIHW weights)."""
    weights, layer = {}, model.get_layer
    k = lambda name: np.asarray(layer(name).kernel)  # noqa: E731
    bias = lambda name: np.asarray(layer(name).bias)  # noqa: E731
    gamma, beta, mean, var = (np.asarray(w) for w in layer("a_bn").get_weights())
    weights |= {"bn.scale": gamma, "bn.bias": beta, "bn.mean": mean, "bn.var": var}
    nodes = [
        onnx_conv("a", "x", k("a"), bias("a"), "a0", weights),
        helper.make_node("BatchNormalization", ["a0", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["a1"],
                         epsilon=layer("a_bn").epsilon),
        helper.make_node("Relu", ["a1"], ["a2"]),
        onnx_conv("b", "a2", k("b"), bias("b"), "b0", weights), helper.make_node("Relu", ["b0"], ["b1"]),
        onnx_conv("c", "b1", k("c"), bias("c"), "c0", weights),
        helper.make_node("Add", ["a2", "c0"], ["s"]),
        onnx_conv("d", "s", k("d"), bias("d"), "d0", weights),
        helper.make_node("Concat", ["s", "d0"], ["cat"], axis=1), helper.make_node("Relu", ["cat"], ["cat1"]),
        onnx_conv("e", "cat1", k("e"), bias("e"), "e0", weights),
        helper.make_node("GlobalAveragePool", ["e0"], ["g"]), helper.make_node("Flatten", ["g"], ["gf"]),
    ]
    weights["head.weight"], weights["head.bias"] = k("head").T, bias("head")
    nodes.append(helper.make_node("Gemm", ["gf", "head.weight", "head.bias"], ["y"], transB=1))
    return save_onnx(path, nodes, weights, [1, 2, 6, 6], "y")


def test_residual_keras_net_and_its_onnx_twin_give_the_same_graph(tmp_path):
    model = keras_residual()
    model.save(tmp_path / "res.keras")
    from_keras = load_weights(tmp_path / "res.keras")
    from_onnx = load_weights(onnx_twin(model, tmp_path / "res.onnx"))
    assert from_keras.wiring is not None and from_keras.wiring == from_onnx.wiring
    assert group_names(from_keras) == ["a", "b", "c", "d", "e"]
    g_keras, g_onnx = graph_of(from_keras), graph_of(from_onnx)
    assert isinstance(g_keras, DagGraph) and g_keras.layer_sizes == (4, 4, 4, 3, 5)
    np.testing.assert_allclose(g_keras.adjacency.toarray(), g_onnx.adjacency.toarray(), rtol=1e-6, atol=1e-7)
    # the batch norm is folded into a's kernel and bias identically
    np.testing.assert_allclose(from_keras.kernels[0], from_onnx.kernels[0], rtol=1e-6)
    np.testing.assert_allclose(from_keras.biases[0], from_onnx.biases[0], rtol=1e-6, atol=1e-7)
    # the sum's two sources (a and c) both reach d with d's weights; e reads s (a + c) and d
    sources = {(s, t) for s, t, _ in g_keras.edges}
    assert sources == {(0, 1), (1, 2), (0, 3), (2, 3), (0, 4), (2, 4), (3, 4)}


# --------------------------------------------------------------------------- refusals


def test_onnx_unsupported_operator_is_one_line_naming_node_and_operator(tmp_path):
    kernels, biases = mlp_arrays()
    path = onnx_mlp(tmp_path / "net.onnx", kernels, biases)
    model = onnx.load(str(path))
    model.graph.node[1].op_type = "Einsum"
    model.graph.node[1].name = "mix_me"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=r"node 'mix_me' uses operator Einsum, which the graph builder does not") as e:
        load_weights(path)
    assert "\n" not in str(e.value)


def test_pre_activation_batch_norm_scales_the_rows_of_the_layer_that_reads_it(tmp_path):
    """A batch norm after an activation (DenseNet, ResNetV2) cannot be folded backwards; its
    scale multiplies the rows of the next kernel (method.md §3.3): the graph of the network
    without it whose next kernel carries the scale by hand."""
    keras = pytest.importorskip("keras")
    x = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(4, 3, activation="relu", name="a")(x)
    bn = keras.layers.BatchNormalization(name="pre_bn")
    b = keras.layers.Conv2D(4, 3, name="b")(bn(a))
    model = keras.Model(x, keras.layers.Conv2D(3, 1, name="c")(b))
    rng = np.random.default_rng(5)
    bn.set_weights([rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4)])
    gamma, _, _, var = (np.asarray(w, np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    kernels = [np.asarray(model.get_layer(n).kernel, np.float64) for n in ("a", "b", "c")]
    kernels[1] = kernels[1] * scale[:, None]
    same_graph(graph_of(load_weights_of(model)), graph_of(NetworkWeights.from_arrays(kernels)))


def load_weights_of(model):
    from nn_clustering import as_weights

    return as_weights(model)


def test_state_dict_whose_order_cannot_be_known_says_to_export_onnx(tmp_path):
    kernels, biases = mlp_arrays()
    from safetensors.numpy import save_file

    save_file({"zeta.weight": kernels[0].T.copy(), "alpha.weight": kernels[1].T.copy(),
               "mid.weight": kernels[2].T.copy()}, str(tmp_path / "net.safetensors"))
    with pytest.raises(ModelError, match=r"layer order cannot be known.*torch\.onnx\.export"):
        load_weights(tmp_path / "net.safetensors")
    save_file({"0.weight": kernels[0].T.copy(), "1.running_mean": np.zeros(9, np.float32),
               "1.running_var": np.ones(9, np.float32)}, str(tmp_path / "bn.safetensors"))
    with pytest.raises(ModelError, match=r"batch normalisation '1'.*torch\.onnx\.export"):
        load_weights(tmp_path / "bn.safetensors")


def test_state_dict_order_follows_module_numbers(tmp_path):
    """``net.10`` comes after ``net.2`` (numbers compared as numbers)."""
    rng = np.random.default_rng(10)
    sizes = (5, 4, 4, 4, 4, 4, 3)
    kernels = [float32(rng, a, b) for a, b in zip(sizes, sizes[1:], strict=False)]
    from safetensors.numpy import save_file

    save_file({f"net.{2 * i}.weight": k.T.copy() for i, k in enumerate(kernels)}, str(tmp_path / "m.safetensors"))
    weights = load_weights(tmp_path / "m.safetensors")
    assert weights.names == [f"net.{2 * i}" for i in range(6)]
    for a, b in zip(weights.kernels, kernels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_format_is_told_by_content_before_suffix(tmp_path):
    kernels, biases = mlp_arrays()
    path = save_state_dict(tmp_path / "weights.bin", kernels, biases)  # safetensors bytes, odd suffix
    assert load_weights(path).names == ["net.0", "net.2", "net.4"]
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        load_weights(tmp_path / "junk.onnx")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="unknown model format '.txt'"):
        load_weights(tmp_path / "notes.txt")


def test_cli_and_api_report_labels_per_named_layer_of_an_onnx_model(tmp_path, capsys):
    import json

    from nn_clustering import cli

    model = keras_residual()
    path = onnx_twin(model, tmp_path / "res.onnx")
    out = tmp_path / "res.json"
    assert cli.main(["cluster", str(path), "--k", "2", "--shuffles", "3", "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "residual/concatenating CNN, 20 nodes" in printed and "layer 3 d: cluster sizes" in printed
    record = json.loads(out.read_text())
    layers = record["layers"]
    assert [layer["name"] for layer in layers] == ["a", "b", "c", "d", "e"]
    assert [layer["size"] for layer in layers] == [4, 4, 4, 3, 5]
    assert sum((layer["labels"] for layer in layers), []) == record["labels"]
    fit = SpectralNCut(n_clusters=2, random_state=42).fit(path)
    np.testing.assert_array_equal(fit.labels_by_name_["d"], layers[3]["labels"])
    assert fit.layer_names_ == ["a", "b", "c", "d", "e"]


def test_functional_keras_chain_reads_as_the_chain_it_is(tmp_path):
    keras = pytest.importorskip("keras")
    kernels, biases = mlp_arrays()
    x = keras.Input((12,))
    h = x
    for i, k in enumerate(kernels):
        h = keras.layers.Dense(k.shape[1], activation="relu", name=f"d{i}")(h)
    model = keras.Model(x, h)
    for i, (k, b) in enumerate(zip(kernels, biases, strict=True)):
        model.get_layer(f"d{i}").set_weights([k, b])
    weights = load_weights_of(model)
    assert weights.wiring is None and weights.names == ["d0", "d1", "d2"]
    same_graph(graph_of(weights), graph_of(NetworkWeights.from_arrays(kernels)))


def test_pytorch_exporter_idioms_read_like_their_plain_forms(tmp_path):
    """PyTorch's exporters write global average pooling as ReduceMean over axes 2 and 3 and may
    pass a weight through an Identity node: the same graph as GlobalAveragePool and a plain
    initialiser."""
    kernels, biases = cnn_arrays()
    plain = onnx_cnn(tmp_path / "plain.onnx", kernels, biases)
    model = onnx.load(str(plain))
    nodes = list(model.graph.node)
    gemm = nodes[-1]
    nodes[-2] = helper.make_node("ReduceMean", ["r2", "axes"], ["flat"], keepdims=0)
    nodes.insert(0, helper.make_node("Identity", ["fc.weight"], ["fc.weight.shared"]))
    gemm.input[1] = "fc.weight.shared"
    fc = [t for t in model.graph.initializer if t.name == "fc.weight"][0]
    fc.CopyFrom(onnx.numpy_helper.from_array(np.ones((4, 5), np.float32), "fc.weight"))
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(tmp_path / "exported.onnx"))
    same_graph(graph_of(load_weights(plain)), graph_of(load_weights(tmp_path / "exported.onnx")))
    nodes[-2] = helper.make_node("ReduceMean", ["r2", "axes1"], ["flat"], keepdims=0)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1], np.int64), "axes1"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(tmp_path / "mixing.onnx"))
    with pytest.raises(ModelError, match=r"\(ReduceMean\) reduces over axes \[1\], which include the units' axis 1"):
        load_weights(tmp_path / "mixing.onnx")
