"""The analysis layer: catalog, cache, clustering/stability/learning-curve tables, figures."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from fake_models import write_fake_instance, write_fake_models

from nn_clustering.core.graph import mlp_graph
from nn_clustering.core.shuffle import ShuffleConfig, observed_seed, shuffle_test
from nn_clustering.core.spectral import SpectralConfig, cluster_graph
from nn_clustering.errors import ModelError, NnClusteringError
from nn_clustering.experiments import (
    ExperimentPaths,
    run_mlp_clustering,
    run_mlp_learning_curve,
    run_mlp_plots,
    run_mlp_stability,
    summary,
)
from nn_clustering.experiments.clustering import (
    CLUSTERING_COLUMNS,
    ClusteringConfig,
    ClusteringRow,
    ModelClustering,
)
from nn_clustering.experiments.learning_curve import LEARNING_CURVE_COLUMNS
from nn_clustering.experiments.stability import STABILITY_COLUMNS, pooled_sd_of, stability_table
from nn_clustering.storage.cache import ResultCache, cache_key
from nn_clustering.training.catalog import find_instances, write_index

FAST = ClusteringConfig(n_shuffles=12, random_state=7)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Fake models of two tags x two instances, and their analysed results (computed once)."""
    root = tmp_path_factory.mktemp("experiments")
    write_fake_models(root / "models")
    paths = ExperimentPaths(root / "models", root / "results")
    table, results = run_mlp_clustering(paths, FAST, progress=False, log=lambda _: None)
    return paths, table, results


def test_checkpoints_past_epoch_999_are_found_in_training_order(tmp_path):
    """RANDOM-x50-EPOCHS trains 1,000 dense epochs: its last checkpoint has a 4-digit epoch."""
    folder = write_fake_instance(tmp_path, "MNIST", 0, epochs=2)
    shutil.copy(folder / "checkpoints" / "dense-epoch-002.npz", folder / "checkpoints" / "dense-epoch-1000.npz")
    found = [(c.phase, c.epoch) for c in find_instances(tmp_path)[0].checkpoints()]
    assert found == [("dense", 0), ("dense", 1), ("dense", 2), ("dense", 1000), ("pruned", 1), ("pruned", 2)]


def test_catalog_finds_finished_instances_in_registry_order(tmp_path):
    write_fake_instance(tmp_path, "MNIST+DROPOUT", 0)
    write_fake_instance(tmp_path, "MNIST", 1)
    write_fake_instance(tmp_path, "MNIST", 0)
    (tmp_path / "MNIST" / ".2.partial").mkdir()  # an interrupted run is never taken as done
    found = find_instances(tmp_path)
    assert [(i.tag, i.instance) for i in found] == [("MNIST", 0), ("MNIST", 1), ("MNIST+DROPOUT", 0)]
    assert find_instances(tmp_path, ["MNIST+DROPOUT"])[0].accuracy("pruned") == pytest.approx(0.65)
    assert find_instances(tmp_path, arch="cnn") == []
    with pytest.raises(ModelError, match="make models"):
        find_instances(tmp_path / "nothing")


def test_index_is_rewritten_only_when_models_change(tmp_path):
    write_fake_instance(tmp_path, "MNIST", 0)
    index = write_index(tmp_path)
    os.utime(index, (1, 1))
    write_index(tmp_path)
    assert index.stat().st_mtime == 1  # same models: untouched, so make does not re-run analyses
    write_fake_instance(tmp_path, "FASHION", 0)
    write_index(tmp_path)
    entries = json.loads(index.read_text())["instances"]
    assert [e["tag"] for e in entries] == ["MNIST", "FASHION"] and index.stat().st_mtime > 1


def test_cache_computes_once_and_recovers_from_a_corrupt_entry(tmp_path):
    cache = ResultCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    assert cache.get_or_compute({"a": 1}, compute) == {"value": 1}
    assert cache.get_or_compute({"a": 1}, compute) == {"value": 1}
    assert cache.get_or_compute({"a": 2}, compute) == {"value": 2}
    assert len(calls) == 2 and cache_key({"a": 1}) != cache_key({"a": 2})
    entry = next(tmp_path.rglob(f"{cache_key({'a': 1})}.json"))
    entry.write_text("{truncated")
    assert cache.get_or_compute({"a": 1}, compute) == {"value": 3}


