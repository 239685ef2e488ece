"""Modern vision networks from ONNX (method.md §3.3): grouped, depthwise, 1-D and 3-D
convolutions, SiLU written as a product, squeeze-and-excitation gates, batch and layer norms
that cannot be folded backwards, channels-last blocks. Each graph is checked against the same
network written another way, or against edges computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import graph_of, same_graph
from model_files import float32, onnx_conv, save_onnx

from nn_clustering import NetworkWeights, load_weights
from nn_clustering.core.graph import conv_channel_weights
from nn_clustering.errors import ModelError

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402


def relu(x: str, out: str):
    return helper.make_node("Relu", [x], [out])


def three_convs(tmp_path, name, middle, weights, shape=(1, 4, 8, 8)):
    """conv a (4 -> 8) -> relu -> ``middle`` nodes reading 'r1', writing 'm' -> relu -> conv c."""
    rng = np.random.default_rng(0)
    nodes = [onnx_conv("a", "x", float32(rng, 3, 3, 4, 8), float32(rng, 8), "h1", weights), relu("h1", "r1"),
             *middle, relu("m", "r2"),
             onnx_conv("c", "r2", float32(rng, 3, 3, 8, 6), float32(rng, 6), "y", weights)]
    return save_onnx(tmp_path / f"{name}.onnx", nodes, weights, list(shape), "y")


# --------------------------------------------------------------------------- grouped convolutions


def test_grouped_conv_is_the_block_diagonal_full_conv(tmp_path):
    rng = np.random.default_rng(1)
    grouped = float32(rng, 8, 2, 3, 3)  # (out, in / groups, h, w): 4 groups of 2 channels
    full = np.zeros((8, 8, 3, 3), np.float32)
    for g in range(4):
        full[2 * g:2 * g + 2, 2 * g:2 * g + 2] = grouped[2 * g:2 * g + 2]
    w1, w2 = {"b.weight": grouped}, {"b.weight": full}
    a = three_convs(tmp_path, "grouped", [helper.make_node("Conv", ["r1", "b.weight"], ["m"], group=4, pads=[1] * 4)], w1)
    b = three_convs(tmp_path, "full", [helper.make_node("Conv", ["r1", "b.weight"], ["m"], pads=[1] * 4)], w2)
    same_graph(graph_of(a), graph_of(b), rtol=1e-6)


def test_grouped_conv_is_its_groups_as_separate_convolutions_concatenated(tmp_path):
    rng = np.random.default_rng(16)
    grouped = float32(rng, 8, 4, 3, 3)  # 2 groups: outputs 0-3 read inputs 0-3, outputs 4-7 inputs 4-7
    sizes = numpy_helper.from_array(np.array([4, 4], np.int64), "sizes")
    one = [helper.make_node("Conv", ["r1", "b.weight"], ["m"], group=2, pads=[1] * 4)]
    apart = [helper.make_node("Split", ["r1", "sizes"], ["g0", "g1"], axis=1),
             helper.make_node("Conv", ["g0", "b0.weight"], ["m0"], pads=[1] * 4),
             helper.make_node("Conv", ["g1", "b1.weight"], ["m1"], pads=[1] * 4),
             helper.make_node("Concat", ["m0", "m1"], ["m"], axis=1)]
    a = graph_of(three_convs(tmp_path, "one", one, {"b.weight": grouped}))
    b = graph_of(three_convs(tmp_path, "apart", apart, {"b0.weight": grouped[:4], "b1.weight": grouped[4:],
                                                          "sizes": sizes}))
    assert a.layer_sizes == (8, 8, 6) and b.layer_sizes == (8, 4, 4, 6)  # the same nodes in the same order
    np.testing.assert_allclose(a.adjacency.toarray(), b.adjacency.toarray(), rtol=1e-12)


def test_depthwise_conv_joins_each_channel_to_its_own_outputs_by_hand(tmp_path):
    rng = np.random.default_rng(2)
    depthwise = float32(rng, 8, 1, 3, 3, sparsity=0)  # one output per channel
    path = three_convs(tmp_path, "dw", [helper.make_node("Conv", ["r1", "b.weight"], ["m"], group=8, pads=[1] * 4)],
                       {"b.weight": depthwise})
    edges = conv_channel_weights(load_weights(path).kernels[1], "l1")
    expected = np.diag([np.abs(depthwise[c].astype(np.float64)).sum() for c in range(8)])
    np.testing.assert_allclose(edges, expected)


@pytest.mark.parametrize("dims", [1, 3])
def test_1d_and_3d_convs_are_the_2d_conv_with_spatial_axes_merged(tmp_path, dims):
    rng = np.random.default_rng(3)
    spatial = (3,) if dims == 1 else (2, 3, 3)
    ks = [float32(rng, 5, 2, *spatial), float32(rng, 6, 5, *spatial), float32(rng, 4, 6, *spatial)]
    nodes, weights = [], {}
    for i, k in enumerate(ks):
        weights[f"c{i}.weight"] = k
        nodes += [helper.make_node("Conv", [f"r{i}" if i else "x", f"c{i}.weight"], [f"h{i}"]),
                  relu(f"h{i}", f"r{i + 1}")]
    path = save_onnx(tmp_path / "nd.onnx", nodes, weights, [1, 2, *(8,) * dims], f"r{len(ks)}")
    merged = [k.reshape(k.shape[0], k.shape[1], 1, -1).transpose(2, 3, 1, 0).astype(np.float64) for k in ks]
    same_graph(graph_of(path), graph_of(NetworkWeights.from_arrays(merged)), rtol=1e-6)


# --------------------------------------------------------------------------- products


def test_silu_written_as_a_product_is_an_activation(tmp_path):
    silu = [helper.make_node("Conv", ["r1", "b.weight"], ["hb"], pads=[1] * 4),
            helper.make_node("Sigmoid", ["hb"], ["s"]), helper.make_node("Mul", ["s", "hb"], ["m"])]
    plain = [helper.make_node("Conv", ["r1", "b.weight"], ["hb"], pads=[1] * 4), helper.make_node("Relu", ["hb"], ["m"])]
    k = float32(np.random.default_rng(4), 8, 8, 3, 3)
    same_graph(graph_of(three_convs(tmp_path, "silu", silu, {"b.weight": k})),
               graph_of(three_convs(tmp_path, "plain", plain, {"b.weight": k})), rtol=1e-6)


def test_squeeze_and_excitation_gate_joins_its_units_to_the_product(tmp_path):
    """conv a -> relu -> [pool -> se1 (8 -> 3) -> relu -> se2 (3 -> 8) -> sigmoid] * r1 -> conv c:
    c's kernel rows read both a's channels and se2's units, unit for unit."""
    rng = np.random.default_rng(5)
    se1, se2 = float32(rng, 3, 8, 1, 1), float32(rng, 8, 3, 1, 1)
    gate = [helper.make_node("GlobalAveragePool", ["r1"], ["p"]),
            helper.make_node("Conv", ["p", "se1.weight"], ["s1"]), relu("s1", "s1r"),
            helper.make_node("Conv", ["s1r", "se2.weight"], ["s2"]), helper.make_node("Sigmoid", ["s2"], ["g"]),
            helper.make_node("Mul", ["r1", "g"], ["m"])]
    weights = load_weights(three_convs(tmp_path, "se", gate, {"se1.weight": se1, "se2.weight": se2}))
    assert weights.names == ["a", "se1", "se2", "c"]
    graph = graph_of(weights)
    assert tuple(graph.layer_sizes) == (8, 3, 8, 6)
    c = conv_channel_weights(weights.kernels[3], "l1")
    blocks = {(s, t): b for s, t, b in graph.edges}
    np.testing.assert_allclose(blocks[(0, 1)], np.abs(se1[:, :, 0, 0].T))
    np.testing.assert_allclose(blocks[(1, 2)], np.abs(se2[:, :, 0, 0].T))
    np.testing.assert_allclose(blocks[(0, 3)], c)  # the feature map's channels ...
    np.testing.assert_allclose(blocks[(2, 3)], c)  # ... and the gate's units reach the same rows
    assert set(blocks) == {(0, 1), (1, 2), (0, 3), (2, 3)}


