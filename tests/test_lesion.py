"""Lesion tests (method.md §6) against hand values, a Keras oracle and a planted network."""

from __future__ import annotations

import numpy as np
import pytest

from nn_clustering.core.graph import NetworkWeights, mlp_graph
from nn_clustering.core.lesion import (
    MLP,
    LesionConfig,
    LesionEvaluator,
    active_neurons,
    classify,
    double_lesion_pair,
    double_lesion_test,
    forward,
    lesion_network,
    random_sets,
    single_lesion_test,
    submodules,
)
from nn_clustering.core.spectral import SpectralConfig, cluster_graph
from nn_clustering.core.stats import empirical_p
from nn_clustering.errors import ModelError, NnClusteringError

BLOCK, CLASSES = 16, 4


def random_mlp(seed=0, sizes=(20, 24, 24, 5)) -> MLP:
    rng = np.random.default_rng(seed)
    kernels = [rng.normal(size=(a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    biases = [rng.normal(size=b).astype(np.float32) * 0.1 for b in sizes[1:]]
    return MLP.from_weights(NetworkWeights(kernels, biases))


def planted_class_network(seed=0):
    """Class c is carried only by block c of every hidden layer: input block c -> hidden block c
    -> output c, with weak cross-block weights; data where class c lights up input block c."""
    rng = np.random.default_rng(seed)
    sizes = (BLOCK * CLASSES, BLOCK * CLASSES, BLOCK * CLASSES, CLASSES)
    groups = [np.arange(n) * CLASSES // n for n in sizes]
    kernels = []
    for a, b in zip(groups[:-1], groups[1:], strict=True):
        strong = a[:, None] == b[None, :]
        w = rng.uniform(0.5, 1.0, (a.size, b.size))
        kernels.append(np.where(strong, w, 0.001 * w).astype(np.float32))
    biases = [np.zeros(n, np.float32) for n in sizes[1:]]
    y = np.repeat(np.arange(CLASSES), 50)
    x = (rng.random((y.size, sizes[0])) * 0.1 + (groups[0][None, :] == y[:, None])).astype(np.float32)
    return MLP.from_weights(NetworkWeights(kernels, biases)), x, y, groups


def test_lesioned_neurons_output_zero_for_every_input_and_others_are_untouched():
    net = random_mlp()
    x = np.random.default_rng(1).normal(size=(300, 20)).astype(np.float32)
    neurons = np.array([0, 5, 7])
    intact = forward(net, x)
    lesioned = forward(lesion_network(net, {1: neurons}), x)
    assert np.all(lesioned[1][:, neurons] == 0)
    keep = np.setdiff1d(np.arange(24), neurons)
    np.testing.assert_array_equal(lesioned[1][:, keep], intact[1][:, keep])
    assert np.all(net.kernels[0][:, neurons] != 0)  # the original is not modified


@pytest.mark.parametrize("lesions", [[{1: [0, 3]}], [{2: [1, 2, 3]}, {1: [4], 2: [5]}, {}]])
def test_batched_evaluation_equals_keras_on_the_lesioned_network(lesions):
    import keras

    from nn_clustering.training.architectures import build_mlp

    net = random_mlp()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 20)).astype(np.float32)
    y = rng.integers(0, 5, 400)
    lesions = [{k: np.array(v) for k, v in lesion.items()} for lesion in lesions]
    accs, per_class = LesionEvaluator(net, x, y, n_classes=5, chunk=2).evaluate(lesions)
    for lesion, acc, row in zip(lesions, accs, per_class, strict=True):
        damaged = lesion_network(net, lesion)
        model = build_mlp(hidden=(24, 24), n_inputs=20, n_classes=5)
        model.set_weights([w for pair in zip(damaged.kernels, damaged.biases, strict=True) for w in pair])
        predicted = keras.ops.convert_to_numpy(model(x)).argmax(axis=1)
        assert acc == pytest.approx(np.mean(predicted == y), abs=1 / 400)
        for c in range(5):
            assert row[c] == pytest.approx(np.mean(predicted[y == c] == c), abs=1 / np.sum(y == c))


def test_planted_submodule_is_important_and_its_damage_falls_on_its_class():
    net, x, y, groups = planted_class_network()
    labels = cluster_graph(mlp_graph(list(net.kernels)), SpectralConfig(CLASSES), seed=0).labels
    evaluator = LesionEvaluator(net, x, y)
    assert evaluator.intact()[0] == 1.0
    rows, randoms = single_lesion_test(evaluator, labels, LesionConfig(n_random=30, random_state=1), progress=False)
    assert len(rows) == 2 * CLASSES  # two hidden layers x four clusters
    for row in rows:
        neurons = submodules(labels, net.layer_sizes)[rows.index(row)].neurons
        (carried,) = set(groups[row.layer][neurons])  # the cluster is exactly one planted block
        assert row.size == BLOCK and row.taxonomy == "important"
        assert row.p_value == pytest.approx(1 / 31) and row.diff == pytest.approx(-0.25)
        assert row.acc_class[carried] == 0.0
        assert all(row.acc_class[c] == 1.0 for c in range(CLASSES) if c != carried)
        assert row.as_dict()[f"acc_class_{carried}"] == 0.0  # one table column per class
        assert randoms[row.name].shape == (30,)


def test_random_lesions_have_the_right_size_and_stay_in_the_active_part_of_the_layer():
    net = random_mlp(sizes=(20, 24, 24, 5))
    labels = np.concatenate([np.zeros(20, int), np.r_[[-1] * 4, np.arange(20) % 3], np.arange(24) % 3,
                             np.zeros(5, int)])
    pool = active_neurons(labels, net.layer_sizes, 1)
    np.testing.assert_array_equal(pool, np.arange(4, 24))
    draws = random_sets(pool, 7, 50, np.random.default_rng(0))
    assert all(d.size == 7 and np.unique(d).size == 7 and np.isin(d, pool).all() for d in draws)

    seen = []

    class Spy(LesionEvaluator):
        def evaluate(self, lesions):
            seen.extend(lesions)
            return super().evaluate(lesions)

    x = np.random.default_rng(3).normal(size=(50, 20)).astype(np.float32)
    spy = Spy(net, x, np.zeros(50, int), n_classes=5)
    rows, _ = single_lesion_test(spy, labels, LesionConfig(n_random=5, random_state=0), progress=False)
    modules = submodules(labels, net.layer_sizes)
    assert len(seen) == len(modules) * 6
    for i, module in enumerate(modules):
        for lesion in seen[i * 6:(i + 1) * 6]:
            assert list(lesion) == [module.layer] and len(lesion[module.layer]) == module.size
            assert np.isin(lesion[module.layer], active_neurons(labels, net.layer_sizes, module.layer)).all()


def test_p_value_z_and_taxonomy_by_hand():
    assert empirical_p(0.5, np.array([0.4, 0.6, 0.7, 0.45])) == pytest.approx(3 / 5)
    assert empirical_p(0.1, np.array([0.4, 0.6])) == pytest.approx(1 / 3)
    n = 100
    cases = [
        ((256, True, 1 / 101, -0.5), "complete"),
        ((12, False, 1 / 101, -0.5), "small"),
        ((13, False, 1 / 101, -0.01), "important"),
        ((20, False, 1.0, -0.005), "prunable"),
        ((20, False, 1.0, -0.02), "least_important"),
        ((20, False, 1 / 101, -0.001), "sig-but-not-diff"),
        ((20, False, 0.5, -0.3), "diff-but-not-sig"),
        ((20, False, 0.5, 0.0), "other"),
        ((20, False, 2 / 101, -0.3), "diff-but-not-sig"),  # p = 2/101 is not < 1/100
    ]
    for (size, complete, p, diff), expected in cases:
        assert classify(size, complete, p, diff, n) == expected


def test_single_lesion_row_statistics_by_hand():
    """Every statistic of a row recomputed independently: the lesioned networks evaluated one
    by one through lesion_network + forward (not the batched evaluator), the random sets drawn
    by the documented seed scheme (child i of the root seed for sub-module i), and p, mean,
    sd (ddof 1), z, diff, proportion and per-class accuracy by hand."""
    net = random_mlp(seed=3)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 20)).astype(np.float32)
    y = forward(net, x)[-1].argmax(axis=1)  # labels the intact net gets right...
    y[::3] = (y[::3] + 1) % 5  # ...but a third of them wrong, so lesions can both help and hurt
    labels = cluster_graph(mlp_graph(list(net.kernels)), SpectralConfig(3), seed=0).labels
    config = LesionConfig(n_random=12, random_state=4)
    rows, randoms = single_lesion_test(LesionEvaluator(net, x, y, n_classes=5), labels, config, progress=False)
    modules = submodules(labels, net.layer_sizes)
    seeds = np.random.SeedSequence(config.random_state).spawn(len(modules))

    def accuracy(lesion):
        predicted = forward(lesion_network(net, lesion), x)[-1].argmax(axis=1)
        return np.mean(predicted == y), [np.mean(predicted[y == c] == c) for c in range(5)]

    intact, intact_class = accuracy({})

    def class_range_by_hand(per_class) -> float:
        drops = [i - c for i, c in zip(intact_class, per_class, strict=True)]
        spread, mean = max(drops) - min(drops), abs(sum(drops) / len(drops))
        return 0.0 if spread == 0 else (spread / mean if mean > 1e-12 else np.inf)

    checked_z = 0
    for row, module, seed in zip(rows, modules, seeds, strict=True):
        true_acc, per_class = accuracy({module.layer: module.neurons})
        pool = np.flatnonzero(labels[sum(net.layer_sizes[:module.layer]):][:net.layer_sizes[module.layer]] >= 0)
        draws = random_sets(pool, module.size, config.n_random, np.random.default_rng(seed))
        random_accs = np.array([accuracy({module.layer: d})[0] for d in draws])
        np.testing.assert_allclose(randoms[row.name], random_accs)
        mean, sd = random_accs.sum() / random_accs.size, np.sqrt(np.sum((random_accs - random_accs.mean()) ** 2) / 11)
        assert (row.layer, row.size, row.name) == (module.layer, module.neurons.size, f"L{module.layer}C{module.cluster}")
        assert row.acc == pytest.approx(true_acc) and row.intact_acc == pytest.approx(intact)
        assert row.diff == pytest.approx(true_acc - intact)
        assert row.p_value == pytest.approx((sum(a < true_acc for a in random_accs) + 1) / 13)
        assert row.random_mean == pytest.approx(mean) and row.random_sd == pytest.approx(sd)
        assert row.proportion == pytest.approx(module.size / 24)
        np.testing.assert_allclose(row.acc_class, per_class)
        true_range = class_range_by_hand(per_class)
        random_ranges = [class_range_by_hand(accuracy({module.layer: d})[1]) for d in draws]
        assert row.class_range == pytest.approx(true_range)
        assert row.range_p == pytest.approx((sum(r > true_range + 1e-12 for r in random_ranges) + 1) / 13)
        if sd > 0:
            assert row.z == pytest.approx((true_acc - mean) / sd)
            checked_z += 1
    assert checked_z >= len(rows) - 1  # the z of (nearly) every row was checked, not skipped
    again, _ = single_lesion_test(LesionEvaluator(net, x, y, n_classes=5), labels, config, progress=False)
    assert again == rows  # seeded: the same numbers twice