def test_clustering_table_matches_a_direct_shuffle_test(tree):
    paths, table, _ = tree
    on_disk = pd.read_csv(paths.results / "mlp-clustering.csv")
    assert list(on_disk.columns) == CLUSTERING_COLUMNS
    assert len(on_disk) == 2 * 2 * 2 * 2  # tags x instances x stages x methods
    assert (paths.results / "mlp-clustering.xlsx").exists()
    instance = find_instances(paths.models, ["MNIST+DROPOUT"])[1]
    direct = shuffle_test(instance.weights("pruned").kernels, SpectralConfig(4),
                          ShuffleConfig(12, "layer_nonzero", random_state=7), progress=False)
    row = on_disk[(on_disk.tag == "MNIST+DROPOUT") & (on_disk.instance == 1) & (on_disk.stage == "pruned")
                  & (on_disk.method == "layer_nonzero")].iloc[0]
    assert row.ncut == pytest.approx(direct.clustering.ncut, rel=1e-6)
    assert row.shuffled_mean == pytest.approx(direct.stats.mean, rel=1e-6)
    assert row.p_value == pytest.approx(direct.stats.p_value) and row.significant == direct.stats.below_all
    assert row.test_accuracy == pytest.approx(instance.accuracy("pruned"))
    assert row.model_seed == instance.seed and row.random_state == 7
    shuffles = pd.read_csv(paths.results / "mlp-clustering-shuffles.csv.gz")
    mine = shuffles[(shuffles.tag == "MNIST+DROPOUT") & (shuffles.instance == 1) & (shuffles.stage == "pruned")
                    & (shuffles.method == "layer_nonzero")]
    np.testing.assert_allclose(mine.ncut, direct.shuffled_ncuts, rtol=1e-6)
    # the planted pruned nets are all significant; Gaussian dense nets only by chance (p = 1/13 each)
    pruned = on_disk[on_disk.stage == "pruned"]
    assert pruned.significant.all() and on_disk[on_disk.stage == "dense"].significant.mean() <= 0.25
    # Cohen's d between the two methods' shuffles of every model and stage, by hand for one
    effects = pd.read_csv(paths.results / "mlp-clustering-cohens-d.csv")
    assert len(effects) == 2 * 2 * 2  # tags x instances x stages
    layer = shuffles[(shuffles.tag == "MNIST+DROPOUT") & (shuffles.instance == 1) & (shuffles.stage == "pruned")
                     & (shuffles.method == "layer")].ncut.to_numpy()
    a, b = layer, mine.ncut.to_numpy()
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    d = effects[(effects.tag == "MNIST+DROPOUT") & (effects.instance == 1) & (effects.stage == "pruned")].cohens_d
    assert d.iloc[0] == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-5)


def test_rerun_uses_the_cache_and_writes_identical_tables(tree):
    paths, _, _ = tree
    before = (paths.results / "mlp-clustering.csv").read_bytes()
    cache = paths.cache
    cache_files = sorted(cache.folder.rglob("*.json"))
    table, _ = run_mlp_clustering(paths, FAST, progress=False, log=lambda _: None)
    assert (paths.results / "mlp-clustering.csv").read_bytes() == before
    assert sorted(cache.folder.rglob("*.json")) == cache_files  # nothing new computed


