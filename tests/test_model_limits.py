"""Reading a model file is bounded before it allocates (method.md §3.4): each format's sizes are
checked from what its headers and archives declare, so a small file that declares gigabytes is
one ``error:`` line naming the tensor, even in a process whose address space is capped at 2 GiB;
the limit can be raised; normal files of every format still read exactly what was saved."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from make_fixture_models import (
    npz_deflate_bomb,
    npz_header_bomb,
    safetensors_bytes,
    sparse_safetensors,
    torch_state_dict_zip,
    torch_zip,
)
from model_files import float32, onnx_mlp, save_onnx

from nn_clustering import load_weights
from nn_clustering.errors import ModelError, ParameterError
from nn_clustering.formats import limits
from nn_clustering.formats.limits import (
    ENV,
    format_size,
    limit_and_reason,
    memory_limit,
    memory_limit_set,
    parse_size,
)

CAP = 2 << 30  # the address space of the subprocess that reads a bomb


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


def cluster_capped(path: Path, env: dict | None = None, cap: bool = True,
                   options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``nn-clustering cluster path`` in a fresh interpreter whose address space is capped at
    2 GiB (so any allocation of the declared sizes would fail), the default limit unless
    ``env`` sets one."""
    environ = {k: v for k, v in os.environ.items() if k != ENV}
    environ.update(env or {}, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "nn_clustering", "cluster", str(path), "--shuffles", "2", "--quiet",
                           *options],
                          preexec_fn=_cap_address_space if cap else None, capture_output=True, text=True,
                          env=environ, timeout=300)


def one_error_line(run: subprocess.CompletedProcess, *names: str) -> str:
    """The single ``error:`` line of a refused run (exit status 2, no traceback), naming ``names``."""
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr + run.stdout
    for name in names:
        assert repr(name) in run.stderr, run.stderr
    return run.stderr


def over_the_limit(line: str) -> None:
    """The line is the memory limit's (not some other refusal)."""
    assert "as float64" in line and "limit for reading a model (half of the available memory)" in line, line
    assert "--max-model-memory or NN_CLUSTERING_MODEL_MEMORY" in line, line


# --------------------------------------------------------------------------- the limit itself


@pytest.mark.parametrize("text, expected", [
    ("123", 123), ("512M", 512 << 20), ("16G", 16 << 30), ("1.5GiB", 3 << 29), ("2k", 2048), ("1 TB", 1 << 40),
    ("64mib", 64 << 20), (" 7 ", 7),
])
def test_parse_size_reads_bytes_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-5G", "0", "1.5X", "G", "12 34"])
def test_a_bad_size_is_one_line_naming_the_option(text):
    with pytest.raises(ParameterError, match=r"^--max-model-memory .* is not a memory size: .*512M, 16G") as info:
        parse_size(text)
    assert "\n" not in str(info.value)


def test_format_size_gives_three_digits_of_a_binary_unit():
    assert format_size(745 * 2**30 + 2**28) == "745 GiB"
    assert format_size(int(11.6 * 2**30)) == "11.6 GiB"
    assert format_size(512) == "512 bytes" and format_size(1536) == "1.5 KiB"


def test_default_limit_is_half_of_what_the_process_can_take(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(limits, "_meminfo_available", lambda: 8 << 30)
    monkeypatch.setattr(limits, "_cgroup_room", lambda: None)
    monkeypatch.setattr(limits, "_address_space_room", lambda: None)
    assert limit_and_reason() == (4 << 30, "half of the available memory")
    monkeypatch.setattr(limits, "_cgroup_room", lambda: 3 << 30)  # a container's limit leaves less
    assert memory_limit() == 3 << 29
    monkeypatch.setattr(limits, "_address_space_room", lambda: 1 << 30)  # ulimit -v leaves still less
    assert memory_limit() == 1 << 29


def test_an_address_space_cap_lowers_the_default_limit():
    """The real reading of /proc and the rlimit: under a 2 GiB cap the default limit is below
    1 GiB (half of what is left of the cap); without one it is half of MemAvailable or less."""
    script = "from nn_clustering.formats.limits import memory_limit; print(memory_limit())"
    environ = {k: v for k, v in os.environ.items() if k != ENV}
    capped = subprocess.run([sys.executable, "-c", script], preexec_fn=_cap_address_space, capture_output=True,
                            text=True, env=environ, check=True)
    assert 0 < int(capped.stdout) < 1 << 30
    free = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environ, check=True)
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert int(free.stdout) <= int(meminfo["MemTotal"].split()[0]) * 1024 // 2


