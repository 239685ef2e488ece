"""The successor paper's training factors (method.md §2.5): the clusterable initialisation's
block structure, the L1/L2 penalties added to the loss, and their tags."""

from __future__ import annotations

import numpy as np
import pytest

from nn_clustering.registry import REGISTRY, get_spec
from nn_clustering.training.factors import DOWN_CNN, DOWN_MLP, clusterable_kernels, up_weight


def test_up_weight_keeps_the_expected_multiplier_at_one():
    assert up_weight(0.6, 10) == pytest.approx(4.6) and up_weight(0.8, 10) == pytest.approx(2.8)
    for down in (DOWN_MLP, DOWN_CNN):
        assert (up_weight(down, 10) + 9 * down) / 10 == pytest.approx(1.0)


def patterns(matrix: np.ndarray, axis: int) -> list[bytes]:
    return [np.take(matrix, i, axis=axis).tobytes() for i in range(matrix.shape[axis])]


def test_clusterable_initialisation_scales_blocks_of_one_module_assignment():
    """784 -> 40 -> 30 -> 10 kernels of ones: the first is untouched; every other entry is
    multiplied by 4.6 or 0.6, and the 4.6 entries are the blocks of one module per unit: two
    units of a hidden layer read the same pattern from the layer below exactly when they write
    the same pattern to the layer above, and output unit i is module i (unit c of the last
    hidden layer joins output c only)."""
    kernels = [np.ones((784, 40)), np.ones((40, 30)), np.ones((30, 10))]
    out = clusterable_kernels(kernels, 10, np.random.default_rng(0), DOWN_MLP)
    np.testing.assert_array_equal(out[0], kernels[0])
    for k in out[1:]:
        assert set(np.round(np.unique(k), 12)) == {4.6, 0.6}
    high = [np.isclose(k, 4.6) for k in out]
    below, above = patterns(high[1], 1), patterns(high[2], 0)
    for i in range(30):
        for j in range(30):
            assert (below[i] == below[j]) == (above[i] == above[j])
    up = high[2]
    assert (up.sum(axis=1) == 1).all()  # each last-hidden unit joins exactly the output of its module
    last_modules = up.argmax(axis=1)
    assert len(set(last_modules)) > 1 and all(
        (below[i] == below[j]) == (last_modules[i] == last_modules[j]) for i in range(30) for j in range(30))


def test_clusterable_initialisation_scales_whole_conv_slices():
    kernels = [np.ones((3, 3, 1, 8)), np.ones((3, 3, 8, 6))]
    out = clusterable_kernels(kernels, 10, np.random.default_rng(1), DOWN_CNN)
    np.testing.assert_array_equal(out[0], kernels[0])
    slices = out[1].reshape(9, 8, 6)
    assert (slices == slices[0]).all() and set(np.round(np.unique(slices), 12)) <= {2.8, 0.8}


keras = pytest.importorskip("keras")


@pytest.mark.parametrize(("l1", "l2"), [(0.01, 0.0), (0.0, 0.02)])
def test_the_penalty_is_added_to_the_loss_by_hand(l1, l2):
    """The same weights with and without the penalty: the losses differ by l1 sum |W| +
    l2 sum W^2 over every kernel (biases not penalised)."""
    from nn_clustering.training.architectures import build_mlp

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 12)).astype("float32"), keras.utils.to_categorical(rng.integers(0, 3, 16), 3)
    plain, penalised = (build_mlp(hidden=(5, 4), n_inputs=12, n_classes=3, l1=a, l2=b) for a, b in ((0, 0), (l1, l2)))
    penalised.set_weights(plain.get_weights())
    for model in (plain, penalised):
        model.compile(loss="categorical_crossentropy")
    kernels = [w for w in plain.get_weights() if w.ndim == 2]
    by_hand = sum(l1 * np.abs(k).sum() + l2 * (k.astype(np.float64) ** 2).sum() for k in kernels)
    difference = penalised.evaluate(x, y, verbose=0, batch_size=16) - plain.evaluate(x, y, verbose=0, batch_size=16)
    assert difference == pytest.approx(by_hand, rel=1e-4)


