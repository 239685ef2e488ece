"""`random-init-ncuts`: untrained MLPs as training initialises them, their n-cuts, table and figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("keras")

from nn_clustering.core.graph import mlp_graph  # noqa: E402
from nn_clustering.core.shuffle import observed_clustering  # noqa: E402
from nn_clustering.core.spectral import SpectralConfig  # noqa: E402
from nn_clustering.experiments import ExperimentPaths, run_random_init_ncuts  # noqa: E402
from nn_clustering.experiments.random_init import initial_kernels  # noqa: E402


def test_initial_kernels_are_the_glorot_uniform_start_of_training():
    kernels = initial_kernels(3)
    assert [k.shape for k in kernels] == [(784, 256), (256, 256), (256, 256), (256, 256), (256, 10)]
    for k in kernels:
        limit = np.sqrt(6 / sum(k.shape))
        assert np.abs(k).max() <= limit and np.std(k) == pytest.approx(limit / np.sqrt(3), rel=0.05)
    np.testing.assert_array_equal(initial_kernels(3)[0], kernels[0])
    assert not np.array_equal(initial_kernels(4)[0], kernels[0])


def test_table_summary_and_figure(tmp_path):
    paths = ExperimentPaths(tmp_path / "models", tmp_path / "results")
    summary = run_random_init_ncuts(paths, n_nets=3, n_clusters=5, first_seed=10, random_state=1)
    table = pd.read_csv(paths.results / "random-init-ncuts-k5.csv")
    assert table["init_seed"].tolist() == [10, 11, 12] and (table["n_clusters"] == 5).all()
    import keras

    backend = keras.backend.backend()
    assert (table["backend"] == backend).all() and summary["backend"][0] == backend
    expected = observed_clustering(mlp_graph(initial_kernels(11)), SpectralConfig(5), 1).ncut
    assert table["ncut"][1] == pytest.approx(expected, rel=1e-6)
    row = summary.iloc[0]
    assert row["mean"] == pytest.approx(table["ncut"].mean(), rel=1e-6)
    assert row["sd"] == pytest.approx(table["ncut"].std(), rel=1e-5)
    assert row["min"] == pytest.approx(table["ncut"].min()) and row["max"] == pytest.approx(table["ncut"].max())
    assert (paths.figures / "random-init-ncuts-k5.png").stat().st_size > 0
    assert len(pd.read_csv(paths.results / "random-init-ncuts-k5-trained.csv")) == 0  # nothing trained