def test_precedence_context_manager_then_environment_then_default(monkeypatch):
    monkeypatch.setenv(ENV, "16K")
    assert limit_and_reason() == (16 << 10, f"set by {ENV}")
    with memory_limit_set("1M") as value:
        assert value == 1 << 20 and limit_and_reason() == (1 << 20, "set by --max-model-memory")
        with memory_limit_set(5000, origin="max_memory"):
            assert limit_and_reason() == (5000, "set by max_memory")
        assert memory_limit() == 1 << 20
    assert memory_limit() == 16 << 10
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(ParameterError, match=f"^{ENV} 'lots' is not a memory size"):
        memory_limit()


def small_net(tmp_path) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    kernels = [float32(rng, 100, 50), float32(rng, 50, 4)]
    np.savez(tmp_path / "net.npz", *kernels)
    return tmp_path / "net.npz", kernels


def test_a_raised_limit_lets_through_a_file_the_lower_one_refuses(tmp_path, monkeypatch):
    path, kernels = small_net(tmp_path)  # arr_0 takes 40000 bytes as float64, both 41600
    monkeypatch.setenv(ENV, "40000")
    with pytest.raises(ModelError, match=r"tensor 'arr_1' of shape \(50, 4\) would take 1.56 KiB as float64 on top "
                                         r"of the 39.1 KiB read before it, over the 39.1 KiB limit .*set by "
                                         f"{ENV}"):
        load_weights(path)
    with memory_limit_set(41600):
        weights = load_weights(path)
    for got, saved in zip(weights.kernels, kernels, strict=True):
        np.testing.assert_array_equal(got, saved)


def test_the_command_line_reads_the_limit_from_the_environment(tmp_path):
    path, _ = small_net(tmp_path)
    line = one_error_line(cluster_capped(path, {ENV: "16K"}, cap=False), "arr_0")
    assert "over the 16 KiB limit for reading a model (set by NN_CLUSTERING_MODEL_MEMORY)" in line
    assert cluster_capped(path, {ENV: "1M"}, cap=False).returncode == 0
    line = one_error_line(cluster_capped(path, {ENV: "a lot"}, cap=False))
    assert f"{ENV} 'a lot' is not a memory size" in line


def test_the_command_line_option_outranks_the_environment(tmp_path):
    path, _ = small_net(tmp_path)  # 41600 bytes as float64
    raised = cluster_capped(path, {ENV: "16K"}, cap=False, options=("--max-model-memory", "1M"))
    assert raised.returncode == 0, raised.stderr
    line = one_error_line(cluster_capped(path, {ENV: "1M"}, cap=False, options=("--max-model-memory", "16K")), "arr_0")
    assert "over the 16 KiB limit for reading a model (set by --max-model-memory)" in line
    line = one_error_line(cluster_capped(path, cap=False, options=("--max-model-memory", "0")))
    assert "--max-model-memory '0' is not a memory size" in line


# --------------------------------------------------------------------------- bombs, one per format


def test_npz_of_deflated_zeros_is_refused_before_it_is_inflated(tmp_path):
    bomb = npz_deflate_bomb(tmp_path / "bomb.npz")  # 600 MB of float16 zeros, 2.2 GiB as float64
    assert bomb.stat().st_size < 2 << 20
    line = one_error_line(cluster_capped(bomb), "arr_0")
    over_the_limit(line)
    assert "of shape (30000, 10000) would take 2.24 GiB as float64" in line


def test_npz_header_that_claims_a_trillion_elements_is_one_line(tmp_path):
    line = one_error_line(cluster_capped(npz_header_bomb(tmp_path / "bomb.npz")), "arr_0")
    assert "declares shape (1000000, 1000000) of float64 (8000000000000 bytes) but its archive member holds 64 " \
           "bytes" in line


