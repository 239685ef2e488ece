"""The clusterability regulariser's penalty and its exact gradient (method.md §2.6), against
networkx's normalised Laplacian and finite differences."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from nn_clustering.core.clusterability import clusterability_penalty, penalty_gradient
from nn_clustering.core.graph import mlp_graph


def kernels_of(seed: int, sizes=(6, 5, 4, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(size=(a, b))
        out.append(np.where(np.abs(w) < 0.05, 0.3, w))  # away from |w| = 0, where |w| has no derivative
    return out


@pytest.mark.parametrize("seed", range(3))
def test_penalty_is_the_mean_of_networkx_laplacian_eigenvalues_2_to_4(seed):
    kernels = kernels_of(seed)
    graph = nx.from_scipy_sparse_array(mlp_graph(kernels).adjacency)
    values = np.sort(np.linalg.eigvalsh(nx.normalized_laplacian_matrix(graph).toarray()))
    assert clusterability_penalty(kernels, 3) == pytest.approx(values[1:4].mean(), rel=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_gradient_equals_central_finite_differences(seed):
    kernels = kernels_of(seed)
    _, grads = penalty_gradient(kernels, 3)
    rng = np.random.default_rng(100 + seed)
    for _ in range(12):
        layer = int(rng.integers(len(kernels)))
        i, j = (int(rng.integers(n)) for n in kernels[layer].shape)
        step = 1e-6
        plus, minus = [k.copy() for k in kernels], [k.copy() for k in kernels]
        plus[layer][i, j] += step
        minus[layer][i, j] -= step
        numeric = (clusterability_penalty(plus, 3) - clusterability_penalty(minus, 3)) / (2 * step)
        assert grads[layer][i, j] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_gradient_steps_lower_the_penalised_eigenvalues():
    """30 plain gradient steps on the penalty alone: it falls at every step, by a third in all."""
    kernels = kernels_of(7, (10, 12, 12, 4))
    values = []
    for _ in range(30):
        value, grads = penalty_gradient(kernels, 3)
        values.append(value)
        kernels = [k - 5.0 * g for k, g in zip(kernels, grads, strict=True)]
    values.append(clusterability_penalty(kernels, 3))
    assert np.all(np.diff(values) < 0) and values[-1] < values[0] * 2 / 3


keras = pytest.importorskip("keras")


def backend_gradient(fn, arrays):
    """The gradient of a scalar function of tensors, by the backend's own differentiation."""
    if keras.backend.backend() == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(lambda *xs: fn(list(xs)), argnums=tuple(range(len(arrays))))(*arrays)]
    import tensorflow as tf

    variables = [tf.Variable(a) for a in arrays]
    with tf.GradientTape() as tape:
        value = fn(variables)
    return [g.numpy() for g in tape.gradient(value, variables)]


def test_the_keras_penalty_and_its_gradient_equal_the_numpy_ones():
    """In keras.ops (the training backend) the penalty and the gradient the backend takes of it
    equal the numpy closed form, on a layered graph whose adjacency has repeated eigenvalues (its
    sides differ in size)."""
    from nn_clustering.training.regulariser import clusterability_penalty as keras_penalty

    kernels = kernels_of(11, (7, 9, 8, 3))
    value, grads = penalty_gradient(kernels, 3)
    tensors = [keras.ops.convert_to_tensor(k) for k in kernels]
    double = keras.backend.standardize_dtype(tensors[0].dtype) == "float64"  # JAX computes in float32
    rtol, atol = (1e-9, 1e-12) if double else (2e-5, 2e-6)
    assert float(keras_penalty(tensors, 3)) == pytest.approx(value, rel=rtol)
    arrays = [np.asarray(keras.ops.convert_to_numpy(t)) for t in tensors]
    for got, want in zip(backend_gradient(lambda ks: keras_penalty(ks, 3), arrays), grads, strict=True):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=100 * rtol, atol=atol)