def test_layer_scale_constant_folds_into_the_kernel_columns(tmp_path):
    rng = np.random.default_rng(6)
    k, gamma = float32(rng, 8, 8, 3, 3), rng.uniform(0.1, 2, (8, 1, 1)).astype(np.float32)
    scaled = [helper.make_node("Conv", ["r1", "b.weight"], ["hb"], pads=[1] * 4),
              helper.make_node("Mul", ["hb", "gamma"], ["m"])]
    folded = [helper.make_node("Conv", ["r1", "b.weight"], ["m"], pads=[1] * 4)]
    by_hand = (k.astype(np.float64) * gamma.reshape(8, 1, 1, 1)).astype(np.float64)
    a = graph_of(three_convs(tmp_path, "ls", scaled, {"b.weight": k, "gamma": gamma}))
    b = graph_of(three_convs(tmp_path, "fold", folded, {"b.weight": by_hand}))
    same_graph(a, b, rtol=1e-6)


# --------------------------------------------------------------------------- normalisations and layout


def test_pre_activation_batch_norm_scales_the_next_kernels_rows(tmp_path):
    rng = np.random.default_rng(7)
    k = float32(rng, 8, 8, 3, 3)
    gamma, beta, mean, var = rng.uniform(0.5, 2, 8), rng.normal(size=8), rng.normal(size=8), rng.uniform(0.5, 2, 8)
    bn = {"s": gamma, "bb": beta, "mu": mean, "v": var}
    pre = [helper.make_node("BatchNormalization", ["r1", "s", "bb", "mu", "v"], ["n"]), relu("n", "nr"),
           helper.make_node("Conv", ["nr", "b.weight"], ["m"], pads=[1] * 4)]
    scale = gamma.astype(np.float32).astype(np.float64) / np.sqrt(var.astype(np.float32).astype(np.float64) + 1e-5)
    by_hand = k.astype(np.float64) * scale.reshape(1, 8, 1, 1)
    plain = [helper.make_node("Conv", ["r1", "b.weight"], ["m"], pads=[1] * 4)]
    same_graph(graph_of(three_convs(tmp_path, "pre", pre, {"b.weight": k, **bn})),
               graph_of(three_convs(tmp_path, "hand", plain, {"b.weight": by_hand})), rtol=1e-6)