def test_safetensors_tensor_over_the_limit_is_refused_before_it_is_read(tmp_path):
    bomb = sparse_safetensors(tmp_path / "bomb.safetensors")  # a 1.2 GB hole
    line = one_error_line(cluster_capped(bomb), "w")
    over_the_limit(line)


@pytest.mark.parametrize("header, message", [
    ({"w": {"dtype": "F32", "shape": [10**6, 10**5], "data_offsets": [0, 16]}},
     "declares shape (1000000, 100000) of F32 (400000000000 bytes) but its data_offsets [0, 16] hold 16 bytes"),
    ({"w": {"dtype": "F32", "shape": [10**6, 10**5], "data_offsets": [0, 4 * 10**11]}},
     "has data_offsets [0, 400000000000] outside the file's 16 data bytes"),
    ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}}, "outside the file's 16 data bytes"),
])
def test_safetensors_header_that_does_not_match_its_data_is_one_line(tmp_path, header, message):
    text = json.dumps(header).encode()
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + bytes(16))
    assert message in one_error_line(cluster_capped(path), "w")


def test_safetensors_header_length_is_bounded(tmp_path):
    path = tmp_path / "bomb.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + b"{" + bytes(100))
    with pytest.raises(ModelError, match=r"its header length 1000000000000 does not fit the file"):
        load_weights(path)


def onnx_external_bomb(folder: Path, shape=(10000, 30000)) -> Path:
    """An ONNX MLP whose weight ``fc0.weight`` of ``shape`` lies in a sparse external file."""
    from onnx import TensorProto, helper

    nbytes = int(np.prod(shape)) * 4
    with open(folder / "fc0.weight.bin", "wb") as f:
        f.truncate(nbytes)
    weight = TensorProto(name="fc0.weight", data_type=TensorProto.FLOAT, dims=shape,
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "fc0.weight.bin"), ("offset", "0"), ("length", str(nbytes))):
        weight.external_data.add(key=key, value=value)
    return save_onnx(folder / "bomb.onnx", [helper.make_node("Gemm", ["x", "fc0.weight"], ["y"], transB=1)],
                     {"fc0.weight": weight}, [1, shape[1]], "y")


def test_onnx_external_data_over_the_limit_is_refused_before_it_is_read(tmp_path):
    pytest.importorskip("onnx")
    line = one_error_line(cluster_capped(onnx_external_bomb(tmp_path)), "fc0.weight")
    over_the_limit(line)


def test_onnx_initialiser_that_claims_a_huge_shape_is_one_line(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = TensorProto(name="fc0.weight", data_type=TensorProto.FLOAT, dims=[10**6, 10**5], raw_data=bytes(4))
    path = save_onnx(tmp_path / "bomb.onnx", [helper.make_node("Gemm", ["x", "fc0.weight"], ["y"], transB=1)],
                     {"fc0.weight": weight}, [1, 10**5], "y")
    line = one_error_line(cluster_capped(path), "fc0.weight")
    assert "declares shape (1000000, 100000) (400000000000 bytes) but holds 4 bytes" in line


def test_onnx_file_itself_is_counted(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    path = onnx_mlp(tmp_path / "net.onnx", [float32(rng, 40, 30), float32(rng, 30, 4)],
                    [np.zeros(30, np.float32), np.zeros(4, np.float32)])
    monkeypatch.setenv(ENV, str(path.stat().st_size))
    with pytest.raises(ModelError, match=r"net.onnx: parsing the file would take .* over the .* limit"):
        load_weights(path)


@pytest.fixture(scope="module")
def keras_model_files(tmp_path_factory) -> dict[str, Path]:
    """A small Dense model (12 -> 8 -> 4) saved as .keras and .h5."""
    keras = pytest.importorskip("keras")
    folder = tmp_path_factory.mktemp("keras")
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, name="dense"),
                              keras.layers.Dense(4, name="head")])
    model.save(folder / "net.keras")
    model.save(folder / "net.h5")
    return {"keras": folder / "net.keras", "h5": folder / "net.h5", "model": model}


