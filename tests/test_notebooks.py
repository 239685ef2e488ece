"""End to end: every analysis notebook runs under papermill on tiny synthetic models, and its
tables agree with direct calls into the library."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
from fake_models import write_fake_cnn_instance, write_fake_dataset, write_fake_models

from nn_clustering.core.graph import mlp_graph
from nn_clustering.core.shuffle import ShuffleConfig, observed_seed, shuffle_test
from nn_clustering.core.spectral import SpectralConfig, cluster_graph
from nn_clustering.experiments.clustering import CLUSTERING_COLUMNS
from nn_clustering.experiments.learning_curve import LEARNING_CURVE_COLUMNS
from nn_clustering.experiments.stability import STABILITY_COLUMNS
from nn_clustering.training.catalog import find_instances

pytestmark = pytest.mark.slow  # every test here runs notebooks under papermill

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
N_SHUFFLES, SEED = 10, 5
CNN_TAGS = ("CNN-MNIST", "CNN-FASHION")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run every analysis notebook (MLP and CNN) in make's order; returns the folders."""
    root = tmp_path_factory.mktemp("notebooks")
    models, results = write_fake_models(root / "models"), root / "results"
    for tag in CNN_TAGS:
        write_fake_cnn_instance(models, tag, 0)
    (root / "out").mkdir()
    data = write_fake_dataset(root / "datasets")
    write_fake_dataset(data, "fashion", seed=1)
    common = {"PROFILE": "quick", "MODELS_DIR": str(models), "RESULTS_DIR": str(results)}
    runs = [
        ("mlp-clustering", {"N_SHUFFLES": N_SHUFFLES, "SEED": SEED, "N_JOBS": 1}),
        ("mlp-clustering-stability", {"N_CLUSTERS": 2, "N_SHUFFLES": N_SHUFFLES, "SEED": SEED, "N_JOBS": 1}),
        ("mlp-learning-curve", {"SEED": SEED}),
        ("mlp-plots", {"SEED": SEED}),
        ("mlp-lesion-test", {"DATA_DIR": str(data), "TAGS": ["MNIST", "MNIST+DROPOUT"], "N_CLUSTERS": 2,
                             "N_RANDOM": 6, "SEED": SEED}),
        ("mlp-double-lesion-test", {"DATA_DIR": str(data), "MODEL_TAG": "MNIST", "N_CLUSTERS": 2, "N_RANDOM": 3,
                                    "SINGLE_N_RANDOM": 6, "PAIRS": "all", "SEED": SEED}),
        ("mlp-activation-clustering", {"DATA_DIR": str(data), "TAGS": ["MNIST", "MNIST+DROPOUT"], "N_CLUSTERS": 2,
                                       "N_SHUFFLES": 6, "SEED": SEED, "N_JOBS": 1}),
        ("cnn-clustering", {"N_SHUFFLES": N_SHUFFLES, "SEED": SEED, "N_JOBS": 1}),
        ("cnn-lesion-test", {"DATA_DIR": str(data), "N_CLUSTERS": 2, "N_RANDOM": 6, "SEED": SEED}),
    ]
    for name, params in runs:
        papermill.execute_notebook(
            str(NOTEBOOKS / f"{name}.ipynb"), str(root / "out" / f"{name}.ipynb"),
            parameters={**common, **params}, cwd=str(NOTEBOOKS), progress_bar=False, kernel_name="python3",
        )
    return root, models, results, data


def test_templates_have_one_tagged_parameters_cell_and_no_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        book = nbformat.read(path, as_version=4)
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path
        assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), f"{path} has outputs"


def test_clustering_notebook_table_matches_direct_calls(executed):
    _, models, results, _ = executed
    table = pd.read_csv(results / "mlp-clustering.csv")
    assert list(table.columns) == CLUSTERING_COLUMNS and len(table) == 16
    assert set(table.n_shuffles) == {N_SHUFFLES} and set(table.random_state) == {SEED}
    for _, row in table[table.instance == 0].iterrows():
        instance = find_instances(models, [row.tag])[0]
        direct = shuffle_test(instance.weights(row.stage).kernels, SpectralConfig(4),
                              ShuffleConfig(N_SHUFFLES, row.method, SEED), progress=False)
        assert row.ncut == pytest.approx(direct.clustering.ncut, rel=1e-6)
        assert row.z == pytest.approx(direct.stats.z, rel=1e-5)
        assert row.p_value == pytest.approx(direct.stats.p_value)
        sizes = np.bincount(direct.clustering.labels[direct.clustering.labels >= 0], minlength=4)
        assert row.smallest_cluster == sizes.min()
        metrics = json.loads((instance.path / "metrics.json").read_text())
        assert row.train_accuracy == pytest.approx(metrics[f"{row.stage}_train_accuracy"])
        assert row.train_accuracy_inference == pytest.approx(metrics[f"{row.stage}_train_accuracy_inference"])
    assert table[table.instance == 1].train_accuracy_inference.isna().all()  # not recorded: left empty


