"""The CNN extension: channel graphs of Keras models (batch norm folded), slice shuffles,
channel lesions, and clear errors for what the graph builder does not support."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from sklearn.metrics import adjusted_rand_score  # noqa: E402

from nn_clustering.core.graph import NetworkWeights, cnn_graph, graph_inputs  # noqa: E402
from nn_clustering.core.lesion import LesionConfig, single_lesion_test  # noqa: E402
from nn_clustering.core.shuffle import shuffle_weights  # noqa: E402
from nn_clustering.core.spectral import SpectralConfig, cluster_graph  # noqa: E402
from nn_clustering.errors import ModelError  # noqa: E402
from nn_clustering.formats import load_weights  # noqa: E402
from nn_clustering.formats.keras import weights_of_keras_model  # noqa: E402
from nn_clustering.training.cnn_lesion import CNNLesionEvaluator, lesion_keras_model  # noqa: E402


def small_cnn(channels=(6, 5, 4), n_classes: int = 3, side: int = 8, dropout: bool = True) -> keras.Model:
    """Conv-Conv-Pool-(Dropout)-Conv-Flatten-Dense, like method.md §2.3's CNN but tiny."""
    layers = [keras.Input((side, side, 1)),
              keras.layers.Conv2D(channels[0], 3, padding="same", activation="relu", name="conv_0"),
              keras.layers.Conv2D(channels[1], 3, padding="same", activation="relu", name="conv_1"),
              keras.layers.MaxPooling2D(2, name="pool_0")]
    if dropout:
        layers.append(keras.layers.Dropout(0.25, name="dropout_0"))
    layers += [keras.layers.Conv2D(channels[2], 3, padding="same", activation="relu", name="conv_2"),
               keras.layers.Flatten(name="flatten"), keras.layers.Dense(n_classes, name="dense_0")]
    keras.utils.set_random_seed(3)
    return keras.Sequential(layers)


def test_channel_graph_of_a_keras_cnn_holds_hand_computed_slice_norms():
    model = small_cnn((2, 3, 2))
    kernel = np.arange(3 * 3 * 2 * 3, dtype=np.float32).reshape(3, 3, 2, 3) - 20
    model.get_layer("conv_1").kernel.assign(kernel)
    weights = weights_of_keras_model(model)
    assert weights.kind == "cnn" and [k.ndim for k in weights.kernels] == [4, 4, 4, 2]
    kernels, builder = graph_inputs(weights)
    graph = builder(kernels)
    assert graph.layer_sizes == (2, 3, 2)  # output channels of conv_0, conv_1, conv_2
    # edge between channel 1 of conv_0 and channel 2 of conv_1: sum of |K[:, :, 1, 2]| by hand
    by_hand = sum(abs(kernel[r, c, 1, 2]) for r in range(3) for c in range(3))
    assert graph.adjacency[1, 2 + 2] == pytest.approx(by_hand)
    l2_kernels, l2_builder = graph_inputs(weights, "l2")
    l2 = l2_builder(l2_kernels)
    assert l2.adjacency[1, 4] == pytest.approx(np.sqrt(sum(kernel[r, c, 1, 2] ** 2 for r in range(3) for c in range(3))))
    # the successor paper's norm: numpy's matrix 1-norm of each |slice|, slice by slice
    induced_kernels, induced_builder = graph_inputs(weights, "induced-l1")
    induced = induced_builder(induced_kernels).adjacency.toarray()
    for i in range(2):
        for j in range(3):
            assert induced[i, 2 + j] == pytest.approx(np.linalg.norm(np.abs(kernel[:, :, i, j]), 1))
    assert induced[1, 4] == max(sum(abs(kernel[r, c, 1, 2]) for r in range(3)) for c in range(3))


