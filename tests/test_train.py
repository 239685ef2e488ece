"""Training and pruning on small synthetic data (seconds each), TensorFlow and JAX backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from nn_clustering import registry  # noqa: E402
from nn_clustering.data import build, synthetic  # noqa: E402
from nn_clustering.data import raw as raw_files  # noqa: E402
from nn_clustering.registry import REGISTRY, TagSpec, load_profile  # noqa: E402
from nn_clustering.training import catalog  # noqa: E402
from nn_clustering.training.architectures import build_cnn, build_mlp, prunable_layers  # noqa: E402
from nn_clustering.training.pruning import MagnitudePruning, PruningSchedule, magnitude_mask  # noqa: E402
from nn_clustering.training.train import TrainConfig, train_instance  # noqa: E402


def easy_task(n=1200, seed=0, inputs=20):
    """Label = which of 4 input blocks is raised by 0.5 over uniform noise: easy for an MLP."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.random((n, 4, inputs // 4))
    x[np.arange(n), y] += 0.5
    return x.reshape(n, inputs).astype("float32"), keras.utils.to_categorical(y, 4), y


def small_mlp(seed=0):
    keras.utils.set_random_seed(seed)
    model = build_mlp(hidden=(32, 32), n_inputs=20, n_classes=4)
    return model


