"""The command line: `nn-clustering cluster` output and its clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nn_clustering import cli


@pytest.fixture
def kernels_npz(tmp_path):
    rng = np.random.default_rng(0)
    kernels = [rng.normal(size=(a, b)) for a, b in ((24, 16), (16, 16), (16, 5))]
    kernels[0][3] = 0.0  # input 3 is dead: label -1
    path = tmp_path / "net.npz"
    np.savez(path, *kernels)
    return path


def test_cluster_prints_summary_and_writes_json(kernels_npz, tmp_path, capsys):
    out = tmp_path / "result.json"
    code = cli.main(["cluster", str(kernels_npz), "--k", "3", "--shuffles", "6", "--seed", "9",
                     "--output", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "n-cut" in printed and "layer 2 kernel_1: cluster sizes" in printed
    record = json.loads(out.read_text())
    assert len(record["labels"]) == 24 + 16 + 16 + 5
    assert record["labels"][3] == -1 and min(record["labels"][:3] + record["labels"][4:]) >= 0
    assert len(record["shuffled_ncuts"]) == 6 and record["random_state"] == 9
    for key in ("ncut", "mean", "sd", "z", "p_value", "significant"):
        assert key in record or key in record["shuffle"]
    assert record["layer_sizes"] == [24, 16, 16, 5] and "code_version" in record
    from nn_clustering.core.shuffle import ShuffleConfig, shuffle_test
    from nn_clustering.core.spectral import SpectralConfig

    kernels = [np.load(kernels_npz)[f"arr_{i}"] for i in range(3)]
    direct = shuffle_test(kernels, SpectralConfig(3), ShuffleConfig(n_shuffles=6, random_state=9), progress=False)
    assert record["ncut"] == direct.clustering.ncut
    assert record["shuffled_ncuts"] == direct.shuffled_ncuts.tolist()


def save(tmp_path, *kernels):
    path = tmp_path / "bad.npz"
    np.savez(path, *kernels)
    return str(path)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda p: [save(p, np.full((4, 3), np.nan), np.ones((3, 2)))], "NaN/inf"),
        (lambda p: [save(p, np.ones((4, 3)), np.ones((5, 2)))], "do not chain"),
        (lambda p: [save(p, np.ones((4, 3)), np.zeros((3, 2)))], "all zeros"),
        (lambda p: [save(p, np.ones((4, 3)), np.ones((3, 2))), "--k", "9"], "k = 9 is not below"),
        (lambda p: [save(p, np.ones((4, 3)), np.ones((3, 2))), "--k", "1"], "--k must be at least 2, not 1"),
        (lambda p: [str(p / "missing.npz")], "not found"),
        (lambda p: [str(p / "garbage.npz")], "not a readable .npz"),
        (lambda p: [str(p / "model.txt")], "unknown model format"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, make_args, message):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    (tmp_path / "model.txt").write_text("hello")
    out = tmp_path / "out.json"
    code = cli.main(["cluster", *make_args(tmp_path), "--shuffles", "2", "--quiet", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_cluster_drop_dead_ends_labels_them_minus_one(tmp_path, capsys):
    """--drop-dead-ends: a hidden unit with no outgoing weight (and the input feeding only it)
    get label -1; the n-cut is that of the graph without them."""
    from nn_clustering.core.graph import mlp_graph
    from nn_clustering.core.spectral import SpectralConfig, cluster_graph

    rng = np.random.default_rng(1)
    kernels = [np.abs(rng.normal(size=(a, b))) for a, b in ((12, 10), (10, 8), (8, 4))]
    kernels[1][2] = 0.0  # hidden unit 2 of layer 1 has no outgoing weight
    kernels[0][5] = 0.0
    kernels[0][5, 2] = 1.0  # input 5 feeds only that unit
    path = tmp_path / "net.npz"
    np.savez(path, *kernels)
    out = tmp_path / "result.json"
    assert cli.main(["cluster", str(path), "--k", "3", "--shuffles", "3", "--quiet",
                     "--drop-dead-ends", "--output", str(out)]) == 0
    assert "dropped 2 nodes" in capsys.readouterr().out
    record = json.loads(out.read_text())
    labels = np.array(record["labels"])
    assert labels[5] == -1 and labels[12 + 2] == -1 and np.sum(labels == -1) == 2
    assert record["drop_dead_ends"] is True
    live = [k.copy() for k in kernels]
    live[0][:, 2] = 0.0  # the same network with the dead unit's edges removed by hand
    live[1][2] = 0.0
    direct = cluster_graph(mlp_graph(live), SpectralConfig(3), seed=0)
    assert record["ncut"] == pytest.approx(direct.ncut, rel=1e-9)