def test_double_lesion_of_a_submodule_with_itself_is_its_single_lesion():
    net, x, y, _ = planted_class_network()
    labels = cluster_graph(mlp_graph(list(net.kernels)), SpectralConfig(CLASSES), seed=0).labels
    evaluator = LesionEvaluator(net, x, y)
    module = submodules(labels, net.layer_sizes)[2]
    single, _ = evaluator.evaluate([{module.layer: module.neurons}])
    row = double_lesion_pair(evaluator, labels, module, module, 5, np.random.default_rng(0))
    assert row["acc_xy"] == pytest.approx(single[0]) and row["acc_y"] == pytest.approx(single[0])
    assert row["cond_effect"] == 0


def test_double_lesion_of_two_blocks_removes_both_classes():
    """X carries class a in hidden layer 1, Y class b != a in hidden layer 2: Y alone costs class
    b (accuracy 0.75), X and Y together cost both (exactly 0.5, which a no-op second lesion
    would not give), and the joint lesion is worse than every random pair of the same sizes."""
    net, x, y, groups = planted_class_network()
    labels = cluster_graph(mlp_graph(list(net.kernels)), SpectralConfig(CLASSES), seed=0).labels
    evaluator = LesionEvaluator(net, x, y)
    modules = submodules(labels, net.layer_sizes)

    def carried(module):
        (block,) = set(groups[module.layer][module.neurons])
        return block

    a = next(m for m in modules if m.layer == 1)
    b = next(m for m in modules if m.layer == 2 and carried(m) != carried(a))
    row = double_lesion_pair(evaluator, labels, a, b, 10, np.random.default_rng(0))
    assert row["acc_y"] == pytest.approx(0.75) and row["acc_xy"] == pytest.approx(0.5)
    predicted = forward(lesion_network(net, {1: a.neurons, 2: b.neurons}), x)[-1].argmax(axis=1)
    per_class = [np.mean(predicted[y == c] == c) for c in range(CLASSES)]
    assert per_class == [0.0 if c in (carried(a), carried(b)) else 1.0 for c in range(CLASSES)]
    assert row["joint_p"] == pytest.approx(1 / 11)