def test_a_regularised_model_adds_the_penalty_to_its_loss_and_saves(tmp_path):
    from nn_clustering.training.regulariser import ClusterabilityRegularised

    keras.utils.set_random_seed(0)
    layers = [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3, activation="softmax")]
    model = ClusterabilityRegularised(layers, strength=0.5, n_eigs=2)
    model.compile(loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 6)).astype("float32"), keras.utils.to_categorical(rng.integers(0, 3, 8), 3)
    plain = keras.Sequential(layers[1:])
    plain.build((None, 6))
    plain.compile(loss="categorical_crossentropy")
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers]
    by_hand = 0.5 * clusterability_penalty(kernels, 2)
    assert model.evaluate(x, y, verbose=0) - plain.evaluate(x, y, verbose=0) == pytest.approx(by_hand, rel=1e-4)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, ClusterabilityRegularised) and (loaded.strength, loaded.n_eigs) == (0.5, 2)


def test_a_penalty_every_kth_batch_counts_the_batches_and_trains(tmp_path):
    """With ``every`` = 4 the model counts its training batches (also inside the backend's
    compiled step) and its loss still carries the penalty in evaluation."""
    from nn_clustering.training.regulariser import ClusterabilityRegularised

    keras.utils.set_random_seed(1)
    model = ClusterabilityRegularised([keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
                                       keras.layers.Dense(3, activation="softmax")], strength=0.5, n_eigs=2, every=4)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype("float32"), keras.utils.to_categorical(rng.integers(0, 3, 40), 3)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(model.penalty_step.value)) == 10
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").every == 4


def test_tracked_pairs_refresh_from_a_stranger_and_then_follow_small_steps():
    """From an arbitrary basis the tracked penalty falls back to a full SVD (refreshed); from its
    own basis, after a small change of the weights, the subspace iterations alone give the
    penalty and gradient of a dense eigendecomposition (numpy, core/clusterability.py)."""
    from nn_clustering.training.regulariser import basis_width, tracked_penalty

    kernels = kernels_of(5, (9, 12, 10, 4))
    width = basis_width(kernels, 3)
    stranger = np.linalg.qr(np.random.default_rng(1).normal(size=(12 + 4, width)))[0]
    value, basis, refreshed = tracked_penalty([keras.ops.convert_to_tensor(k) for k in kernels], 3,
                                              keras.ops.convert_to_tensor(stranger))
    assert int(refreshed) == 1 and float(value) == pytest.approx(clusterability_penalty(kernels, 3), rel=2e-5)
    rng = np.random.default_rng(2)
    moved = [k + 1e-3 * rng.normal(size=k.shape) for k in kernels]
    want_value, want_grads = penalty_gradient(moved, 3)
    basis = keras.ops.convert_to_numpy(basis)

    def tracked(ks):
        return tracked_penalty(ks, 3, keras.ops.convert_to_tensor(basis))

    arrays = [k.astype(np.float32) for k in moved]
    value, _, refreshed = tracked([keras.ops.convert_to_tensor(a) for a in arrays])
    assert int(refreshed) == 0 and float(value) == pytest.approx(want_value, rel=2e-5)
    for got, want in zip(backend_gradient(lambda ks: tracked(ks)[0], arrays), want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-5)


def test_training_with_the_penalty_on_every_batch_tracks_and_lowers_it():
    """The successor's setting on a tiny net (every batch): the penalty falls over training, and
    after the first batch the tracked pairs rarely need a full SVD."""
    from nn_clustering.training.regulariser import ClusterabilityRegularised
    from nn_clustering.training.regulariser import clusterability_penalty as keras_penalty

    keras.utils.set_random_seed(2)
    model = ClusterabilityRegularised([keras.Input((8,)), keras.layers.Dense(12, activation="relu"),
                                       keras.layers.Dense(10, activation="relu"),
                                       keras.layers.Dense(3, activation="softmax")], strength=5.0, n_eigs=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")

    def penalty() -> float:
        return float(keras_penalty([layer.kernel for layer in model.layers], 3))

    before = penalty()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(640, 8)).astype("float32"), keras.utils.to_categorical(rng.integers(0, 3, 640), 3)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    steps, refreshes = (int(keras.ops.convert_to_numpy(v.value)) for v in (model.penalty_step, model.penalty_refreshes))
    assert steps == 40 and 1 <= refreshes <= 10
    assert penalty() < 0.8 * before
