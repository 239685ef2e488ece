"""The Keras reader's layer table (formats/keras.py, method.md §3.3-§3.4): every supported layer
class checked against an oracle written in the test (a graph by hand, the same network written
with plainer layers whose weights carry the factor by hand, or a Keras forward pass showing two
networks compute the same function), keras.applications models read whole, and recurrent and
attention layers refused by name in one line."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from graphs import graph_of, same_graph

keras = pytest.importorskip("keras")

from nn_clustering import NetworkWeights, SpectralNCut, as_weights, load_weights  # noqa: E402
from nn_clustering.core.dag import DagGraph  # noqa: E402
from nn_clustering.errors import ModelError  # noqa: E402
from nn_clustering.formats.keras import weights_of_keras_model  # noqa: E402

L = keras.layers


def kernel(model, name: str, attribute: str = "kernel") -> np.ndarray:
    return np.asarray(getattr(model.get_layer(name), attribute), np.float64)


def copy_weights(source, target, names) -> None:
    for name in names:
        target.get_layer(name).set_weights(source.get_layer(name).get_weights())


def same_function(a, b, shape, seed: int = 0) -> None:
    """The two models compute the same outputs on random inputs (the twins are one network)."""
    x = np.random.default_rng(seed).normal(size=(3, *shape)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), rtol=1e-4, atol=1e-4)


def randomise(layer, rng: np.random.Generator) -> None:
    """Weights far from their initial values: signs mixed, variances positive."""
    layer.set_weights([rng.uniform(0.3, 2.0, w.shape) if "variance" in v.path
                       else rng.uniform(0.5, 2.0, w.shape) * rng.choice([-1, 1], w.shape)
                       for v, w in zip(layer.weights, layer.get_weights(), strict=True)])


# --------------------------------------------------------------------------- convolutions


def test_depthwise_convolution_joins_each_channel_to_its_own_outputs_only(tmp_path):
    keras.utils.set_random_seed(1)
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(3, 1, name="stem")(x)
    model = keras.Model(x, L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h))
    model.save(tmp_path / "dw.keras")
    weights = load_weights(tmp_path / "dw.keras")
    assert weights.names == ["stem", "dw"]
    graph = graph_of(weights)
    assert graph.layer_sizes == (3, 6)
    # by hand: stem channel c reaches dw channel c * 2 + j with the L1 norm of K[:, :, c, j]
    k = kernel(model, "dw")
    expected = np.zeros((9, 9))
    for c in range(3):
        for j in range(2):
            expected[c, 3 + 2 * c + j] = np.abs(k[:, :, c, j]).sum()
    expected += expected.T
    np.testing.assert_allclose(graph.adjacency.toarray(), expected, rtol=1e-12, atol=0)


def test_separable_convolution_is_a_depthwise_then_a_pointwise_layer():
    keras.utils.set_random_seed(2)
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(x)
    sep = L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", activation="relu", name="sep",
                            bias_initializer="random_normal")
    model = keras.Model(x, L.Conv2D(3, 1, name="out")(sep(h)))
    x2 = keras.Input((8, 8, 3))
    h2 = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(x2)
    dw = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False, name="sep_dw")
    pw = L.Conv2D(5, 1, activation="relu", name="sep_pw")
    twin = keras.Model(x2, L.Conv2D(3, 1, name="out")(pw(dw(h2))))
    copy_weights(model, twin, ["stem", "out"])
    dw.set_weights([np.asarray(sep.depthwise_kernel)])
    pw.set_weights([np.asarray(sep.pointwise_kernel), np.asarray(sep.bias)])
    same_function(model, twin, (8, 8, 3))
    weights = as_weights(model)
    assert weights.names == ["stem", "sep/depthwise", "sep/pointwise", "out"]
    same_graph(graph_of(weights), graph_of(as_weights(twin)))


def test_grouped_convolution_is_its_block_diagonal_full_kernel():
    keras.utils.set_random_seed(3)
    x = keras.Input((6, 6, 4))
    h = L.Conv2D(4, 3, name="stem")(x)
    model = keras.Model(x, L.Conv2D(2, 1, name="out")(L.Conv2D(6, 3, groups=2, name="grouped")(h)))
    x2 = keras.Input((6, 6, 4))
    h2 = L.Conv2D(4, 3, name="stem")(x2)
    full = L.Conv2D(6, 3, name="grouped")
    twin = keras.Model(x2, L.Conv2D(2, 1, name="out")(full(h2)))
    copy_weights(model, twin, ["stem", "out"])
    k = np.asarray(model.get_layer("grouped").kernel)  # (3, 3, 2, 6): two groups of 2 inputs, 3 outputs
    by_hand = np.zeros((3, 3, 4, 6), np.float32)
    by_hand[:, :, 0:2, 0:3], by_hand[:, :, 2:4, 3:6] = k[..., 0:3], k[..., 3:6]
    full.set_weights([by_hand, np.asarray(model.get_layer("grouped").bias)])
    same_function(model, twin, (6, 6, 4))
    same_graph(graph_of(as_weights(model)), graph_of(as_weights(twin)))


@pytest.mark.parametrize("conv, shape, sizes", [
    (L.Conv1D, (10, 3), (3, 2)),
    (L.Conv3D, (5, 5, 5, 2), ((2, 2, 2), (1, 2, 3))),
])
def test_1d_and_3d_convolutions_read_as_2d_ones_with_their_spatial_axes_merged(conv, shape, sizes):
    keras.utils.set_random_seed(4)
    x = keras.Input(shape)
    h = conv(4, sizes[0], name="a")(x)
    h = conv(5, sizes[1], activation="relu", name="b")(h)
    model = keras.Model(x, conv(3, 1, name="c")(h))
    merged = [kernel(model, n).reshape(1, -1, *kernel(model, n).shape[-2:]) for n in ("a", "b", "c")]
    weights = as_weights(model)
    assert weights.names == ["a", "b", "c"] and weights.kind == "cnn"
    for got, want in zip(weights.kernels, merged, strict=True):
        np.testing.assert_array_equal(got, want)
    same_graph(graph_of(weights), graph_of(NetworkWeights.from_arrays(merged)))


# --------------------------------------------------------------------------- per-unit scales


def _norm_scale(layer) -> np.ndarray:
    """The per-unit factor a normalisation applies, by hand from its weights."""
    if isinstance(layer, L.BatchNormalization):
        gamma, _, _, var = (np.asarray(w, np.float64) for w in layer.get_weights())
        return gamma / np.sqrt(var + layer.epsilon)
    return np.asarray(layer.gamma, np.float64)


@pytest.mark.parametrize("norm", [
    lambda: L.BatchNormalization(name="norm"),
    lambda: L.LayerNormalization(name="norm"),
    lambda: L.GroupNormalization(groups=2, name="norm"),
], ids=["batch", "layer", "group"])
def test_pre_activation_normalisation_scales_the_next_kernels_rows(norm):
    """Conv (relu) -> norm -> conv, as in DenseNet and ResNetV2: the graph of the net without
    the norm whose next kernel's rows carry the norm's per-unit factor, by hand."""
    keras.utils.set_random_seed(5)
    x = keras.Input((6, 6, 2))
    a = L.Conv2D(4, 3, activation="relu", name="a")(x)
    layer = norm()
    b = L.Conv2D(4, 3, name="b")(layer(a))
    model = keras.Model(x, L.Conv2D(3, 1, name="c")(b))
    randomise(layer, np.random.default_rng(5))
    scale = _norm_scale(layer)
    kernels = [kernel(model, "a"), kernel(model, "b") * scale[:, None], kernel(model, "c")]
    same_graph(graph_of(as_weights(model)), graph_of(NetworkWeights.from_arrays(kernels)))


def test_batch_norm_directly_after_a_layer_is_folded_into_its_columns_and_bias():
    """A Sequential CNN (the project's result tables come from these): the batch norm after a
    linear conv changes that conv's kernel and bias exactly as the formula says; names are
    the Keras layer names and the chain needs no wiring."""
    keras.utils.set_random_seed(6)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="c0"), L.BatchNormalization(name="bn"), L.ReLU(),
        L.MaxPooling2D(2), L.Conv2D(3, 3, activation="relu", name="c1"), L.Flatten(), L.Dense(2, name="head"),
    ])
    bn = model.get_layer("bn")
    randomise(bn, np.random.default_rng(6))
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
    s = gamma / np.sqrt(var + bn.epsilon)
    weights = as_weights(model)
    assert weights.names == ["c0", "c1", "head"] and weights.wiring is None
    np.testing.assert_array_equal(weights.kernels[0], kernel(model, "c0") * s)
    np.testing.assert_array_equal(weights.biases[0], kernel(model, "c0", "bias") * s + (beta - mean * s))
    np.testing.assert_array_equal(weights.kernels[1], kernel(model, "c1"))


class LayerScale(L.Layer):
    """ConvNeXt's layer scale (keras.applications.convnext.LayerScale): x times a per-channel gamma."""

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def build(self, _):
        self.gamma = self.add_weight(shape=(self.dim,), initializer="ones")

    def call(self, x):
        return x * self.gamma


def convnext_block(channels: int, scaled, dtype: str = "float32", dense=L.Dense):
    """Stem conv -> ConvNeXt block (depthwise 7x7 -> layer norm -> pointwise 4C -> gelu ->
    pointwise C -> layer scale -> residual sum) -> a 1 x 1 conv."""
    x = keras.Input((8, 8, 3), dtype=dtype)
    s = L.Conv2D(channels, 2, strides=2, name="stem", dtype=dtype)(x)
    h = L.DepthwiseConv2D(7, padding="same", name="dw", dtype=dtype)(s)
    if dense is L.Dense:
        h = L.LayerNormalization(epsilon=1e-6, name="ln")(h)
    h = L.Activation("gelu")(dense(4 * channels, name="pw1", dtype=dtype)(h))
    h = scaled(dense(channels, name="pw2", dtype=dtype)(h))
    return keras.Model(x, L.Conv2D(3, 1, name="out", dtype=dtype)(L.Add(name="res")([s, h])))


@pytest.mark.parametrize("how", ["LayerScale", "multiply by a constant"])
def test_convnext_block_equals_pointwise_convs_carrying_gamma_and_layer_scale(how):
    """The twin has 1 x 1 convs (float64, so the products are held exactly) whose kernels carry
    the layer norm's gamma on their rows and the layer scale on their columns, by hand."""
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    layer_scale = rng.uniform(0.1, 1.0, 4).astype(np.float32)
    scale = LayerScale(4, name="ls") if how == "LayerScale" else (lambda t: t * layer_scale)
    model = convnext_block(4, scale)
    if how == "LayerScale":
        model.get_layer("ls").set_weights([layer_scale])
    randomise(model.get_layer("ln"), rng)
    twin = convnext_block(4, lambda t: t, "float64", lambda n, name, dtype: L.Conv2D(n, 1, name=name, dtype=dtype))
    copy_weights(model, twin, ["stem", "dw", "out"])
    gamma, ls = kernel(model, "ln", "gamma"), layer_scale.astype(np.float64)
    twin.get_layer("pw1").set_weights([kernel(model, "pw1")[None, None] * gamma[:, None], kernel(model, "pw1", "bias")])
    twin.get_layer("pw2").set_weights([kernel(model, "pw2")[None, None] * ls, kernel(model, "pw2", "bias") * ls])
    weights = as_weights(model)
    assert weights.names == ["stem", "dw", "pw1", "pw2", "out"]
    graph = graph_of(weights)
    assert isinstance(graph, DagGraph) and graph.layer_sizes == (4, 4, 16, 4, 3)
    same_graph(graph, graph_of(as_weights(twin)))


# --------------------------------------------------------------------------- products


@pytest.mark.parametrize("squeeze", ["keepdims", "reshape"])
def test_squeeze_and_excitation_gate_joins_the_feature_map_and_the_gate_units(squeeze):
    keras.utils.set_random_seed(8)
    x = keras.Input((8, 8, 3))
    f = L.Conv2D(6, 3, activation="relu", name="feat")(x)
    if squeeze == "keepdims":
        s = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(f)
    else:  # EfficientNet's form
        s = L.Reshape((1, 1, 6), name="to_map")(L.GlobalAveragePooling2D(name="squeeze")(f))
    s = L.Conv2D(2, 1, activation="relu", name="reduce")(s)
    s = L.Conv2D(6, 1, activation="sigmoid", name="expand")(s)
    model = keras.Model(x, L.Conv2D(4, 3, name="out")(L.Multiply(name="excite")([f, s])))
    graph = graph_of(as_weights(model))
    assert isinstance(graph, DagGraph) and graph.layer_sizes == (6, 2, 6, 4)

    def l1(name):
        return np.abs(kernel(model, name)).sum(axis=(0, 1))

    # nodes: feat 0-5, reduce 6-7, expand 8-13, out 14-17; the out conv's rows join both the
    # feature map's channels and the gate's (its input unit i is feat_i * expand_i)
    expected = np.zeros((18, 18))
    expected[0:6, 6:8], expected[6:8, 8:14] = l1("reduce"), l1("expand")
    expected[0:6, 14:18], expected[8:14, 14:18] = l1("out"), l1("out")
    expected += expected.T
    np.testing.assert_allclose(graph.adjacency.toarray(), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("gate", [
    lambda a: L.Multiply()([a, L.Activation("sigmoid")(a)]),
    lambda a: L.Multiply()([L.Activation("sigmoid")(a), a]),
    lambda a: a * keras.ops.sigmoid(a),
], ids=["layers", "layers-swapped", "ops"])
def test_x_times_sigmoid_of_x_is_an_activation(gate):
    keras.utils.set_random_seed(9)
    x = keras.Input((6, 6, 2))
    a = L.Conv2D(4, 3, name="a")(x)
    model = keras.Model(x, L.Conv2D(3, 3, name="b")(gate(a)))
    weights = as_weights(model)
    assert weights.wiring is None and weights.names == ["a", "b"]
    same_graph(graph_of(weights), graph_of(NetworkWeights.from_arrays([kernel(model, "a"), kernel(model, "b")])))


# --------------------------------------------------------------------------- nested models


def residual_block(channels: int, name: str = "block") -> keras.Model:
    i = keras.Input((6, 6, channels))
    h = L.Conv2D(channels, 3, padding="same", activation="relu", name="b1")(i)
    h = L.Conv2D(channels, 3, padding="same", name="b2")(h)
    return keras.Model(i, L.ReLU(name="b_relu")(L.Add(name="b_add")([i, h])), name=name)


def flat_resnet(x):
    h = L.Conv2D(4, 3, padding="same", name="stem")(x)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b1")(h)
    b = L.Conv2D(4, 3, padding="same", name="b2")(b)
    h = L.ReLU(name="b_relu")(L.Add(name="b_add")([h, b]))
    return L.Conv2D(3, 1, name="out")(h)


def sequential_stem(x, nested: bool):
    layers = [L.Conv2D(4, 3, padding="same", name="s1"), L.BatchNormalization(name="s_bn"), L.ReLU(name="s_relu"),
              L.Conv2D(4, 3, padding="same", activation="relu", name="s2")]
    if nested:
        return keras.Sequential([keras.Input((6, 6, 2)), *layers], name="stem_seq")(x)
    for layer in layers:
        x = layer(x)
    return x


def stem_net(x, nested: bool):
    h = sequential_stem(x, nested)
    b = L.Conv2D(4, 3, padding="same", name="c")(h)
    return L.Conv2D(3, 1, name="out")(L.Add(name="sum")([h, b]))


@pytest.mark.parametrize("kind", ["functional block", "sequential stem"])
def test_nested_model_reads_like_its_layers_written_flat(kind):
    keras.utils.set_random_seed(10)
    x, x2 = keras.Input((6, 6, 2)), keras.Input((6, 6, 2))
    if kind == "functional block":
        h = L.Conv2D(4, 3, padding="same", name="stem")(x)
        model = keras.Model(x, L.Conv2D(3, 1, name="out")(residual_block(4)(h)))
        flat = keras.Model(x2, flat_resnet(x2))
        names = ["stem", "b1", "b2", "out"]
    else:
        model, flat = keras.Model(x, stem_net(x, True)), keras.Model(x2, stem_net(x2, False))
        names = ["s1", "s2", "c", "out"]
        randomise(model.get_layer("stem_seq").get_layer("s_bn"), np.random.default_rng(10))
    for layer in flat.layers:
        if layer.weights:
            inner = next(m for m in [model, *(n for n in model.layers if isinstance(n, keras.Model))]
                         if layer.name in {lay.name for lay in m.layers})
            layer.set_weights(inner.get_layer(layer.name).get_weights())
    same_function(model, flat, (6, 6, 2))
    nested, plain = as_weights(model), as_weights(flat)
    assert nested.names == plain.names == names and nested.wiring == plain.wiring
    for a, b in zip(nested.kernels + nested.biases, plain.kernels + plain.biases, strict=True):
        np.testing.assert_array_equal(a, b)
    same_graph(graph_of(nested), graph_of(plain))


@pytest.mark.parametrize("twice, message", [
    ("block", "layer 'block' (Functional) is called 2 times"),
    ("dense", "layer 'shared' (Dense) is called 2 times"),
])
def test_a_layer_or_model_called_twice_is_refused_by_name(twice, message):
    x = keras.Input((6, 6, 4))
    if twice == "block":
        block = residual_block(4)
        y = block(block(L.Conv2D(4, 1, name="stem")(x)))
    else:
        shared = L.Dense(4, name="shared")
        y = shared(shared(x))
    with pytest.raises(ModelError, match=re.escape(message)):
        as_weights(keras.Model(x, y))


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("layer, message", [
    (lambda h: L.LSTM(4, name="lstm")(h), "layer 'lstm' (LSTM) is recurrent: the graph builder reads feed-forward"),
    (lambda h: L.Bidirectional(L.GRU(3), name="bi")(h), "layer 'bi' (Bidirectional) is recurrent"),
    (lambda h: L.MultiHeadAttention(2, 4, name="mha")(h, h), "layer 'mha' (MultiHeadAttention) is attention"),
    (lambda h: keras.ops.square(h), "(Square) on the model's tensors (a keras.ops call) is not followed"),
], ids=["lstm", "bidirectional", "attention", "keras.ops"])
def test_recurrent_and_attention_layers_are_refused_by_name_in_one_line(layer, message):
    x = keras.Input((5, 8))
    model = keras.Model(x, L.Dense(2, name="head")(layer(L.Dense(8, name="embed")(x))))
    with pytest.raises(ModelError, match=re.escape(message)) as error:
        weights_of_keras_model(model, "net.keras")
    text = str(error.value)
    assert text.startswith("net.keras: ") and "\n" not in text
    assert "docs/method.md §3.4" in text and "Conv2D" not in text  # a pointer, not a list of classes


# --------------------------------------------------------------------------- keras.applications


def fine_tuned_resnet50():
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    x = keras.Input((64, 64, 3))
    h = L.Dropout(0.2)(L.GlobalAveragePooling2D()(base(x)))
    return keras.Model(x, L.Dense(10, name="head")(h))


APPLICATIONS = [
    # MobileNetV2: 52 convolutions (stem, 17 inverted residual blocks, the last 1 x 1), one classifier
    ("MobileNetV2", lambda: keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3)), 52),
    # EfficientNetB0: 81 convolutions, squeeze-and-excitation gates included
    ("EfficientNetB0", lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3)), 81),
    # DenseNet121: 121 weighted layers, one of them the classifier
    ("DenseNet121", lambda: keras.applications.DenseNet121(weights=None, input_shape=(64, 64, 3)), 120),
    # Xception: 34 separable convolutions (two groups each) and 6 plain ones
    ("Xception", lambda: keras.applications.Xception(weights=None, input_shape=(71, 71, 3)), 74),
    # ConvNeXtTiny: the stem, 18 blocks of a depthwise conv and two pointwise Dense, 3 downsamplings
    ("ConvNeXtTiny", lambda: keras.applications.ConvNeXtTiny(weights=None, input_shape=(64, 64, 3)), 58),
    # ResNet50V2 and ResNet50: 49 convolutions and 4 projection shortcuts
    ("ResNet50V2", lambda: keras.applications.ResNet50V2(weights=None, input_shape=(64, 64, 3)), 53),
    ("ResNet50 fine-tuned", fine_tuned_resnet50, 53),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, build, groups", APPLICATIONS, ids=[a[0] for a in APPLICATIONS])
