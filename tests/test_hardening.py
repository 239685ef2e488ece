"""Bad input, damaged files and interrupted runs: each gets one clear error line (exit status 2,
no traceback), replaces or leaves behind nothing, and where a re-run is the fix, it works."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from error_lines import one_error_line
from fake_models import write_fake_dataset, write_fake_instance, write_fake_models

import nn_clustering.estimators as estimators
from nn_clustering import cli
from nn_clustering.core import parallel
from nn_clustering.errors import ModelError
from nn_clustering.experiments.clustering import (
    ClusteringConfig,
    cluster_instance,
    shuffle_test_of_file,
)
from nn_clustering.storage.cache import ResultCache
from nn_clustering.training.catalog import find_instances, write_index

ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture
def net(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "net.npz"
    np.savez(path, rng.normal(size=(12, 8)), rng.normal(size=(8, 4)))
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Any shuffle test that starts fails the test: the checks must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("the work started before the bad option was refused")

    monkeypatch.setattr(estimators, "shuffle_test", refuse)


def cluster(path, *options) -> int:
    return cli.main(["cluster", str(path), "--k", "2", "--shuffles", "3", "--quiet", *map(str, options)])


# --------------------------------------------------------------------------- cluster --output


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_output_to_a_device_is_refused_and_the_device_stays(net, capsys, no_work):
    err = one_error_line(capsys, cluster(net, "--output", "/dev/full"))
    assert "/dev/full is not a regular file" in err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_output_equal_to_the_input_is_refused_and_the_model_kept(net, capsys, no_work):
    before = net.read_bytes()
    err = one_error_line(capsys, cluster(net, "--output", net))
    assert "is the command's input" in err and net.read_bytes() == before


def test_output_folder_or_unwritable_place_fails_before_the_work(net, tmp_path, capsys, no_work):
    assert "is a folder" in one_error_line(capsys, cluster(net, "--output", tmp_path))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    err = one_error_line(capsys, cluster(net, "--output", blocker / "result.json"))
    assert "is a file, not a folder" in err and blocker.read_text() == "x"
    if os.geteuid() != 0:  # root may write into a read-only folder
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "cannot write" in one_error_line(capsys, cluster(net, "--output", locked / "r.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "net.npz"] + (
        [] if os.geteuid() == 0 else ["locked"])


def test_a_good_output_is_written_atomically(net, tmp_path, capsys):
    out = tmp_path / "deep" / "result.json"
    assert cluster(net, "--output", out) == 0
    assert json.loads(out.read_text())["layer_sizes"] == [12, 8, 4]
    assert not list(out.parent.glob(".*.part"))


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("option, message", [
    (("--jobs", "1000"), "--jobs must be at most the"),
    (("--jobs", "0"), "--jobs must be a positive number of workers, or -1 for one per core, not 0"),
    (("--seed", "-1"), "--seed must be at least 0, not -1"),
    (("--random-state", "-1"), "--seed must be at least 0, not -1"),
    (("--scheduler", "not an address"), "--scheduler must be a dask scheduler address, not 'not an address'"),
    (("--scheduler", "tcp://host:99999"), "must be a dask scheduler address"),
    (("--method", "rows"), "invalid choice: 'rows'"),
    (("--k", "two"), "invalid int value: 'two'"),
    (("--k", "1"), "--k must be at least 2, not 1"),
    (("--n-clusters", "1"), "--k must be at least 2, not 1"),
])
def test_bad_options_are_one_line_before_any_process_starts(net, capsys, no_work, option, message):
    assert message in one_error_line(capsys, cluster(net, *option))


def test_jobs_above_the_cores_are_allowed_on_a_scheduler(net):
    from nn_clustering.core.parameters import available_cores, validate

    many = available_cores() + 5
    assert validate({"n_jobs": many, "scheduler": "tcp://10.0.0.5:8786"})["n_jobs"] == many


def test_an_unreachable_scheduler_is_one_line(net, capsys, monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", "1s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    err = one_error_line(capsys, cluster(net, "--scheduler", f"tcp://127.0.0.1:{port}"))
    assert f"cannot reach the dask scheduler at tcp://127.0.0.1:{port}" in err


@pytest.mark.parametrize("value", ["0", "-1"])
def test_instances_below_one_are_refused(tmp_path, capsys, value):
    code = cli.main(["train", "MNIST", "--instances", value, "--models-dir", str(tmp_path / "m")])
    assert f"--instances must be at least 1, not {value}" in one_error_line(capsys, code)
    assert not (tmp_path / "m").exists()


def test_a_k_too_large_for_a_shuffle_names_the_shuffle(tmp_path, capsys):
    path = tmp_path / "sparse.npz"
    np.savez(path, np.eye(10), np.eye(10))  # 30 nodes; a shuffled identity leaves many isolated
    code = cli.main(["cluster", str(path), "--k", "25", "--shuffles", "3", "--quiet"])
    err = one_error_line(capsys, code)
    assert "shuffle 1 of the network leaves only" in err and "the network itself has enough" in err


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("kernels, message", [
    (lambda r: [r.normal(size=(6, 4)) + 1j, r.normal(size=(4, 2))], "kernel 0 has complex weights"),
    (lambda r: [np.full((6, 4), "a"), r.normal(size=(4, 2))], "kernel 0 holds <U1 values, not numbers"),
])
def test_complex_or_text_weights_are_one_line(tmp_path, capsys, kernels, message):
    path = tmp_path / "bad.npz"
    np.savez(path, *kernels(np.random.default_rng(0)))
    assert message in one_error_line(capsys, cluster(path))


def test_subnormal_weights_cluster_like_their_scaled_copy(tmp_path):
    rng = np.random.default_rng(2)
    kernels = [rng.normal(size=(12, 8)), rng.normal(size=(8, 4))]
    tiny = [np.ldexp(k, -1060) for k in kernels]  # subnormal: |w| < 2**-1022
    assert np.abs(tiny[0]).max() < np.finfo(float).tiny
    exact = [np.ldexp(t, 1060) for t in tiny]  # what the subnormals hold, back at a normal scale
    ours = estimators.SpectralNCut(n_clusters=3).fit(tiny)
    reference = estimators.SpectralNCut(n_clusters=3).fit(exact)
    np.testing.assert_array_equal(ours.labels_, reference.labels_)
    assert ours.ncut_ == reference.ncut_


def test_tied_shuffles_count_against_significance(tmp_path):
    """Two disconnected modules and layer_nonzero shuffles (which keep the block pattern): the
    n-cut at k = 2 is 0 and so is every shuffle's, so p must be 1, agreeing with significance."""
    blocks = [np.kron(np.eye(2), np.ones((3, 2))), np.kron(np.eye(2), np.ones((2, 1)))]
    path, out = tmp_path / "two.npz", tmp_path / "out.json"
    np.savez(path, *blocks)
    assert cli.main(["cluster", str(path), "--k", "2", "--shuffles", "20", "--method", "layer_nonzero",
                     "--quiet", "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["ncut"] == 0.0 and record["shuffled_ncuts"] == [0.0] * 20
    assert record["shuffle"]["p_value"] == 1.0 and record["shuffle"]["significant"] is False


# --------------------------------------------------------------------------- the cache


def test_cache_entries_that_are_not_what_the_code_wrote_are_recomputed(tmp_path):
    models = write_fake_models(tmp_path / "models", tags=("MNIST",), instances=1)
    path = find_instances(models)[0].kernels_path("pruned")
    config = ClusteringConfig(n_clusters=4, n_shuffles=6, random_state=3)
    lines: list[str] = []
    cache = ResultCache(tmp_path / "cache", log=lines.append)
    reference = shuffle_test_of_file(path, config, "layer", cache, progress=False)
    entry = next((tmp_path / "cache").rglob("*.json"))
    good = entry.read_text()
    edited = json.loads(good)
    edited["value"]["ncut"] = 0.123  # a hand-edited n-cut
    for damaged in ("{}", "[]", "{truncated", json.dumps(edited)):
        entry.write_text(damaged)
        again = shuffle_test_of_file(path, config, "layer", cache, progress=False)
        assert again["ncut"] == reference["ncut"] and again["shuffled_ncuts"] == reference["shuffled_ncuts"]
        assert json.loads(entry.read_text()) == json.loads(good)  # rewritten as the code writes it
    assert cache.rejected == 4 and len(lines) == 4 and all("not trusted" in line for line in lines)


# --------------------------------------------------------------------------- model folders


def test_a_swapped_kernel_file_is_refused_against_its_record(tmp_path):
    models = write_fake_models(tmp_path / "models", tags=("MNIST",), instances=2)
    write_index(models)
    first, second = find_instances(models)
    shutil.copyfile(second.kernels_path("pruned"), first.kernels_path("pruned"))  # another model's file
    instance = find_instances(models)[0]
    with pytest.raises(ModelError, match=r"MNIST/0/pruned.npz does not match the SHA-256 recorded") as info:
        cluster_instance(instance, "pruned", "layer", ClusteringConfig(n_shuffles=2), progress=False)
    assert "\n" not in str(info.value) and "delete" in str(info.value)
    with pytest.raises(ModelError, match="does not match"):
        write_index(models)  # the index does not bless the swapped file either


def test_a_deleted_kernel_file_is_a_clear_line_not_file_not_found(tmp_path):
    models = write_fake_models(tmp_path / "models", tags=("MNIST",), instances=1)
    write_index(models)
    instance = find_instances(models)[0]
    instance.kernels_path("pruned").unlink()
    with pytest.raises(ModelError, match=r"pruned.npz is missing: the model folder is incomplete; delete"):
        cluster_instance(find_instances(models)[0], "pruned", "layer", ClusteringConfig(n_shuffles=2),
                         progress=False)


def test_the_index_target_is_remade_from_the_models(tmp_path):
    """Whenever make remakes INDEX.json (under `make -B mlp-clustering`, or when it is missing,
    as here: -B would also re-sync the environment) it is written from the trained models
    instead of failing with "no trained models"."""
    models = tmp_path / "models"
    write_fake_instance(models, "MNIST", 0)
    make = ["make", "--no-print-directory", "-C", str(ROOT), f"MODELS_DIR={models}", f"{models}/INDEX.json"]
    run = subprocess.run(make, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads((models / "INDEX.json").read_text())["instances"][0]["tag"] == "MNIST"
    empty = tmp_path / "empty"
    empty.mkdir()
    run = subprocess.run(make[:-2] + [f"MODELS_DIR={empty}", f"{empty}/INDEX.json"], capture_output=True, text=True)
    assert run.returncode != 0 and "error: no trained models in" in run.stderr
    assert "Traceback" not in run.stderr


# --------------------------------------------------------------------------- datasets


def test_a_truncated_dataset_is_rebuilt_not_kept(fake_mirror, tmp_path, capsys):
    out = tmp_path / "datasets"
    assert cli.main(["datasets", "mnist", "--out", str(out)]) == 0
    good, manifest = (out / "mnist.npz").read_bytes(), (out / "MANIFEST").read_text()
    (out / "mnist.npz").write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    assert cli.main(["datasets", "mnist", "--out", str(out)]) == 0  # no --force
    assert "rebuilding" in capsys.readouterr().out
    assert (out / "mnist.npz").read_bytes() == good and (out / "MANIFEST").read_text() == manifest
    (out / "MANIFEST").unlink()  # without a MANIFEST line, an unreadable file is rebuilt too
    (out / "mnist.npz").write_bytes(good[:100])
    assert cli.main(["datasets", "mnist", "--out", str(out)]) == 0
    assert (out / "mnist.npz").read_bytes() == good and (out / "MANIFEST").read_text() == manifest


def test_a_dataset_that_does_not_match_its_manifest_is_not_loaded(fake_mirror, tmp_path):
    from nn_clustering.data import load_dataset
    from nn_clustering.errors import DatasetError

    out = tmp_path / "datasets"
    assert cli.main(["datasets", "mnist", "line", "--out", str(out)]) == 0
    shutil.copyfile(out / "line.npz", out / "mnist.npz")  # a readable file, but not MNIST
    with pytest.raises(DatasetError, match=r"mnist.npz does not match .*MANIFEST.*nn-clustering datasets mnist"):
        load_dataset("mnist", out)
    assert cli.main(["datasets", "mnist", "--out", str(out)]) == 0  # the fix the message names
    assert load_dataset("mnist", out).x_train.shape == (50, 28, 28)


def test_temporary_files_of_a_killed_build_are_removed(fake_mirror, tmp_path, capsys):
    out = tmp_path / "datasets"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = out / f".mnist.npz.{dead}.abc123.part"
    live = out / f".line.npz.{os.getpid()}.def456.part"  # a build still running: left alone
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    assert cli.main(["datasets", "mnist", "--out", str(out)]) == 0
    assert not stale.exists() and live.exists()
    assert f"removed {stale}" in capsys.readouterr().out


# --------------------------------------------------------------------------- notebooks


@pytest.mark.slow
def test_two_runs_of_one_notebook_target_do_not_collide(tmp_path):
    models, results = tmp_path / "models", tmp_path / "results"
    write_fake_models(models, tags=("MNIST",), instances=1)
    write_index(models)
    write_fake_dataset(tmp_path / "datasets")
    target = f"{results}/notebooks/mlp-learning-curve.ipynb"
    make = ["make", "--no-print-directory", "-C", str(ROOT), f"MODELS_DIR={models}",
            f"RESULTS_DIR={results}", target]
    runs = [subprocess.Popen(make, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert Path(target).exists() and not list((results / "notebooks").glob(".*partial*"))