def test_factor_tags_build_their_models():
    from nn_clustering.training.train import build_model

    assert get_spec("MNIST+L1REG").l1 == 5e-5 and get_spec("FASHION+L2REG").l2 == 5e-5
    assert get_spec("CNN-MNIST+MOD-INIT").init_modules == 10 and get_spec("HALVES-SAME-FASHION").dataset == "halves-same-fashion"
    assert all(REGISTRY[t].instances == 5 for t in ("MNIST+MOD-INIT", "HALVES-MNIST", "CNN-FASHION+L1REG"))
    keras.utils.set_random_seed(4)
    plain = build_model(get_spec("MNIST"))
    keras.utils.set_random_seed(4)
    initialised = build_model(get_spec("MNIST+MOD-INIT"), seed=4)
    ratios = [b / a for a, b in zip(plain.get_weights()[0::2], initialised.get_weights()[0::2], strict=True)]
    np.testing.assert_allclose(ratios[0], 1.0)
    for r in ratios[1:]:
        assert np.all(np.isclose(r, 4.6, rtol=1e-5) | np.isclose(r, 0.6, rtol=1e-5))
    assert build_model(get_spec("CNN-FASHION+L2REG")).losses  # every kernel penalised


def test_stacked_cnn_tags_read_two_channels():
    from nn_clustering.data.imageset import Dataset
    from nn_clustering.training.train import build_model, prepare_data

    spec = get_spec("CNN-STACKED-SAME-FASHION")
    assert (spec.dataset, spec.channels, spec.instances) == ("stacked-same-fashion", 2, 5)
    model = build_model(spec)
    assert tuple(model.input_shape) == (None, 28, 28, 2) and model.get_weights()[0].shape == (3, 3, 2, 64)
    images = np.arange(3 * 28 * 28 * 2, dtype=np.float32).reshape(3, 28, 28, 2)
    data = Dataset(images, np.array([0, 1, 2]), images, np.array([2, 1, 0]))
    x_train, y_train, _, _ = prepare_data(spec, data)
    np.testing.assert_array_equal(x_train, images)  # channels kept as the dataset holds them
    assert model.predict(x_train, verbose=0).shape == (3, 10) and y_train.shape == (3, 10)


def test_poly_tags_regress_with_linear_outputs_and_mean_squared_error():
    """POLY: 2-256x4-512 with linear outputs; its loss is the mean squared error by hand, and its
    data reach the model unchanged."""
    from nn_clustering.core.enums import Task
    from nn_clustering.data.imageset import Dataset
    from nn_clustering.data.synthetic import make_poly
    from nn_clustering.training.train import build_model, compile_model, prepare_data

    spec = get_spec("POLY+L2REG")
    assert (spec.task, spec.inputs, spec.n_outputs, spec.l2, spec.instances) == (Task.REGRESS, 2, 512, 5e-5, 5)
    poly = make_poly(seed=0, n_train=64, n_test=16)
    data = Dataset(poly.x_train, poly.y_train, poly.x_test, poly.y_test, name="poly")
    x_train, y_train, x_test, y_test = prepare_data(get_spec("POLY"), data)
    np.testing.assert_array_equal(y_train, poly.y_train)
    keras.utils.set_random_seed(0)
    model = build_model(get_spec("POLY"))
    assert [w.shape for w in model.get_weights()[0::2]] == [(2, 256), (256, 256), (256, 256), (256, 256), (256, 512)]
    compile_model(model, task=Task.REGRESS)
    predicted = model.predict(x_test, verbose=0)
    assert predicted.min() < 0  # linear outputs, not a softmax
    loss = model.evaluate(x_test, y_test, verbose=0)
    assert loss == pytest.approx(float(np.mean((predicted - y_test) ** 2)), rel=1e-4)