def test_activation_clustering_notebook_matches_direct_calls(executed):
    from nn_clustering import CommunityPartition, ShuffleTest, SpectralNCut
    from nn_clustering.core.agreement import adjusted_rand_index, normalised_mutual_info
    from nn_clustering.data import load_dataset
    from nn_clustering.experiments.activation_clustering import ActivationClusteringRow

    _, models, results, data = executed
    table = pd.read_csv(results / "mlp-activation-clustering-k2.csv")
    assert list(table.columns) == ActivationClusteringRow.columns() and len(table) == 8
    x = load_dataset("mnist", data).x_test
    for _, row in table[table.instance == 0].iterrows():
        instance = find_instances(models, [row.tag])[0]
        path = instance.kernels_path(row.stage)
        by_weights = SpectralNCut(n_clusters=2, random_state=SEED).fit(path)
        by_acts = ShuffleTest(n_clusters=2, n_shuffles=6, graph="activations", data=x, random_state=SEED,
                              progress=False).fit(path)
        leiden = CommunityPartition(graph="activations", data=x, random_state=SEED).fit(path)
        assert row.weight_ncut == pytest.approx(by_weights.ncut_) and row.activation_ncut == pytest.approx(by_acts.ncut_)
        assert row.weight_modularity == pytest.approx(by_weights.modularity_)
        assert row.shuffled_mean == pytest.approx(by_acts.stats_.mean) and row.significant == by_acts.below_all_
        assert row.leiden_activation_modularity == pytest.approx(leiden.modularity_)
        hidden = np.concatenate(by_weights.labels_by_layer_[1:-1])
        assert row.ari_weight_activation == pytest.approx(adjusted_rand_index(hidden, by_acts.labels_))
        assert row.nmi_weight_activation == pytest.approx(normalised_mutual_info(hidden, by_acts.labels_))
    assert (results / "figures" / "mlp-activation-clustering-k2.png").exists()


def test_stability_notebook_tables(executed):
    _, _, results, _ = executed
    statistic = pd.read_csv(results / "mlp-clustering-stability-statistic-k2.csv")
    per_instance = pd.read_csv(results / "mlp-clustering-stability-instances-k2.csv")
    assert list(statistic.columns) == STABILITY_COLUMNS
    for _, row in statistic.iterrows():
        mine = per_instance[(per_instance.tag == row.tag) & (per_instance.method == row.method)]
        assert row.ncut_mean == pytest.approx(mine.ncut.mean())
        assert row.n_significant == mine.significant.sum() and row.stable == mine.significant.all()


def test_learning_curve_notebook_table(executed):
    _, models, results, _ = executed
    curve = pd.read_csv(results / "mlp-learning-curve.csv")
    assert list(curve.columns) == LEARNING_CURVE_COLUMNS
    instance = find_instances(models, ["MNIST+DROPOUT"])[1]
    last = instance.checkpoints()[-1]
    expected = cluster_graph(mlp_graph(list(np.load(last.path).values())), SpectralConfig(4), observed_seed(SEED))
    row = curve[(curve.tag == "MNIST+DROPOUT") & (curve.instance == 1)].iloc[-1]
    assert row.ncut == pytest.approx(expected.ncut) and row.phase == "pruned"


def test_plots_notebook_writes_every_figure(executed):
    root, _, results, _ = executed
    names = {p.stem for p in (results / "figures").glob("*.png")}
    assert names >= {"mlp-ncut-vs-accuracy", "mlp-shuffle-distributions", "mlp-cohens-d",
                     "mlp-learning-curve", "mlp-clustering-stability", "mlp-clustered-network"}
    book = nbformat.read(root / "out" / "mlp-plots.ipynb", as_version=4)
    images = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6