def test_batchnorm_is_folded_so_the_folded_network_computes_the_same_outputs():
    inputs = keras.Input((7, 7, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    h = keras.layers.BatchNormalization(name="bn_a")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(3, 3, padding="valid", use_bias=False, name="conv_b")(h)
    h = keras.layers.BatchNormalization(name="bn_b", epsilon=0.01)(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(5, name="dense_a")(h)
    h = keras.layers.BatchNormalization(name="bn_c", scale=False)(h)
    outputs = keras.layers.Dense(2, name="dense_b")(keras.layers.ReLU()(h))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for var in layer.weights:
                var.assign(rng.uniform(0.5, 2.0, var.shape) * rng.choice([-1, 1], var.shape)
                           if "variance" not in var.path else rng.uniform(0.3, 3.0, var.shape))
    weights = weights_of_keras_model(model)
    assert len(weights.kernels) == 4
    # the folded network, without batch norm, must compute the same function
    folded = keras.Sequential([
        keras.Input((7, 7, 2)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(3, 3, padding="valid", activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(5, activation="relu"), keras.layers.Dense(2),
    ])
    folded.set_weights([w for pair in zip(weights.kernels, weights.biases, strict=True) for w in pair])
    x = rng.normal(size=(64, 7, 7, 2)).astype(np.float32)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
    # and the graph sees the scaled kernel: gamma / sqrt(var + eps) per output channel
    bn = model.get_layer("bn_b")
    scale = np.asarray(bn.gamma) / np.sqrt(np.asarray(bn.moving_variance) + 0.01)
    np.testing.assert_allclose(weights.kernels[1], np.asarray(model.get_layer("conv_b").kernel) * scale, rtol=1e-5)


@pytest.mark.slow
def test_cnn_built_in_two_disconnected_channel_groups_is_split_along_them(tmp_path):
    model = small_cnn((8, 8, 8), dropout=False)
    group = np.arange(8) // 4
    for name in ("conv_1", "conv_2"):
        layer = model.get_layer(name)
        kernel = np.asarray(layer.kernel)
        layer.kernel.assign(kernel * (group[:, None] == group[None, :]))  # no cross-group slices
    path = tmp_path / "two-groups.keras"
    model.save(path)
    kernels, builder = graph_inputs(load_weights(path))
    labels = cluster_graph(builder(kernels), SpectralConfig(n_clusters=2), np.random.default_rng(0)).labels
    assert adjusted_rand_score(np.tile(group, 3), labels) == 1.0
    # the command line clusters a user's Keras CNN the same way
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, "-m", "nn_clustering", "cluster", str(path), "--k", "2",
                          "--shuffles", "3", "--output", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["model"]["kind"] == "cnn" and result["ncut"] == pytest.approx(0.0, abs=1e-9)
    assert adjusted_rand_score(np.tile(group, 3), result["labels"]) == 1.0


def test_slice_shuffles_keep_whole_slices_and_the_slice_sparsity_pattern():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 5, 6))
    kernel[:, :, 1, :] = 0  # all-zero slices
    kernel[0, 0, 2, 3] = 0  # a zero inside a non-zero slice
    def slices(k):
        return sorted(map(tuple, k.reshape(9, -1).T.round(12)))
    for method in ("layer", "layer_nonzero"):
        shuffled = shuffle_weights(kernel, method, np.random.default_rng(2))
        assert slices(shuffled) == slices(kernel), method  # the same slices, moved whole
        assert not np.array_equal(shuffled, kernel)
    nonzero = shuffle_weights(kernel, "layer_nonzero", np.random.default_rng(2))
    np.testing.assert_array_equal(nonzero.any(axis=(0, 1)), kernel.any(axis=(0, 1)))
    # the channel graph's edge weights are permuted exactly like a dense layer's
    graph, shuffled_graph = cnn_graph([kernel]), cnn_graph([nonzero])
    np.testing.assert_allclose(np.sort(graph.blocks[0].ravel()), np.sort(shuffled_graph.blocks[0].ravel()))


def test_channel_lesions_zero_exactly_those_channels_and_match_lesioned_keras_models():
    model = small_cnn()
    rng = np.random.default_rng(0)
    x = rng.random((120, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 120)
    lesion = {0: np.array([1, 3]), 2: np.array([0])}
    lesioned = lesion_keras_model(model, lesion)
    for j, name in enumerate(("conv_0", "conv_1", "conv_2")):
        inner = keras.Model(lesioned.inputs, lesioned.get_layer(name).output)
        out = np.asarray(inner.predict(x, verbose=0))
        if j in lesion:
            assert np.all(out[..., lesion[j]] == 0)
            intact = keras.Model(model.inputs, model.get_layer(name).output).predict(x, verbose=0)
            if j == 0:  # the first layer: every other channel untouched
                keep = np.setdiff1d(np.arange(out.shape[-1]), lesion[j])
                np.testing.assert_array_equal(out[..., keep], intact[..., keep])
    # the batched evaluator (delta trick) gives the lesioned models' accuracies
    evaluator = CNNLesionEvaluator(model, x, y, max_batch=50)
    assert evaluator.net.layer_sizes == (6, 5, 4)
    lesions = [{0: np.array([1, 3])}, {1: np.array([0, 4])}, {2: np.array([2])}, lesion, {},
               {1: np.array([1, 2, 3]), 2: np.array([0, 1])}]
    accs, per_class = evaluator.evaluate(lesions)
    for les, acc, pc in zip(lesions, accs, per_class, strict=True):
        predicted = lesion_keras_model(model, les).predict(x, verbose=0).argmax(axis=1)
        assert acc == pytest.approx((predicted == y).mean())
        np.testing.assert_allclose(pc, [(predicted[y == c] == c).mean() for c in range(3)])
    assert evaluator.intact()[0] == pytest.approx((model.predict(x, verbose=0).argmax(1) == y).mean())


def test_single_lesion_test_covers_every_conv_layer():
    model = small_cnn((8, 8, 8), dropout=False)
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 60)
    labels = np.tile(np.arange(8) // 4, 3)
    labels[5] = -1  # an isolated channel is never lesioned
    rows, randoms = single_lesion_test(CNNLesionEvaluator(model, x, y), labels, LesionConfig(4, 1), progress=False)
    assert [(r.layer, r.cluster, r.size) for r in rows] == [
        (0, 0, 4), (0, 1, 3), (1, 0, 4), (1, 1, 4), (2, 0, 4), (2, 1, 4)]
    assert all(len(v) == 4 for v in randoms.values())


@pytest.mark.parametrize("bad, message", [
    (lambda h: keras.layers.Reshape((3, 4), name="odd_reshape")(h),
     "layer 'odd_reshape' (Reshape) reshapes (2, 2, 3) to (3, 4)"),
    (lambda h: keras.layers.Permute((3, 1, 2), name="odd_permute")(h),
     "layer 'odd_permute' (Permute) permutes the axes to (3, 1, 2)"),
    (lambda h: keras.layers.Concatenate(axis=1, name="odd_cat")([h, h]), "layer 'odd_cat' (Concatenate) joins along axis 1"),
    (lambda h: keras.layers.Maximum(name="odd_max")([h, h]), "layer 'odd_max' (Maximum) is not supported"),
])
def test_unsupported_layers_get_a_clear_error_naming_them(bad, message, tmp_path):
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(3, 3, activation="relu", name="conv_0")(inputs)
    h = keras.layers.Conv2D(3, 3, name="conv_1")(h)
    h = bad(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    with pytest.raises(ModelError, match=re.escape(message)):
        weights_of_keras_model(model)
    path = tmp_path / "odd.keras"
    model.save(path)
    run = subprocess.run([sys.executable, "-m", "nn_clustering", "cluster", str(path), "--k", "2"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message.split("'")[1] in run.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("late", ["layer_norm", "late_bn", "gate"])
def test_layers_once_refused_now_scale_the_rows_of_the_next_conv(late):
    """A layer norm, a batch norm after an activation and a product of computed tensors, once
    refused, are read by the rules of method.md §3.3: the norm's per-channel factor multiplies
    the next conv's rows (by hand here); the product x * x joins x's channels to the next conv."""
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(3, 3, activation="relu", name="conv_0")(inputs)
    h = keras.layers.Conv2D(3, 3, name="conv_1")(h)
    norm = {"layer_norm": keras.layers.LayerNormalization(name="odd_norm"),
            "late_bn": keras.layers.BatchNormalization(name="late_bn")}.get(late)
    if norm is None:
        h = keras.layers.Multiply(name="gate")([h, h])
    else:
        h = norm(keras.layers.ReLU(name="relu_x")(h) if late == "late_bn" else h)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv_2")(h))
    rng = np.random.default_rng(0)
    factor = np.ones(3)
    if norm is not None:
        norm.set_weights([rng.uniform(0.5, 2.0, w.shape) for w in norm.get_weights()])
        gamma = np.asarray(norm.gamma, np.float64)
        factor = gamma if late == "layer_norm" else gamma / np.sqrt(np.asarray(norm.moving_variance, np.float64)
                                                                    + norm.epsilon)
    kernels = [np.asarray(model.get_layer(f"conv_{i}").kernel, np.float64) for i in range(3)]
    kernels[2] = kernels[2] * factor[:, None]
    kernels_of_graph, builder = graph_inputs(weights_of_keras_model(model))
    got = builder(kernels_of_graph).adjacency.toarray()
    plain_kernels, plain_builder = graph_inputs(NetworkWeights.from_arrays(kernels))
    want = plain_builder(plain_kernels).adjacency.toarray()
    if late == "gate":  # the product's channel i is x_i x_i: the same edges, whatever their scale
        np.testing.assert_array_equal(got != 0, want != 0)
    else:
        np.testing.assert_array_equal(got, want)