def test_stability_statistics_by_hand():
    def result(tag, instance, ncut, shuffles, significant):
        row = ClusteringRow(
            tag=tag, instance=instance, stage="pruned", n_clusters=4, method="layer", ncut=ncut, shuffled_mean=np.nan,
            shuffled_sd=np.nan, z=-1.0, p_value=np.nan, significant=significant, n_shuffles=len(shuffles),
            train_accuracy=None, train_accuracy_inference=None, test_accuracy=0.9 + 0.01 * instance,
            test_accuracy_a=None, test_accuracy_b=None, n_nodes=3, smallest_cluster=1, drop_dead_ends=False,
            model_seed=0, random_state=0, profile="quick", model_sha256="", code_version="",
        )
        return ModelClustering(row, np.zeros(3, int), np.array(shuffles, float), (1, 1, 1))

    results = [result("A", 0, 1.0, [2.0, 4.0], True), result("A", 1, 2.0, [3.0, 5.0, 7.0], False),
               result("B", 0, 0.5, [1.0, 2.0], True)]
    table = stability_table(results)
    assert list(table.columns) == STABILITY_COLUMNS
    a = table[table.tag == "A"].iloc[0]
    # pooled SD: sqrt((1 * 2 + 2 * 4) / 3); mean of all five shuffles = 21 / 5
    assert a.shuffled_pooled_sd == pytest.approx(np.sqrt(10 / 3))
    assert pooled_sd_of([np.array([2.0, 4.0]), np.array([3.0, 5.0, 7.0])]) == pytest.approx(np.sqrt(10 / 3))
    assert a.shuffled_mean == pytest.approx(4.2) and a.ncut_mean == pytest.approx(1.5)
    assert a.z_pooled == pytest.approx((1.5 - 4.2) / np.sqrt(10 / 3))
    assert a.ncut_sd == pytest.approx(np.std([1.0, 2.0], ddof=1))
    assert (a.n_significant, a.share_significant, a.stable) == (1, 0.5, False)
    assert table[table.tag == "B"].iloc[0].stable


def test_stability_experiment_uses_pruned_primary_instances(tree):
    paths, _, _ = tree
    per_instance, statistic = run_mlp_stability(paths, ClusteringConfig(n_clusters=2, n_shuffles=12, random_state=7),
                                                progress=False, log=lambda _: None)
    assert set(per_instance.stage) == {"pruned"} and set(per_instance.n_clusters) == {2}
    assert (paths.results / "mlp-clustering-stability-statistic-k2.csv").exists()
    assert (paths.results / "mlp-clustering-stability-instances-k2.xlsx").exists()
    assert len(statistic) == 2 * 2 and statistic.n_instances.eq(2).all()


def test_learning_curve_rows_match_direct_clustering(tree):
    paths, _, _ = tree
    curve = run_mlp_learning_curve(paths, n_clusters=4, random_state=3, progress=False)
    assert list(curve.columns) == LEARNING_CURVE_COLUMNS
    mnist = curve[(curve.tag == "MNIST") & (curve.instance == 0)]
    # dense epochs 0..2 then pruned epochs 1..2 -> global epochs 0..4
    assert mnist.global_epoch.tolist() == [0, 1, 2, 3, 4]
    assert mnist.phase.tolist() == ["dense"] * 3 + ["pruned"] * 2
    assert np.isnan(mnist.test_accuracy.iloc[0]) and mnist.test_accuracy.iloc[1] == pytest.approx(0.55)
    instance = find_instances(paths.models, ["MNIST"])[0]
    checkpoint = instance.checkpoints()[1]
    expected = cluster_graph(
        mlp_graph(list(np.load(checkpoint.path).values())), SpectralConfig(4), observed_seed(3)
    ).ncut
    assert mnist.ncut.iloc[1] == pytest.approx(expected)
    assert mnist.sparsity.iloc[-1] == pytest.approx(0.5, abs=0.01) and mnist.sparsity.iloc[0] == 0