def test_channels_last_block_equals_its_channels_first_form(tmp_path):
    """ConvNeXt's block: depthwise conv -> to channels-last -> LayerNorm -> Linear -> GELU ->
    Linear -> layer scale -> back to channels-first -> residual sum; against 1x1 convs whose
    kernels carry the LayerNorm's gamma (rows) and the layer scale (columns) by hand."""
    rng = np.random.default_rng(8)
    dw, w1, w2 = float32(rng, 8, 1, 3, 3), float32(rng, 8, 16), float32(rng, 16, 8)
    ln, ls = rng.uniform(0.5, 2, 8).astype(np.float32), rng.uniform(0.1, 1, 8).astype(np.float32)
    last = [helper.make_node("Conv", ["r1", "dw.weight"], ["d"], group=8, pads=[1] * 4),
            helper.make_node("Transpose", ["d"], ["t"], perm=[0, 2, 3, 1]),
            helper.make_node("LayerNormalization", ["t", "ln", "lnb"], ["n"], axis=-1),
            helper.make_node("MatMul", ["n", "w1"], ["h"]), helper.make_node("Gelu", ["h"], ["g"]),
            helper.make_node("MatMul", ["g", "w2"], ["o"]), helper.make_node("Mul", ["o", "ls"], ["o2"]),
            helper.make_node("Transpose", ["o2"], ["o3"], perm=[0, 3, 1, 2]),
            helper.make_node("Add", ["o3", "r1"], ["m"])]
    first = [helper.make_node("Conv", ["r1", "dw.weight"], ["d"], group=8, pads=[1] * 4),
             helper.make_node("Conv", ["d", "w1c"], ["h"]), helper.make_node("Gelu", ["h"], ["g"]),
             helper.make_node("Conv", ["g", "w2c"], ["o"]), helper.make_node("Add", ["o", "r1"], ["m"])]
    w1c = (w1.astype(np.float64) * ln[:, None]).T[:, :, None, None]
    w2c = (w2.astype(np.float64) * ls[None, :]).T[:, :, None, None]
    a = three_convs(tmp_path, "last", last, {"dw.weight": dw, "w1": w1, "w2": w2, "ln": ln, "lnb": np.zeros(8), "ls": ls})
    b = three_convs(tmp_path, "first", first, {"dw.weight": dw, "w1c": w1c, "w2c": w2c})
    same_graph(graph_of(a), graph_of(b), rtol=1e-6)