def test_keras_applications_read_into_a_graph_with_one_group_per_conv_layer(name, build, groups):
    keras.utils.set_random_seed(11)
    start = time.perf_counter()
    model = build()
    weights = as_weights(model)
    graph = graph_of(weights)
    assert weights.kind == "cnn" and isinstance(graph, DagGraph)
    assert len(graph.layer_sizes) == groups == len(weights.wiring.names)
    assert len(weights.kernels) == groups + 1  # the classifier is a kernel outside the graph
    assert time.perf_counter() - start < 60


@pytest.mark.slow
def test_a_keras_application_clusters():
    keras.utils.set_random_seed(12)
    fit = SpectralNCut(n_clusters=12, random_state=0).fit(APPLICATIONS[0][1]())
    assert len(fit.labels_) == sum(fit.graph_.layer_sizes)
    assert set(np.unique(fit.labels_)) - {-1} == set(range(12))
    assert 0 < fit.ncut_ < 12


# --------------------------------------------------------------------------- one network, two frameworks


def test_a_modern_block_gives_one_graph_through_keras_and_onnx(tmp_path):
    """Depthwise conv, pre-activation batch norm, squeeze-and-excitation gate and a residual sum,
    built in Keras and written again as ONNX (PyTorch's layout) with the same weights: the same
    groups and the same edge weights."""
    pytest.importorskip("onnx")
    from model_files import save_onnx
    from onnx import helper

    rng = np.random.default_rng(21)
    x = keras.Input((6, 6, 3))
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="a")(x)
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(L.ReLU()(L.BatchNormalization(name="bn")(a)))
    pooled = L.GlobalAveragePooling2D(keepdims=True)(d)
    gate = L.Conv2D(8, 1, activation="sigmoid", name="se2")(L.Conv2D(2, 1, activation="relu", name="se1")(pooled))
    y = L.Conv2D(4, 1, name="c")(L.Add()([a, L.Multiply()([d, gate])]))
    model = keras.Model(x, y)
    for name in ("a", "bn", "dw", "se1", "se2", "c"):
        randomise(model.get_layer(name), rng)
    path = tmp_path / "block.keras"
    model.save(path)

    w = {n: [np.asarray(v, np.float64) for v in model.get_layer(n).get_weights()] for n in ("a", "bn", "dw", "se1", "se2", "c")}
    gamma, beta, mean, var = w["bn"]
    oihw = {n: w[n][0].transpose(3, 2, 0, 1) for n in ("a", "se1", "se2", "c")}
    oihw["dw"] = w["dw"][0].transpose(2, 3, 0, 1)  # (h, w, C, 1) -> (C, 1, h, w): one group per channel
    weights = {f"{n}.weight": oihw[n] for n in oihw} | {f"{n}.bias": w[n][1] for n in ("a", "dw", "se1", "se2", "c")}
    weights |= {"g": gamma, "b": beta, "m": mean, "v": var}
    conv = lambda n, i, o, **kw: helper.make_node("Conv", [i, f"{n}.weight", f"{n}.bias"], [o], **kw)  # noqa: E731
    nodes = [conv("a", "x", "ha", pads=[1] * 4), helper.make_node("Relu", ["ha"], ["ra"]),
             helper.make_node("BatchNormalization", ["ra", "g", "b", "m", "v"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["rn"]), conv("dw", "rn", "hd", pads=[1] * 4, group=8),
             helper.make_node("GlobalAveragePool", ["hd"], ["p"]), conv("se1", "p", "s1"),
             helper.make_node("Relu", ["s1"], ["r1"]), conv("se2", "r1", "s2"),
             helper.make_node("Sigmoid", ["s2"], ["gate"]), helper.make_node("Mul", ["hd", "gate"], ["gated"]),
             helper.make_node("Add", ["ra", "gated"], ["s"]), conv("c", "s", "y")]
    onnx_path = save_onnx(tmp_path / "block.onnx", nodes, weights, [1, 3, 6, 6], "y")
    from_keras, from_onnx = load_weights(path), load_weights(onnx_path)
    assert from_keras.names == from_onnx.names == ["a", "dw", "se1", "se2", "c"]
    a_graph, b_graph = graph_of(from_keras), graph_of(from_onnx)
    assert a_graph.layer_sizes == b_graph.layer_sizes
    np.testing.assert_allclose(a_graph.adjacency.toarray(), b_graph.adjacency.toarray(), rtol=1e-5)