def test_plots_are_written_labelled_and_titled(tree, tmp_path):
    import matplotlib.pyplot as plt

    from nn_clustering.experiments import plots

    paths, table, results = tree
    run_mlp_learning_curve(paths, progress=False)
    written = run_mlp_plots(paths, random_state=7)
    assert {p.name for p in written} >= {"mlp-ncut-vs-accuracy.png", "mlp-shuffle-distributions.png",
                                         "mlp-cohens-d.png", "mlp-learning-curve.png",
                                         "mlp-clustered-network.png"}
    assert all(p.with_suffix(".svg").exists() for p in written)
    fig = plots.ncut_vs_accuracy(table)
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel()
    assert fig.axes[0].get_ylabel() and fig.axes[-1].get_legend() is not None
    plt.close(fig)
    # the learning curves carry one figure legend, none inside a panel (it covered lines there)
    curve = pd.read_csv(paths.results / "mlp-learning-curve.csv")
    fig = plots.learning_curves(curve)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["n-cut", "pruning", "train accuracy", "test accuracy"]
    # the dotted line of the first panel is its instance 0's training accuracy, epoch by epoch
    first = curve[(curve["tag"] == curve["tag"].iloc[0]) & (curve["instance"] == 0)].sort_values("global_epoch")
    train_line = next(line for ax in fig.axes for line in ax.get_lines() if line.get_label() == "train accuracy")
    np.testing.assert_allclose(train_line.get_ydata(), first["train_accuracy"])
    assert all(ax.get_legend() is None for ax in fig.axes)
    plt.close(fig)


def test_learning_curve_of_a_net_at_chance_is_drawn_on_a_0_to_1_accuracy_axis():
    import matplotlib.pyplot as plt

    from nn_clustering.experiments import plots

    rows = []
    for tag, accuracy in (("RANDOM", [0.097, 0.104, 0.099]), ("MNIST", [0.90, 0.95, 0.98])):
        for epoch, a in enumerate(accuracy):
            rows.append({"tag": tag, "instance": 0, "phase": "dense", "epoch": epoch, "global_epoch": epoch,
                         "ncut": 2.0, "train_accuracy": a, "test_accuracy": a - 0.001, "n_clusters": 4})
    fig = plots.learning_curves(pd.DataFrame(rows))
    random_acc, mnist_acc = [ax for ax in fig.axes if ax.get_ylabel() == "accuracy"]
    assert random_acc.get_ylim() == (0, 1.02)  # chance-level noise is not blown up to fill the panel
    low, high = mnist_acc.get_ylim()
    assert 0.85 < low < 0.9 and 0.98 < high < 1.0  # a learning net keeps the detail of its curve
    plt.close(fig)


def test_stability_plot_draws_very_low_z_at_the_floor_and_says_so():
    import matplotlib.pyplot as plt

    from nn_clustering.experiments import plots

    rows = pd.DataFrame({"tag": ["A", "A", "B"], "stage": "pruned", "n_clusters": 4, "method": "layer",
                         "z": [-3.0, -120.0, 1.5]})
    fig = plots.stability_plot(rows)
    ys = sorted(y for c in fig.axes[0].collections for _, y in c.get_offsets())
    assert ys == [plots.Z_FLOOR, -3.0, 1.5]
    assert any("below" in t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)
    fig = plots.stability_plot(rows.assign(z=[-3.0, -20.0, 1.5]))  # nothing drawn at the floor
    assert not fig.axes[0].texts
    plt.close(fig)


def test_summary_and_missing_inputs(tree, tmp_path):
    paths, _, _ = tree
    text = summary(paths)
    assert "MNIST+DROPOUT" in text and "100% of pruned MLPs" in text
    empty = ExperimentPaths(tmp_path / "models", tmp_path / "results")
    with pytest.raises(NnClusteringError, match="make mlp-clustering"):
        run_mlp_plots(empty)
    (tmp_path / "models").mkdir()
    with pytest.raises(NnClusteringError, match="make models"):
        run_mlp_clustering(empty, FAST, progress=False)


def test_unknown_method_or_stage_is_a_clear_error():
    with pytest.raises(NnClusteringError, match="unknown shuffle method 'row'"):
        ClusteringConfig(methods=("row",))
    with pytest.raises(NnClusteringError, match="unknown stage"):
        ClusteringConfig(stages=("final",))


def test_profile_folders():
    paper = ExperimentPaths.for_profile("paper")
    quick = ExperimentPaths.for_profile("quick")
    assert paper.models.name == "models" and quick.models.parts[-2:] == ("models", "quick")
    assert quick.results.parts[-2:] == ("results", "quick")