def test_a_sum_of_differently_normalised_tensors_weighs_each_summand_by_its_own_scale(tmp_path):
    """ConvNeXt's stem: a layer norm's output joins the residual stream, so the next layer reads
    a sum of a scaled and an unscaled tensor; each summand's edges carry its own scale:
    |W[i, j]| |gamma_i| from the normalised one, |W[i, j]| from the other."""
    rng = np.random.default_rng(9)
    gamma = rng.uniform(0.5, 2, 8).astype(np.float32)
    middle = [helper.make_node("Transpose", ["r1"], ["r1t"], perm=[0, 2, 3, 1]),
              helper.make_node("LayerNormalization", ["r1t", "ln"], ["n"], axis=-1),
              helper.make_node("Add", ["n", "r1t"], ["s"]), helper.make_node("Transpose", ["s"], ["m"], perm=[0, 3, 1, 2])]
    weights = load_weights(three_convs(tmp_path, "mixed", middle, {"ln": gamma}))
    graph = graph_of(weights)
    (block,) = [b for s, t, b in graph.edges if (s, t) == (0, 1)]
    c = conv_channel_weights(weights.kernels[1], "l1")
    np.testing.assert_allclose(block, c * (1 + gamma.astype(np.float64))[:, None])


# --------------------------------------------------------------------------- state_dicts


def save_state_dict(path, arrays: dict[str, np.ndarray]):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}, str(path))
    return path


def test_hugging_face_conv1d_layout_is_told_by_its_biases(tmp_path):
    """Hugging Face's Conv1D stores (in, out): a 128-512-128 MLP, not 512-128-512."""
    rng = np.random.default_rng(10)
    fc, proj = float32(rng, 128, 512), float32(rng, 512, 128)
    path = save_state_dict(tmp_path / "hf.safetensors", {"mlp.c_fc.weight": fc, "mlp.c_fc.bias": np.zeros(512),
                                                         "mlp.c_proj.weight": proj, "mlp.c_proj.bias": np.zeros(128)})
    weights = load_weights(path)
    assert graph_of(weights).layer_sizes == (128, 512, 128)
    same_graph(graph_of(weights), graph_of(NetworkWeights.from_arrays([fc.astype(np.float64), proj.astype(np.float64)])), rtol=1e-6)
    bad = save_state_dict(tmp_path / "bad.safetensors", {"a.weight": fc, "a.bias": np.zeros(100)})
    with pytest.raises(ModelError, match=r"module 'a' has a weight of shape \(128, 512\) but a bias of 100 values"):
        load_weights(bad)


def test_layer_norm_mlp_reads_alike_from_a_state_dict_and_onnx(tmp_path):
    """Linear -> LayerNorm -> ReLU -> Linear -> LayerNorm -> ReLU -> Linear: each norm's gamma
    multiplies the next Linear's rows, from the state_dict, from ONNX and by hand."""
    rng = np.random.default_rng(11)
    ws = [float32(rng, 64, 32), float32(rng, 64, 64), float32(rng, 10, 64)]  # PyTorch's (out, in)
    gammas = [rng.uniform(0.5, 2, 64).astype(np.float32) for _ in range(2)]
    arrays = {"0.weight": ws[0], "1.weight": gammas[0], "1.bias": np.zeros(64), "3.weight": ws[1],
              "4.weight": gammas[1], "4.bias": np.zeros(64), "6.weight": ws[2]}
    from_dict = graph_of(save_state_dict(tmp_path / "ln.safetensors", arrays))
    nodes = [helper.make_node("Gemm", ["x", "w0"], ["h0"], transB=1),
             helper.make_node("LayerNormalization", ["h0", "g0", "b0"], ["n0"]), relu("n0", "r0"),
             helper.make_node("Gemm", ["r0", "w1"], ["h1"], transB=1),
             helper.make_node("LayerNormalization", ["h1", "g1", "b1"], ["n1"]), relu("n1", "r1"),
             helper.make_node("Gemm", ["r1", "w2"], ["y"], transB=1)]
    onnx_weights = {"w0": ws[0], "w1": ws[1], "w2": ws[2], "g0": gammas[0], "g1": gammas[1],
                    "b0": np.zeros(64), "b1": np.zeros(64)}
    from_onnx = graph_of(save_onnx(tmp_path / "ln.onnx", nodes, onnx_weights, [1, 32], "y"))
    by_hand = [ws[0].T.astype(np.float64), ws[1].T * gammas[0][:, None].astype(np.float64),
               ws[2].T * gammas[1][:, None].astype(np.float64)]
    same_graph(from_dict, graph_of(NetworkWeights.from_arrays(by_hand)), rtol=1e-6)
    same_graph(from_onnx, from_dict, rtol=1e-6)