def test_interrupted_double_lesion_test_resumes_to_the_same_rows():
    net, x, y, _ = planted_class_network()
    labels = cluster_graph(mlp_graph(list(net.kernels)), SpectralConfig(CLASSES), seed=0).labels
    evaluator = LesionEvaluator(net, x, y)
    single, _ = single_lesion_test(evaluator, labels, LesionConfig(n_random=6, random_state=1), progress=False)
    args = (evaluator, labels, single, 4, 7)
    reference = double_lesion_test(*args, progress=False)
    assert len(reference) > 6
    saved: list[list] = []

    def checkpoint(rows):
        saved.append(list(rows))
        if len(saved) == 2:
            raise KeyboardInterrupt  # stopped after 6 pairs

    with pytest.raises(KeyboardInterrupt):
        double_lesion_test(*args, progress=False, checkpoint=checkpoint, checkpoint_every=3)
    assert len(saved[-1]) == 6
    resumed = double_lesion_test(*args, progress=False, done=saved[-1])
    assert resumed == reference
    with pytest.raises(NnClusteringError, match="do not match"):
        double_lesion_test(*args, progress=False, done=saved[-1][1:])


def test_bad_networks_get_clear_errors():
    kernels = [np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)]
    with pytest.raises(ModelError, match="bias per layer"):
        MLP.from_weights(NetworkWeights(kernels, [np.zeros(4)]))
    bad = [np.full((3, 4), np.nan, np.float32), np.ones((4, 2), np.float32)]
    with pytest.raises(ModelError, match="NaN"):
        MLP.from_weights(NetworkWeights(bad, [np.zeros(4), np.zeros(2)]))
    with pytest.raises(ValueError, match="not a hidden layer"):
        lesion_network(MLP.from_weights(NetworkWeights(kernels, [np.zeros(4), np.zeros(2)])), {2: np.array([0])})