def test_copying_a_tree_keeps_results_valid(tree, tmp_path):
    """Cache entries are keyed by content, so a copied model tree reuses them."""
    paths, _, _ = tree
    shutil.copytree(paths.models, tmp_path / "models")
    copy = ExperimentPaths(tmp_path / "models", tmp_path / "results")
    shutil.copytree(paths.results / "cache", tmp_path / "results" / "cache")
    cache = copy.cache
    files = sorted(cache.folder.rglob("*.json"))
    run_mlp_clustering(copy, FAST, progress=False, log=lambda _: None)
    assert sorted(cache.folder.rglob("*.json")) == files


def test_smallest_cluster_and_its_warning():
    """Hand values: an empty cluster counts as 0, isolated nodes (-1) are not counted; the
    warning appears below 1% of the clustered nodes only."""
    from nn_clustering.core.spectral import smallest_cluster
    from nn_clustering.experiments.clustering import tiny_cluster_note

    labels = np.array([0, 0, 1, -1, 2, 2, 2])
    assert smallest_cluster(labels, 3) == 1 and smallest_cluster(labels, 4) == 0
    assert "smallest cluster: 2 nodes" in tiny_cluster_note(2, 1797)
    assert tiny_cluster_note(18, 1797) == ""


def test_drop_dead_ends_is_part_of_the_cache_key(tmp_path):
    """A cached default result must not be returned for drop_dead_ends=True (and back)."""
    from nn_clustering.experiments.clustering import shuffle_test_of_file
    from nn_clustering.storage.cache import ResultCache

    rng = np.random.default_rng(2)
    kernels = [np.abs(rng.normal(size=(a, b))) for a, b in ((12, 10), (10, 8), (8, 4))]
    kernels[1][3] = 0.0  # hidden unit 3 of layer 1 has no outgoing weight
    path = tmp_path / "net.npz"
    np.savez(path, *kernels)
    cache = ResultCache(tmp_path / "cache")
    runs = {}
    for drop in (False, True, False):
        config = ClusteringConfig(n_clusters=3, n_shuffles=3, drop_dead_ends=drop)
        runs.setdefault(drop, []).append(shuffle_test_of_file(path, config, "layer", cache, progress=False))
    assert np.sum(np.array(runs[False][0]["labels"]) == -1) == 0
    assert np.sum(np.array(runs[True][0]["labels"]) == -1) == 1
    assert runs[False][0] == runs[False][1]


def test_dense_net_layer_nonzero_test_reuses_the_layer_test(tmp_path, monkeypatch):
    """No zero weight: the cached ``layer`` test answers for ``layer_nonzero``, and equals what the
    ``layer_nonzero`` test computed directly gives; with a zero, both are computed."""
    import nn_clustering.experiments.clustering as analysis

    rng = np.random.default_rng(4)
    kernels = [rng.normal(size=(a, b)) for a, b in ((12, 10), (10, 8), (8, 4))]
    config = ClusteringConfig(n_clusters=3, n_shuffles=6, random_state=9)
    spectral = SpectralConfig(n_clusters=3)
    direct = shuffle_test(kernels, spectral, ShuffleConfig(6, "layer_nonzero", 9), progress=False)
    calls = []
    real = analysis.ShuffleTest.fit
    monkeypatch.setattr(analysis.ShuffleTest, "fit", lambda self, net, y=None: calls.append(self.method) or real(self, net))
    for name, net in (("dense", kernels), ("sparse", [kernels[0], kernels[1] * (kernels[1] > 0), kernels[2]])):
        path = tmp_path / f"{name}.npz"
        np.savez(path, *net)
        cache = ResultCache(tmp_path / name)
        out = {m: analysis.shuffle_test_of_file(path, config, m, cache, progress=False) for m in ("layer", "layer_nonzero")}
        assert out["layer_nonzero"]["shuffle"]["method"] == "layer_nonzero"
        if name == "dense":
            np.testing.assert_allclose(out["layer_nonzero"]["shuffled_ncuts"], direct.shuffled_ncuts)
            assert out["layer_nonzero"]["ncut"] == pytest.approx(direct.clustering.ncut)
    assert calls == ["layer", "layer", "layer_nonzero"]  # the dense net's second test was not run