def prune(model, x, y, epochs=3, batch_size=64, optimizer=None, callbacks=()):
    steps = int(np.ceil(len(x) / batch_size)) * epochs
    callback = MagnitudePruning(PruningSchedule(total_steps=steps))
    optimizer = optimizer or keras.optimizers.Adam(1e-3)
    callback.attach(model, optimizer)
    model.compile(optimizer, "categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[callback, *callbacks])
    return callback


def train_then_prune(model, x, y, dense_epochs=10, prune_epochs=3):
    """Dense training, then pruning to 90%, as the real pipeline does."""
    model.compile(keras.optimizers.Adam(1e-2), "categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=dense_epochs, verbose=0)
    return prune(model, x, y, epochs=prune_epochs)


def test_schedule_values():
    s = PruningSchedule(total_steps=100)
    assert s.sparsity(0) == pytest.approx(0.5)
    assert s.sparsity(100) == pytest.approx(0.9)
    assert s.sparsity(250) == pytest.approx(0.9)
    assert s.sparsity(50) == pytest.approx(0.9 - 0.4 * 0.5**3)
    assert s.sparsity(25) == pytest.approx(0.9 - 0.4 * 0.75**3)
    assert [t for t in range(0, 101) if s.updates_at(t)] == list(range(0, 101, 10)) == s.update_steps()
    assert PruningSchedule(total_steps=95).updates_at(95)
    assert PruningSchedule(total_steps=95).update_steps()[-2:] == [90, 95]
    assert [PruningSchedule(total_steps=95).slot(t) for t in (0, 10, 90, 95)] == [0, 1, 9, 10]


def test_mask_update_drops_exactly_the_smallest_kept_entries():
    """The in-graph update (candidates, then scatters) zeroes exactly the ``count`` kept entries
    of smallest |w| in kernel and mask; slots not dropped only rewrite the spare (masked) entry."""
    from nn_clustering.training.pruning import drop_at, first_masked, smallest_kept

    rng = np.random.default_rng(0)
    for shape, count in [((30, 20), 7), ((3, 3, 4, 5), 12), ((50,), 0), ((8, 8), 30)]:
        w = rng.normal(size=shape).astype("float32")
        mask = (rng.random(shape) < 0.6).astype("float32")
        bound = max(count, 1) + 3
        kept = w * mask
        positions = np.where(np.arange(bound) < count, keras.ops.convert_to_numpy(smallest_kept(kept, mask, bound)),
                             first_masked(mask))
        new_kept, new_mask = (keras.ops.convert_to_numpy(a) for a in drop_at(kept, mask, positions))
        magnitude = np.where(mask > 0, np.abs(w), np.inf).ravel()
        expected = mask.ravel().copy()
        expected[np.argsort(magnitude)[:count]] = 0
        np.testing.assert_array_equal(new_mask.ravel(), expected)
        assert new_mask.sum() == mask.sum() - count
        np.testing.assert_array_equal(new_kept, w * expected.reshape(shape))
    with pytest.raises(ValueError, match="no masked entry"):
        first_masked(np.ones(4))
    with pytest.raises(ValueError, match="initial sparsity 0.0 masks no entry of dense_0's kernel"):
        MagnitudePruning(PruningSchedule(total_steps=10, initial=0.0)).attach(small_mlp(), keras.optimizers.Adam())


def test_block_selection_equals_one_top_k_ties_included():
    """The two-stage selection returns what numpy's stable sort (value, then index) puts first,
    on sizes where it runs in blocks and where it falls back to one top_k, with ties (values
    repeated ~20 times, so blocks' minima differ and ties span blocks; 7 distinct values) and
    masked (infinite) entries."""
    from nn_clustering.training.pruning import selection_block, smallest_indices

    rng = np.random.default_rng(1)
    cases = [(200704, 256), (65536, 84), (2560, 4), (4096, 300), (100, 3), (576, 3), (50, 50)]
    assert [selection_block(n, b) for n, b in cases[:3]] == [16, 16, 1]  # the MLP's kernels
    for size, bound in cases:
        for levels in (None, max(2, size // 20), 7):
            values = rng.random(size) if levels is None else rng.integers(0, levels, size).astype(float)
            values[rng.random(size) < 0.3] = np.inf
            magnitude = values.astype("float32")
            got = keras.ops.convert_to_numpy(smallest_indices(keras.ops.convert_to_tensor(magnitude), bound))
            np.testing.assert_array_equal(got, np.argsort(magnitude, kind="stable")[:bound], err_msg=f"{size} {bound}")


class MaskCounts(keras.callbacks.Callback):
    """Test probe: kept entries of every mask after every step."""

    def __init__(self, pruning):
        super().__init__()
        self.pruning, self.counts = pruning, []

    def on_train_batch_end(self, batch, logs=None):
        if keras.backend.backend() == "jax":
            self.model.jax_state_sync()
        self.counts.append([int(keras.ops.convert_to_numpy(m).sum()) for m in self.pruning.masks])


def test_masks_follow_the_schedule_step_by_step():
    """After step t every mask keeps round(n (1 - s(u))) entries, u the last update step <= t."""
    x, y, _ = easy_task(n=640)
    model = small_mlp()
    batch, epochs = 64, 4
    steps = int(np.ceil(len(x) / batch)) * epochs  # 40: updates at 0, 10, 20, 30, 40
    callback = MagnitudePruning(PruningSchedule(total_steps=steps))
    probe = MaskCounts(callback)
    optimizer = keras.optimizers.Adam(1e-3)
    callback.attach(model, optimizer)
    model.compile(optimizer, "categorical_crossentropy")
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[callback, probe])
    schedule = callback.schedule
    sizes = [int(np.prod(layer.kernel.shape)) for layer in prunable_layers(model)]
    for t, counts in enumerate(probe.counts, start=1):
        last_update = max(u for u in schedule.update_steps() if u <= t)
        assert counts == [round(n * (1 - schedule.sparsity(last_update))) for n in sizes], t


def test_pruning_keeps_the_largest_initial_weights_when_weights_do_not_move():
    """With a zero learning rate the final mask is exactly numpy's magnitude mask of the start."""
    x, y, _ = easy_task(n=640)
    model = small_mlp()
    start = [keras.ops.convert_to_numpy(layer.kernel) for layer in prunable_layers(model)]
    prune(model, x, y, epochs=2, optimizer=keras.optimizers.SGD(0.0))
    for layer, w in zip(prunable_layers(model), start, strict=True):
        expected = w * magnitude_mask(w, 0.9)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), expected)


def test_magnitude_mask_keeps_exactly_the_largest():
    w = np.array([[0.1, -5.0, 0.3], [2.0, -0.2, 0.0]])
    mask = magnitude_mask(w, 0.5)  # keep round(6 * 0.5) = 3 largest |w|: -5, 2, 0.3
    np.testing.assert_array_equal(mask, [[0, 1, 1], [1, 0, 0]])
    assert magnitude_mask(w, 0.9).sum() == round(6 * 0.1)


@pytest.mark.slow
def test_pruned_kernels_have_exact_sparsity_and_stay_pruned():
    x, y, _ = easy_task()
    model = small_mlp()
    layers = prunable_layers(model)
    for layer in layers:  # start biases away from 0: pruning them would set some to exactly 0
        layer.bias.assign(np.ones(layer.bias.shape, "float32"))
    callback = prune(model, x, y)
    assert [tuple(m.shape) for m in callback.masks] == [tuple(layer.kernel.shape) for layer in layers]
    n_variables = len(model.optimizer.variables)
    zero_patterns = []
    for layer in layers:
        k = keras.ops.convert_to_numpy(layer.kernel)
        assert int((k == 0).sum()) == round(0.9 * k.size)
        b = keras.ops.convert_to_numpy(layer.bias)
        assert np.count_nonzero(b) == b.size  # biases are never pruned
        zero_patterns.append(k == 0)
    # further training steps with the final masks keep every pruned weight at exactly zero
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
    for layer, zeros in zip(layers, zero_patterns, strict=True):
        k = keras.ops.convert_to_numpy(layer.kernel)
        assert np.all(k[zeros] == 0)
    # detached, the optimizer holds a plain Adam's state (no masks, no spares) and no constraint
    callback.detach(model)
    assert len(model.optimizer.variables) == n_variables - 2 * len(layers)
    assert all(layer.kernel.constraint is None for layer in layers)


def test_dropout_layers_where_spec_says():
    mlp = build_mlp(dropout=0.5)
    kinds = [(type(layer).__name__, getattr(layer, "rate", None)) for layer in mlp.layers]
    assert kinds == [("Dense", None), ("Dropout", 0.5)] * 4 + [("Dense", None)]
    assert [type(layer).__name__ for layer in build_mlp().layers] == ["Dense"] * 5
    cnn = [(type(layer).__name__, getattr(layer, "rate", None)) for layer in build_cnn(dropout=True).layers]
    assert cnn == [
        ("Conv2D", None), ("Conv2D", None), ("MaxPooling2D", None), ("Dropout", 0.25),
        ("Conv2D", None), ("MaxPooling2D", None), ("Dropout", 0.25),
        ("Flatten", None), ("Dense", None), ("Dropout", 0.5), ("Dense", None),
    ]
    assert REGISTRY["CIFAR10+DROPOUT"].dropout == 0.2 and REGISTRY["CIFAR10+DROPOUT"].epochs == 100
    assert REGISTRY["MNIST+DROPOUT"].dropout == 0.5 and REGISTRY["MNIST"].instances == 10


def test_profiles_scale_schedules():
    quick = load_profile("quick")
    spec = quick.apply(REGISTRY["CIFAR10"])
    assert (spec.epochs, spec.prune_epochs, spec.instances) == (3, 3, 1)
    cnn = quick.apply(REGISTRY["CNN-MNIST"])
    assert (cnn.epochs, cnn.prune_epochs) == (1, 1)
    paper = load_profile("paper").apply(REGISTRY["CIFAR10"])
    assert (paper.epochs, paper.prune_epochs, paper.instances) == (20, 40, 10)


@pytest.fixture
def line_data(tmp_path):
    data = synthetic.make_line(seed=0, n_train=1500, n_test=300)
    build.save_imageset(tmp_path / "data" / "line.npz", data)
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def tiny_tag_registered(monkeypatch):
    """A model folder is read back only when its tag is the registry's and its profile a shipped
    one (storage/catalog.py): the tests' tiny tag and profile are registered for each test."""
    monkeypatch.setitem(REGISTRY, "TEST", tiny_config().spec)
    shipped = registry.known_profiles()
    monkeypatch.setattr(catalog, "known_profiles", lambda: [*shipped, "test"])


def tiny_config(seed=3, epochs=2, prune_epochs=1):
    spec = TagSpec("TEST", "line", "mlp", 0.0, epochs, prune_epochs, batch_size=100, learning_curve=True)
    return TrainConfig(spec, 0, seed, "test")


def final_weights(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "pruned.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
def test_same_seed_same_weights_and_reload_predicts_identically(line_data, tmp_path):
    a = train_instance(tiny_config(), tmp_path / "a", line_data, log=lambda _: None)
    b = train_instance(tiny_config(), tmp_path / "b", line_data, log=lambda _: None)
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for key in (k for k in wa if k.startswith("kernel_")):  # the real loop (steps_per_execution)
        assert int((wa[key] == 0).sum()) == round(0.9 * wa[key].size)
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key])
    model = keras.saving.load_model(a / "pruned.keras")
    x = build.load_dataset("line", line_data).x_test.reshape(-1, 784)[:64]
    again = keras.saving.load_model(a / "pruned.keras")
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    # the saved npz kernels are the model's kernels
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[0].kernel), wa["kernel_0"])
    metrics = json.loads((a / "metrics.json").read_text())
    assert len(metrics["dense"]["val_accuracy"]) == 2 and len(metrics["pruned"]["accuracy"]) == 1
    # each stage's accuracy on its training images in inference mode, recomputed from the saved net
    train = build.load_dataset("line", line_data)
    for stage in ("dense", "pruned"):
        net = keras.saving.load_model(a / f"{stage}.keras")
        hits = net.predict(train.x_train.reshape(-1, 784), verbose=0).argmax(1) == train.y_train
        assert metrics[f"{stage}_train_accuracy_inference"] == pytest.approx(float(hits.mean()), abs=2e-3)
    config = json.loads((a / "config.json").read_text())
    assert config["seed"] == 3 and config["backend"] == "tensorflow" and "code_version" in config
    assert sorted(p.name for p in (a / "checkpoints").iterdir()) == [
        "dense-epoch-000.npz", "dense-epoch-001.npz", "dense-epoch-002.npz", "pruned-epoch-001.npz",
    ]


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(line_data, tmp_path, monkeypatch):
    from nn_clustering.training import train

    reference = train_instance(tiny_config(), tmp_path / "ref", line_data, log=lambda _: None)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(train, "train_pruned", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train_instance(tiny_config(), tmp_path / "run", line_data, log=lambda _: None)
    assert not (tmp_path / "run" / "TEST" / "0").exists()  # nothing half-done is taken as done
    assert (tmp_path / "run" / "TEST" / ".0.partial" / "dense.keras").exists()
    lines = []
    resumed = train_instance(tiny_config(), tmp_path / "run", line_data, log=lines.append)
    assert any("resuming" in line for line in lines)
    for key, value in final_weights(reference).items():
        np.testing.assert_array_equal(final_weights(resumed)[key], value)
    assert not (tmp_path / "run" / "TEST" / ".0.partial").exists()
    # a finished instance is skipped
    lines.clear()
    train_instance(tiny_config(), tmp_path / "run", line_data, log=lines.append)
    assert lines == ["TEST/0: already trained, skipped"]


@pytest.mark.slow
def test_a_damaged_staged_dense_stage_is_trained_again(line_data, tmp_path, monkeypatch):
    """An interrupted run whose staged dense.keras was then damaged: the next run says so,
    trains the dense stage again from its seed and ends with the uninterrupted weights."""
    from nn_clustering.training import train

    reference = train_instance(tiny_config(), tmp_path / "ref", line_data, log=lambda _: None)
    with monkeypatch.context() as patch:
        patch.setattr(train, "train_pruned", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            train_instance(tiny_config(), tmp_path / "run", line_data, log=lambda _: None)
    staged = tmp_path / "run" / "TEST" / ".0.partial" / "dense.keras"
    staged.write_bytes(staged.read_bytes()[:200])  # truncated
    lines = []
    resumed = train_instance(tiny_config(), tmp_path / "run", line_data, log=lines.append)
    assert any("unreadable" in line and "training the dense stage again" in line for line in lines)
    for key, value in final_weights(reference).items():
        np.testing.assert_array_equal(final_weights(resumed)[key], value)


@pytest.mark.slow
def test_a_finished_instance_with_a_missing_file_is_not_skipped(line_data, tmp_path):
    """`make models` on an instance whose pruned.npz was deleted: one clear error naming the fix
    (not "already trained, skipped"), and the fix works: the re-trained weights are the same."""
    import shutil

    from nn_clustering.errors import ModelError

    folder = train_instance(tiny_config(), tmp_path / "m", line_data, log=lambda _: None)
    before = final_weights(folder)
    config = json.loads((folder / "config.json").read_text())
    assert sorted(config["files"]) == ["dense.keras", "dense.npz", "pruned.keras", "pruned.npz"]
    (folder / "pruned.npz").unlink()
    with pytest.raises(ModelError, match=r"pruned.npz is missing.*delete .*TEST/0 and re-run `make models"):
        train_instance(tiny_config(), tmp_path / "m", line_data, log=lambda _: None)
    shutil.rmtree(folder)
    again = train_instance(tiny_config(), tmp_path / "m", line_data, log=lambda _: None)
    for key, value in before.items():
        np.testing.assert_array_equal(final_weights(again)[key], value)


@pytest.mark.slow
def test_inference_gap_warning(line_data, tmp_path, monkeypatch):
    from nn_clustering.training import train

    assert train.inference_gap_warning("X", 0.90, 0.85) is None
    assert train.inference_gap_warning("X", None, 0.10) is None
    line = train.inference_gap_warning("LINE+DROPOUT/0 pruned", 0.91, 0.30)
    assert line.startswith("warning: LINE+DROPOUT/0 pruned") and "0.30" in line and "0.91" in line
    # train_instance checks both stages: with any gap counted, both warn
    monkeypatch.setattr(train, "INFERENCE_GAP", -1.0)
    lines = []
    train_instance(tiny_config(prune_epochs=1, epochs=1), tmp_path / "m", line_data, log=lines.append)
    warned = [line for line in lines if line.startswith("warning:")]
    assert [w.split(":")[1].strip() for w in warned] == ["TEST/0 dense", "TEST/0 pruned"]


@pytest.mark.slow
def test_instances_trained_before_the_inference_accuracy_get_it_added(line_data, tmp_path):
    folder = train_instance(tiny_config(epochs=1), tmp_path / "m", line_data, log=lambda _: None)
    path = folder / "metrics.json"
    recorded = json.loads(path.read_text())
    keys = ["dense_train_accuracy_inference", "pruned_train_accuracy_inference"]
    older = {k: v for k, v in recorded.items() if k not in keys}  # as written before the change
    path.write_text(json.dumps(older))
    lines = []
    train_instance(tiny_config(epochs=1), tmp_path / "m", line_data, log=lines.append)
    assert lines[0] == "TEST/0: already trained, skipped" and "added the inference-mode accuracy" in lines[1]
    again = json.loads(path.read_text())
    assert again == recorded  # what training stored, recomputed from the saved nets
    assert not list(folder.glob("*.tmp*"))
    lines.clear()
    train_instance(tiny_config(epochs=1), tmp_path / "m", line_data, log=lines.append)
    assert lines == ["TEST/0: already trained, skipped"]  # nothing to add the second time


@pytest.mark.slow
def test_a_mixture_records_its_test_accuracy_per_source_dataset(tmp_path, monkeypatch):
    """Each stage of an A-B mixture net gets its test accuracy on the rows from A and from B,
    equal to a count over the saved net's predictions; an instance trained without it gets
    it added, and the clustering table carries both numbers."""
    from nn_clustering.experiments.clustering import ClusteringConfig, cluster_instance
    from nn_clustering.training import train
    from nn_clustering.training.catalog import find_instances

    rng = np.random.default_rng(0)
    line = synthetic.make_line(seed=0, n_train=800, n_test=200)
    noise = synthetic.make_random(seed=0, n_train=800, n_test=200)
    mixture = synthetic.mix(line, noise, rng)
    build.save_imageset(tmp_path / "data" / "line-random.npz", mixture)
    spec = TagSpec("TEST", "line-random", "mlp", 0.0, 2, 1, batch_size=100)
    monkeypatch.setitem(REGISTRY, "TEST", spec)
    config = TrainConfig(spec, 0, 3, "test")
    lines = []
    folder = train_instance(config, tmp_path / "m", tmp_path / "data", log=lines.append)
    metrics = json.loads((folder / "metrics.json").read_text())
    data = build.load_dataset("line-random", tmp_path / "data")
    for stage in ("dense", "pruned"):
        model = keras.saving.load_model(folder / f"{stage}.keras")
        correct = model.predict(data.x_test.reshape(-1, 784), verbose=0).argmax(1) == data.y_test
        expected = {"line": correct[~data.source_test].sum() / (~data.source_test).sum(),
                    "random": correct[data.source_test].sum() / data.source_test.sum()}
        assert metrics[f"{stage}_test_accuracy_by_source"] == pytest.approx(expected)
    assert any("test accuracy per source dataset" in line for line in lines)
    # an instance trained before this was recorded gets it from the saved nets, once
    older = {k: v for k, v in metrics.items() if not k.endswith("test_accuracy_by_source")}
    (folder / "metrics.json").write_text(json.dumps(older))
    assert train.add_missing_metrics(folder, spec, tmp_path / "data", log=lambda _: None)
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    assert not train.add_missing_metrics(folder, spec, tmp_path / "data", log=lambda _: None)
    # the clustering row: A's and B's accuracy; a single dataset leaves both empty
    instance = find_instances(tmp_path / "m", arch="mlp")[0]
    fast = ClusteringConfig(n_clusters=2, n_shuffles=2)
    row = cluster_instance(instance, "pruned", "layer", fast, progress=False).row
    assert (row.test_accuracy_a, row.test_accuracy_b) == pytest.approx(
        tuple(metrics["pruned_test_accuracy_by_source"][name] for name in ("line", "random")))
    single = replace(instance, config={**instance.config, "spec": {**instance.config["spec"], "dataset": "line"}})
    assert single.source_accuracies("pruned") == (None, None)


@pytest.mark.slow
def test_training_beats_chance_on_tensorflow():
    x, y, labels = easy_task(n=2000)
    model = small_mlp()
    train_then_prune(model, x, y)
    accuracy = float(np.mean(model.predict(x, verbose=0).argmax(1) == labels))
    assert accuracy > 0.7  # chance is 0.25


JAX_SCRIPT = r"""
import numpy as np, keras, sys
sys.path.insert(0, {tests!r})
from test_train import easy_task, small_mlp, train_then_prune
from test_train import test_masks_follow_the_schedule_step_by_step as schedule_check
from test_train import test_pruning_keeps_the_largest_initial_weights_when_weights_do_not_move as zero_lr_check
from test_train import test_block_selection_equals_one_top_k_ties_included as selection_check
from nn_clustering.training.architectures import prunable_layers
assert keras.backend.backend() == "jax"
schedule_check()
zero_lr_check()
selection_check()
x, y, labels = easy_task(n=2000)
model = small_mlp()
callback = train_then_prune(model, x, y)
for layer in prunable_layers(model):
    k = keras.ops.convert_to_numpy(layer.kernel)
    assert int((k == 0).sum()) == round(0.9 * k.size), (int((k == 0).sum()), k.size)
zeros = [keras.ops.convert_to_numpy(l.kernel) == 0 for l in prunable_layers(model)]
model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
for layer, z in zip(prunable_layers(model), zeros):
    assert np.all(keras.ops.convert_to_numpy(layer.kernel)[z] == 0)
print("ACCURACY", float(np.mean(model.predict(x, verbose=0).argmax(1) == labels)))
"""


@pytest.mark.slow
def test_training_and_pruning_on_jax():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    script = JAX_SCRIPT.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    accuracy = float(out.stdout.split("ACCURACY")[1])
    assert accuracy > 0.7


def test_unknown_tag_and_profile_are_clear_errors(capsys, tmp_path):
    from nn_clustering import cli

    assert cli.main(["train", "MNSIT", "--models-dir", str(tmp_path)]) == 2
    assert "unknown model tag 'MNSIT'" in capsys.readouterr().err
    assert cli.main(["train", "MNIST", "--profile", "fast", "--models-dir", str(tmp_path)]) == 2
    assert "unknown profile 'fast'; use one of paper, quick" in capsys.readouterr().err


def test_missing_dataset_tag_is_skipped_with_a_message(tmp_path, monkeypatch, fake_mirror):
    from nn_clustering.training import train

    (fake_mirror["mirror"] / "cifar-10" / raw_files.CIFAR_ARCHIVE).unlink()
    lines = []
    quick = replace(load_profile("quick"), max_epochs=1, max_prune_epochs=1)
    done = train.train_tags(["CIFAR10"], quick, tmp_path / "models", tmp_path / "data", log=lines.append)
    assert done == {} and len(lines) == 1 and lines[0].startswith("skipped CIFAR10: dataset cifar10 is missing")


@pytest.mark.slow
def test_mask_update_benchmark_runs_and_checks_identical_indices():
    """The benchmark's own equality check passes on the MLP's kernels (a smoke run, 2 reps)."""
    script = Path(__file__).parents[1] / "benchmarks" / "bench_mask_update.py"
    out = subprocess.run([sys.executable, str(script), "--reps", "2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(identical indices)" in out.stdout and out.stdout.count("x256") == 4


@pytest.mark.slow
def test_train_step_benchmark_runs_on_jax():
    """The step-level benchmark runs (a smoke run: 2 rounds of 2 steps) and reports both variants."""
    pytest.importorskip("jax")
    script = Path(__file__).parents[1] / "benchmarks" / "bench_train_step.py"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, str(script), "--rounds", "2", "--chunk", "2"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ms/step" in out.stdout and "overhead" in out.stdout