def test_depthwise_conv_state_dict_is_recognised_by_its_chain(tmp_path):
    rng = np.random.default_rng(12)
    a, dw, c = float32(rng, 8, 4, 3, 3), float32(rng, 8, 1, 3, 3), float32(rng, 6, 8, 3, 3)
    from_dict = graph_of(save_state_dict(tmp_path / "dw.safetensors", {"0.weight": a, "2.weight": dw, "4.weight": c}))
    nodes = [helper.make_node("Conv", ["x", "a"], ["h0"]), relu("h0", "r0"),
             helper.make_node("Conv", ["r0", "dw"], ["h1"], group=8), relu("h1", "r1"),
             helper.make_node("Conv", ["r1", "c"], ["y"])]
    from_onnx = graph_of(save_onnx(tmp_path / "dw.onnx", nodes, {"a": a, "dw": dw, "c": c}, [1, 4, 12, 12], "y"))
    same_graph(from_dict, from_onnx, rtol=1e-6)


# --------------------------------------------------------------------------- zero-initialised branches


def residual_net(tmp_path, name: str, zero: bool):
    """conv a -> relu -> [conv b1 -> relu -> conv b2] + a -> relu -> conv c (b2 zero if ``zero``)."""
    rng = np.random.default_rng(13)
    weights: dict = {}
    a, b1, b2, c = (float32(rng, 3, 3, *shape) for shape in ((3, 8), (8, 8), (8, 8), (8, 4)))
    nodes = [onnx_conv("a", "x", a, np.zeros(8), "h", weights), relu("h", "r"),
             onnx_conv("b1", "r", b1, np.zeros(8), "h1", weights), relu("h1", "r1"),
             onnx_conv("b2", "r1", b2 * (not zero), np.zeros(8), "h2", weights),
             helper.make_node("Add", ["h2", "r"], ["s"]),
             relu("s", "rs"), onnx_conv("c", "rs", c, np.zeros(4), "y", weights)]
    return save_onnx(tmp_path / f"{name}.onnx", nodes, weights, [1, 3, 8, 8], "y")


def test_zero_initialised_residual_branch_leaves_its_units_isolated(tmp_path):
    """timm's resnet18 and torchvision's zero_init_residual fold zero batch-norm scales into
    all-zero last convs of each block: the net clusters, the zero branch's channels are
    isolated (label -1) and every other edge is the one the trained net would have."""
    from nn_clustering import SpectralNCut

    zero = SpectralNCut(n_clusters=2, random_state=0).fit(residual_net(tmp_path, "zero", True))
    assert zero.layer_names_ == ["a", "b1", "b2", "c"]
    assert (zero.labels_by_name_["b2"] == -1).all() and (zero.labels_by_name_["a"] >= 0).all()
    full = graph_of(residual_net(tmp_path, "full", False))
    edges = {(s, t): b for s, t, b in full.edges}
    kept = {(s, t): b for s, t, b in zero.graph_.edges}
    assert set(kept) == {(0, 1), (0, 3)}  # b1 -> b2 is zero, b2 -> c carries nothing
    np.testing.assert_array_equal(kept[(0, 1)], edges[(0, 1)])
    np.testing.assert_array_equal(kept[(0, 3)], edges[(0, 3)])


def test_a_network_of_zero_kernels_only_is_one_line(tmp_path):
    weights: dict = {}
    nodes = [onnx_conv("a", "x", np.zeros((3, 3, 3, 4)), np.zeros(4), "h", weights), relu("h", "r"),
             onnx_conv("b", "r", np.zeros((3, 3, 4, 4)), np.zeros(4), "h2", weights),
             helper.make_node("Add", ["h2", "r"], ["s"]),
             onnx_conv("c", "s", np.zeros((3, 3, 4, 2)), np.zeros(2), "y", weights)]
    from nn_clustering import SpectralNCut

    with pytest.raises(Exception, match=r"zeros\.onnx: every kernel is all zeros"):
        SpectralNCut(n_clusters=2).fit(save_onnx(tmp_path / "zeros.onnx", nodes, weights, [1, 3, 8, 8], "y"))


# --------------------------------------------------------------------------- names