def test_interrupted_double_lesion_experiment_resumes_from_its_saved_pairs(tmp_path, monkeypatch):
    from fake_models import write_fake_dataset

    import nn_clustering.core.lesion as lesion
    from nn_clustering.core.lesion import LesionConfig
    from nn_clustering.experiments.lesion import run_mlp_double_lesion

    models = write_fake_models(tmp_path / "models", tags=("MNIST",), instances=1)
    data = write_fake_dataset(tmp_path / "datasets")
    single = LesionConfig(n_random=4, random_state=3)

    def run(results):
        paths = ExperimentPaths(models, tmp_path / results)
        return run_mlp_double_lesion(paths, "MNIST", n_clusters=2, single=single, n_random=3, data_dir=data, progress=False)

    reference, _ = run("reference")
    assert len(reference) == 12
    monkeypatch.setattr(lesion, "CHECKPOINT_EVERY", 5)
    real, calls = lesion.double_lesion_pair, []

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(lesion, "double_lesion_pair", counted)
    with pytest.raises(KeyboardInterrupt):
        run("run")
    calls.clear()
    resumed, _ = run("run")
    assert len(calls) == len(reference) - 5  # the first 5 pairs came from the checkpoint
    pd.testing.assert_frame_equal(resumed, reference)
    cache = tmp_path / "run" / "cache"
    assert len(list(cache.rglob("*.json"))) == len(list((tmp_path / "reference" / "cache").rglob("*.json")))


def test_clustering_factors_table_names_each_rows_factor_and_matches_direct_tests(tmp_path):
    """The factor table: every trained factor tag (others skipped with a line), each row with
    its factor and dataset, the n-cut of a direct shuffle test of the same kernels; the CSV,
    the shuffles and the figure written."""
    from nn_clustering.experiments import ClusteringConfig
    from nn_clustering.experiments.factors import dataset_of, factor_of, run_clustering_factors

    assert [factor_of(t) for t in ("MNIST", "FASHION+L2REG", "HALVES-SAME-MNIST", "HALVES-FASHION",
                                   "CNN-MNIST+MOD-INIT", "SMALL-MNIST+CLUSTERABILITY", "CNN-STACKED-SAME-FASHION",
                                   "CNN-STACKED-MNIST")] == [
        "Control", "L2 Reg", "Halves Same", "Halves Diff", "Clusterable Init", "Cluster Gradient", "Stacked Same",
        "Stacked Diff"]
    assert [dataset_of(t) for t in ("CNN-STACKED-SAME-FASHION", "HALVES-MNIST", "SMALL-MNIST")] == [
        "FASHION", "MNIST", "SMALL-MNIST"]
    models = write_fake_models(tmp_path / "models", tags=("MNIST", "MNIST+L1REG", "HALVES-MNIST"), instances=1)
    paths, lines = ExperimentPaths(models, tmp_path / "results"), []
    config = ClusteringConfig(n_clusters=2, n_shuffles=4, random_state=5)
    table = run_clustering_factors(paths, config, progress=False, log=lines.append)
    assert len(table) == 3 * 2 * 2 and set(table.dataset) == {"MNIST"}
    assert dict(zip(table.tag, table.factor, strict=True)) == {"MNIST": "Control", "MNIST+L1REG": "L1 Reg",
                                                             "HALVES-MNIST": "Halves Diff"}
    assert any("not trained" in line and "MNIST+MOD-INIT" in line for line in lines)
    row = table[(table.tag == "MNIST+L1REG") & (table.stage == "pruned") & (table.method == "layer")].iloc[0]
    kernels = find_instances(models, ["MNIST+L1REG"])[0].weights("pruned").kernels
    direct = shuffle_test(kernels, SpectralConfig(2), ShuffleConfig(4, "layer", 5), progress=False)
    assert row.ncut == pytest.approx(direct.clustering.ncut, rel=1e-9)
    assert (paths.results / "clustering-factors-k2.csv").exists() and (paths.figures / "clustering-factors-k2.png").exists()
    assert len(pd.read_csv(paths.results / "clustering-factors-k2-shuffles.csv.gz")) == 3 * 2 * 2 * 4