def test_lesion_notebook_workbook_matches_direct_calls(executed):
    from nn_clustering.core.lesion import (
        MLP,
        LesionConfig,
        LesionEvaluator,
        combined_importance,
        single_lesion_test,
    )
    from nn_clustering.data import load_dataset

    _, models, results, data = executed
    sheets = pd.read_excel(results / "mlp-lesion.xlsx", sheet_name=None)
    assert list(sheets) == ["MNIST", "MNIST+DROPOUT", "importance"]
    instance = find_instances(models, ["MNIST+DROPOUT"])[0]
    net = MLP.from_weights(instance.weights("pruned"))
    labels = cluster_graph(mlp_graph(list(net.kernels)), SpectralConfig(2), observed_seed(SEED)).labels
    test = load_dataset("mnist", data)
    rows, _ = single_lesion_test(LesionEvaluator(net, test.x_test, test.y_test), labels, LesionConfig(6, SEED),
                                 progress=False)
    sheet = sheets["MNIST+DROPOUT"]
    assert sheet["name"].tolist() == [r.name for r in rows]
    np.testing.assert_allclose(sheet["acc"], [r.acc for r in rows])
    assert sheet["taxonomy"].tolist() == [r.taxonomy for r in rows]
    assert {"tag", "model_seed", "model_sha256", "code_version", "n_random", "random_state"} <= set(sheet.columns)
    combined = combined_importance(rows)
    (row,) = sheets["importance"][sheets["importance"].tag == "MNIST+DROPOUT"].to_dict("records")
    assert row["n_submodules"] == combined.n_submodules and row["fisher_p"] == pytest.approx(combined.fisher_p)
    assert row["count_p"] == pytest.approx(combined.count_p)
    pd.testing.assert_frame_equal(pd.read_csv(results / "mlp-lesion-importance.csv"), sheets["importance"],
                                  check_dtype=False)


def test_double_lesion_notebook_pairs(executed):
    _, _, results, _ = executed
    pairs = pd.read_csv(results / "mlp-double-lesion-MNIST.csv")
    assert len(pairs) > 0 and (pairs.x != pairs.y).all()
    np.testing.assert_allclose(pairs.cond_effect, pairs.acc_y - pairs.acc_xy, atol=1e-9)
    assert (results / "figures" / "mlp-double-lesion-MNIST.png").exists()


def test_cnn_clustering_notebook_table_matches_direct_calls(executed):
    from nn_clustering.core.graph import graph_inputs

    root, models, results, _ = executed
    table = pd.read_csv(results / "cnn-clustering.csv")
    assert list(table.columns) == CLUSTERING_COLUMNS and len(table) == 2 * 2 * 2
    assert set(table.tag) == set(CNN_TAGS) and set(table.n_nodes) == {24}  # 3 conv layers x 8 channels
    for _, row in table.iterrows():
        kernels, builder = graph_inputs(find_instances(models, [row.tag], arch="cnn")[0].weights(row.stage))
        direct = shuffle_test(kernels, SpectralConfig(4), ShuffleConfig(N_SHUFFLES, row.method, SEED), builder,
                              progress=False)
        assert row.ncut == pytest.approx(direct.clustering.ncut, rel=1e-6)
        assert row.p_value == pytest.approx(direct.stats.p_value)
    # two planted channel groups: every pruned CNN beats all its shuffles
    assert table[table.stage == "pruned"].significant.all()
    comparison = pd.read_csv(results / "cnn-vs-mlp.csv")
    assert set(comparison.arch) == {"MLP", "CNN"} and "MNIST" in set(comparison.dataset)
    assert {"cnn-shuffle-distributions", "cnn-ncut-vs-accuracy"} <= {p.stem for p in (results / "figures").glob("*.png")}
    book = nbformat.read(root / "out" / "cnn-clustering.ipynb", as_version=4)
    assert any("image/png" in o.get("data", {}) for c in book.cells if c.cell_type == "code" for o in c.outputs)


def test_cnn_lesion_notebook_workbook_matches_direct_calls(executed):
    import keras

    from nn_clustering.core.graph import graph_inputs
    from nn_clustering.core.lesion import LesionConfig, single_lesion_test
    from nn_clustering.data import load_dataset
    from nn_clustering.training.cnn_lesion import CNNLesionEvaluator

    _, models, results, data = executed
    sheets = pd.read_excel(results / "cnn-lesion.xlsx", sheet_name=None)
    assert list(sheets) == [*CNN_TAGS, "importance"]
    instance = find_instances(models, ["CNN-FASHION"], arch="cnn")[0]
    kernels, builder = graph_inputs(instance.weights("pruned"))
    labels = cluster_graph(builder(kernels), SpectralConfig(2), observed_seed(SEED)).labels
    test = load_dataset("fashion", data)
    evaluator = CNNLesionEvaluator(keras.saving.load_model(instance.model_path("pruned")), test.x_test, test.y_test)
    rows, _ = single_lesion_test(evaluator, labels, LesionConfig(6, SEED), progress=False)
    sheet = sheets["CNN-FASHION"]
    assert set(sheet["layer"]) == {0, 1, 2}  # every conv layer's channels are lesioned
    assert sheet["name"].tolist() == [r.name for r in rows]
    np.testing.assert_allclose(sheet["acc"], [r.acc for r in rows])
    assert (results / "figures" / "cnn-lesion.png").exists()