def _swap_dataset(h5_file, name: str, shape) -> None:
    """Replace dataset ``name`` by a gzip-filtered one of ``shape`` with no chunk written: a few
    bytes on disk that read as ``shape`` zeros."""
    import h5py

    with h5py.File(h5_file, "r+") as f:
        del f[name]
        f.create_dataset(name, shape=shape, dtype="f4", chunks=(1000, 1000), compression="gzip")


def _rewrite_keras(source: Path, target: Path, weights=None, config=None) -> Path:
    """A copy of a .keras archive with its weights file or configuration changed."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "model.weights.h5" and weights:
                buffer = io.BytesIO(data)
                weights(buffer)
                data = buffer.getvalue()
            if info.filename == "config.json" and config:
                data = json.dumps(config(json.loads(data))).encode()
            new.writestr(info, data)
    return target


def test_keras_weights_that_inflate_are_refused_before_keras_is_imported(tmp_path, keras_model_files):
    bomb = _rewrite_keras(keras_model_files["keras"], tmp_path / "bomb.keras",
                          weights=lambda f: _swap_dataset(f, "layers/dense/vars/0", (30000, 10000)))
    assert bomb.stat().st_size < 1 << 20
    line = one_error_line(cluster_capped(bomb), "model.weights.h5/layers/dense/vars/0")
    over_the_limit(line)


def test_keras_configuration_of_huge_layers_is_refused_before_keras_builds_them(tmp_path, keras_model_files):
    def huge(config):
        dense = next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == "dense")
        dense["config"]["units"] = 200000
        dense["build_config"]["input_shape"] = [None, 20000]
        return config

    bomb = _rewrite_keras(keras_model_files["keras"], tmp_path / "config.keras", config=huge)
    line = one_error_line(cluster_capped(bomb), "dense")
    assert "the kernel of layer 'dense' of shape (20000, 200000) would take 29.8 GiB as float64" in line


@pytest.mark.parametrize("kind, extra, shape", [
    ("DepthwiseConv2D", {"depth_multiplier": 100000}, "(3, 3, 20000, 100000)"),
    ("SeparableConv2D", {"depth_multiplier": 1, "filters": 200000}, "(1, 1, 20000, 200000)"),
])
def test_keras_configuration_of_huge_depthwise_layers_is_refused(tmp_path, keras_model_files, kind, extra, shape):
    def huge(config):
        dense = next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == "dense")
        dense["class_name"] = kind
        dense["config"] |= {"kernel_size": [3, 3], **extra}
        dense["build_config"]["input_shape"] = [None, 8, 8, 20000]
        return config

    bomb = _rewrite_keras(keras_model_files["keras"], tmp_path / "config.keras", config=huge)
    line = one_error_line(cluster_capped(bomb), "dense")
    assert f"the kernel of layer 'dense' of shape {shape} would take" in line


def test_legacy_h5_dataset_that_inflates_is_refused(tmp_path, keras_model_files):
    import h5py

    bomb = tmp_path / "bomb.h5"
    bomb.write_bytes(keras_model_files["h5"].read_bytes())
    with h5py.File(bomb, "r") as f:
        kernels = []
        f.visititems(lambda n, o: kernels.append(n) if n.endswith("dense/kernel") else None)
    _swap_dataset(bomb, kernels[0], (30000, 10000))
    assert bomb.stat().st_size < 1 << 20
    line = one_error_line(cluster_capped(bomb), kernels[0])
    over_the_limit(line)


def test_expanded_torch_tensor_is_counted_by_its_view_not_its_storage(tmp_path):
    """A 1 kB .pt whose 4-byte storage is viewed with stride 0 as 60000 x 15000 (6.7 GiB as float64)."""
    bomb = torch_zip(tmp_path / "bomb.pt", {"0.weight": ("0", 0, (60000, 15000), (0, 0))},
                     {"0": ("FloatStorage", bytes(4))})
    assert bomb.stat().st_size < 2048
    line = one_error_line(cluster_capped(bomb), "0.weight")
    over_the_limit(line)
    assert "of shape (60000, 15000) would take 6.71 GiB as float64" in line


def test_torch_storage_member_that_inflates_is_counted(tmp_path, monkeypatch):
    bomb = tmp_path / "storage.pt"
    data = np.zeros(1 << 20, np.float32).tobytes()  # 4 MiB of zeros, deflated to a few kB
    torch_zip(bomb, {"0.weight": ("0", 0, (2, 2), (2, 1))}, {"0": ("FloatStorage", data)})
    with zipfile.ZipFile(bomb) as old, zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info))
    monkeypatch.setenv(ENV, "1M")
    with pytest.raises(ModelError, match=r"the storage data/0 of tensor '0.weight' would take 4 MiB, over the 1 MiB"):
        load_weights(tmp_path / "deflated.pt")


# --------------------------------------------------------------------------- normal files


def test_normal_npz_files_read_exactly_what_was_saved(tmp_path):
    rng = np.random.default_rng(3)
    kernels = [np.asfortranarray(rng.normal(size=(7, 5))), float32(rng, 5, 3).astype(np.float16)]
    biases = [rng.normal(size=5), rng.normal(size=3)]
    np.savez_compressed(tmp_path / "a.npz", kernel_0=kernels[0], kernel_1=kernels[1], bias_0=biases[0],
                        bias_1=biases[1], notes=np.array(["ignored"]))
    weights = load_weights(tmp_path / "a.npz")
    for got, saved in zip(weights.kernels + weights.biases, kernels + biases, strict=True):
        np.testing.assert_array_equal(got, saved)


def test_normal_safetensors_of_every_float_width_read_exactly(tmp_path):
    rng = np.random.default_rng(4)
    w0, w1 = rng.normal(size=(5, 7)), rng.normal(size=(3, 5)).astype(np.float16)
    b0 = rng.normal(size=5).astype(np.float32)
    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes({"net.0.weight": ("F64", [5, 7], w0.astype("<f8").tobytes()),
                                        "net.0.bias": ("F32", [5], b0.astype("<f4").tobytes()),
                                        "net.2.weight": ("F16", [3, 5], w1.astype("<f2").tobytes())}))
    weights = load_weights(path)
    np.testing.assert_array_equal(weights.kernels[0], w0.T)
    np.testing.assert_array_equal(weights.kernels[1], w1.T.astype(np.float64))
    np.testing.assert_array_equal(weights.biases[0], b0)
    np.testing.assert_array_equal(weights.biases[1], np.zeros(3))


def test_normal_onnx_with_external_data_in_its_folder_reads_exactly(tmp_path):
    onnx = pytest.importorskip("onnx")
    rng = np.random.default_rng(5)
    kernels, biases = [float32(rng, 20, 10), float32(rng, 10, 3)], [float32(rng, 10), float32(rng, 3)]
    path = onnx_mlp(tmp_path / "net.onnx", kernels, biases)
    model = onnx.load(str(path))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.data",
              size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size > 0
    for name in ("net.onnx", "ext.onnx"):
        weights = load_weights(tmp_path / name)
        for got, saved in zip(weights.kernels + weights.biases, kernels + biases, strict=True):
            np.testing.assert_array_equal(got, saved)


def test_normal_keras_files_read_exactly(keras_model_files):
    model = keras_model_files["model"]
    saved = [np.asarray(v) for v in model.weights]
    for kind in ("keras", "h5"):
        weights = load_weights(keras_model_files[kind])
        got = [weights.kernels[0], weights.biases[0], weights.kernels[1], weights.biases[1]]
        for a, b in zip(got, saved, strict=True):
            np.testing.assert_array_equal(a, b)


def test_normal_torch_zip_reads_exactly(tmp_path):
    rng = np.random.default_rng(6)
    arrays = {"fc1.weight": rng.normal(size=(6, 9)).astype(np.float32), "fc1.bias": float32(rng, 6),
              "fc2.weight": rng.normal(size=(2, 6)), "fc2.bias": rng.normal(size=2)}
    weights = load_weights(torch_state_dict_zip(tmp_path / "m.pt", arrays))
    np.testing.assert_array_equal(weights.kernels[0], arrays["fc1.weight"].T)
    np.testing.assert_array_equal(weights.kernels[1], arrays["fc2.weight"].T)
    np.testing.assert_array_equal(weights.biases[0], arrays["fc1.bias"])
    assert weights.names == ["fc1", "fc2"]