@pytest.mark.parametrize("seed", range(5))
def test_fisher_and_rank_count_combinations_equal_scipy(seed):
    """Fisher's method on the half-step-shifted p-values equals scipy's combine_pvalues; the
    rank-count test equals scipy's chisquare of the rank counts against uniform."""
    from scipy import stats

    from nn_clustering.core.stats import fisher_combined_p, rank_count_test

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    p = (rng.integers(0, n + 1, size=int(rng.integers(1, 30))) + 1) / (n + 1)
    want = stats.combine_pvalues(p - 1 / (2 * (n + 1)), method="fisher").pvalue
    assert fisher_combined_p(p, n) == pytest.approx(want, rel=1e-12)
    counts = np.bincount(np.rint(p * (n + 1)).astype(int) - 1, minlength=n + 1)
    statistic, count_p = rank_count_test(p, n)
    reference = stats.chisquare(counts)
    assert statistic == pytest.approx(reference.statistic) and count_p == pytest.approx(reference.pvalue)


def test_combined_importance_leaves_out_whole_layers_and_counts_important():
    """By hand: three sub-modules, one of them its whole layer (left out); p-values 1/11 and
    11/11 of 10 random lesions."""
    from scipy import stats

    from nn_clustering.core.enums import Taxonomy
    from nn_clustering.core.lesion import SingleLesionRow, combined_importance

    def row(name, p, range_p, taxonomy):
        return SingleLesionRow(layer=1, cluster=0, name=name, size=20, proportion=0.1, acc=0.9, intact_acc=0.95,
                               diff=-0.05, p_value=p, random_mean=0.94, random_sd=0.01, z=-4.0, taxonomy=taxonomy,
                               class_range=1.0, range_p=range_p, acc_class=(0.9,), n_random=10, random_state=7)

    rows = [row("L1C0", 1 / 11, 2 / 11, Taxonomy.IMPORTANT), row("L1C1", 1.0, 3 / 11, Taxonomy.PRUNABLE),
            row("L2C0", 1 / 11, 1 / 11, Taxonomy.COMPLETE)]
    combined = combined_importance(rows)
    assert (combined.n_submodules, combined.n_important, combined.n_random) == (2, 1, 10)
    fisher = stats.chi2.sf(-2 * (np.log(0.5 / 11) + np.log(10.5 / 11)), 4)
    assert combined.fisher_p == pytest.approx(fisher, rel=1e-12)
    # ranks 0 and 10 among 11 categories, expected 2/11 each: sum (o - e)^2 / e
    e = 2 / 11
    assert combined.count_chi2 == pytest.approx(2 * (1 - e) ** 2 / e + 9 * e)
    assert combined.range_fisher_p == pytest.approx(stats.chi2.sf(-2 * (np.log(1.5 / 11) + np.log(2.5 / 11)), 4))
    assert combined.range_count_chi2 == pytest.approx(combined.count_chi2)  # two ranks in two categories again


def test_class_range_by_hand():
    """Spread of the per-class drops over their mean: one class hit (3.0), nothing changed (0),
    drops that cancel (inf), an even drop (0)."""
    from nn_clustering.core.lesion import class_range

    intact = np.array([0.9, 0.8, 1.0])
    lesioned = np.array([[0.7, 0.8, 1.0], [0.9, 0.8, 1.0], [1.0, 0.7, 1.0], [0.8, 0.7, 0.9]])
    got = class_range(intact, lesioned)
    np.testing.assert_allclose(got[[0, 1, 3]], [3.0, 0.0, 0.0], atol=1e-12)
    assert np.isinf(got[2])