def test_layers_and_errors_are_named_by_module_path_from_either_exporter(tmp_path):
    """Exporters rename the weights they fuse or transpose (``onnx::MatMul_5``, ``val_3``): the
    layer names come from the legacy exporter's node names or the dynamo exporter's name
    scopes instead, and an error names the module path, not ``node_Conv_813``."""
    rng = np.random.default_rng(14)
    legacy = helper.make_node("MatMul", ["x", "onnx::MatMul_5"], ["h"], name="/features/features.1/block/block.3/MatMul")
    dynamo = helper.make_node("MatMul", ["h", "val_3"], ["y"], name="node_MatMul_7")
    dynamo.metadata_props.add(key="pkg.torch.onnx.name_scopes", value="['', 'head', 'head.fc', 'linear']")
    weights = {"onnx::MatMul_5": float32(rng, 5, 4), "val_3": float32(rng, 4, 3)}
    path = save_onnx(tmp_path / "names.onnx", [legacy, dynamo], weights, [1, 5], "y")
    assert load_weights(path).names == ["features.1.block.3", "head.fc"]
    odd = helper.make_node("Acosh", ["x"], ["y"], name="node_Acosh_813")
    odd.metadata_props.add(key="pkg.torch.onnx.name_scopes", value="['', 'blocks', 'blocks.2', 'acosh']")
    with pytest.raises(ModelError, match=r"node 'blocks\.2/acosh' uses operator Acosh"):
        load_weights(save_onnx(tmp_path / "odd.onnx", [odd], {}, [1, 5], "y"))


# --------------------------------------------------------------------------- splits and channel shuffles


def test_channel_shuffle_equals_the_next_kernels_rows_permuted_by_hand(tmp_path):
    """ShuffleNet's unit: split the channels, convolve one half, concatenate, shuffle (reshape
    to (2, C / 2), transpose, merge back). Against the same net written with Slice and no
    shuffle, whose next kernel's rows are permuted by hand."""
    rng = np.random.default_rng(15)
    a, b, c = float32(rng, 3, 3, 3, 8), float32(rng, 3, 3, 4, 4), float32(rng, 3, 3, 8, 6)
    perm = np.arange(8).reshape(2, 4).T.reshape(-1)  # shuffled position p holds unit perm[p]
    unshuffled = np.zeros_like(c)
    unshuffled[:, :, perm] = c
    def shape(name, values):  # integer constants, stored as they are
        return {name: numpy_helper.from_array(np.asarray(values, np.int64), name)}

    weights_a: dict = {**shape("sizes", [4, 4]), **shape("s5", [1, 2, 4, 8, 8]), **shape("s4", [1, 8, 8, 8])}
    shuffled = [onnx_conv("a", "x", a, np.zeros(8), "h", weights_a), relu("h", "r"),
                helper.make_node("Split", ["r", "sizes"], ["left", "right"], axis=1),
                onnx_conv("b", "right", b, np.zeros(4), "hb", weights_a), relu("hb", "rb"),
                helper.make_node("Concat", ["left", "rb"], ["cat"], axis=1),
                helper.make_node("Reshape", ["cat", "s5"], ["split5"]),
                helper.make_node("Transpose", ["split5"], ["t5"], perm=[0, 2, 1, 3, 4]),
                helper.make_node("Reshape", ["t5", "s4"], ["shuf"]),
                onnx_conv("c", "shuf", c, np.zeros(6), "y", weights_a)]
    weights_b: dict = {**shape("zero", [0]), **shape("four", [4]), **shape("eight", [8]), **shape("one", [1])}
    sliced = [onnx_conv("a", "x", a, np.zeros(8), "h", weights_b), relu("h", "r"),
              helper.make_node("Slice", ["r", "zero", "four", "one"], ["left"]),
              helper.make_node("Slice", ["r", "four", "eight", "one"], ["right"]),
              onnx_conv("b", "right", b, np.zeros(4), "hb", weights_b), relu("hb", "rb"),
              helper.make_node("Concat", ["left", "rb"], ["cat"], axis=1),
              onnx_conv("c", "cat", unshuffled, np.zeros(6), "y", weights_b)]
    same_graph(graph_of(save_onnx(tmp_path / "shuffled.onnx", shuffled, weights_a, [1, 3, 8, 8], "y")),
               graph_of(save_onnx(tmp_path / "sliced.onnx", sliced, weights_b, [1, 3, 8, 8], "y")), rtol=1e-6)
