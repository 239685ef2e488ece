"""What a model file may hold (method.md §3.4): complex weights refused in every format, bfloat16
read exactly, PyTorch zip files read without PyTorch through a restricted unpickler, ONNX graphs
that are not topologically sorted refused, and paths that are not model files told apart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from make_fixture_models import bf16_exact, safetensors_bytes, torch_state_dict_zip, torch_zip
from model_files import float32, onnx_mlp, save_onnx

from nn_clustering import load_weights
from nn_clustering.errors import ModelError
from nn_clustering.formats.torch_pickle import read_torch_zip

# --------------------------------------------------------------------------- complex weights


def test_complex_safetensors_tensor_is_refused_naming_it(tmp_path):
    values = (np.arange(6) + 1j).astype(np.complex64)
    path = tmp_path / "c.safetensors"
    path.write_bytes(safetensors_bytes({"net.0.weight": ("C64", [2, 3], values.astype("<c8").tobytes())}))
    with pytest.raises(ModelError, match=r"tensor 'net.0.weight' holds complex weights \(C64\).*save the real "
                                         r"weights instead") as info:
        load_weights(path)
    assert "\n" not in str(info.value)


def test_complex_torch_storage_is_refused_naming_it(tmp_path):
    data = (np.arange(6) + 2j).astype("<c8").tobytes()
    path = torch_zip(tmp_path / "c.pt", {"fc.weight": ("0", 0, (2, 3), (3, 1))}, {"0": ("ComplexFloatStorage", data)})
    with pytest.raises(ModelError, match=r"tensor 'fc.weight' holds complex weights.*save the real weights"):
        load_weights(path)


def test_complex_onnx_initialiser_is_refused_naming_it(tmp_path):
    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array((np.ones((3, 4)) + 1j).astype(np.complex64), "fc0.weight")
    save_onnx(tmp_path / "c.onnx", [helper.make_node("Gemm", ["x", "fc0.weight"], ["y"], transB=1)],
              {"fc0.weight": weight}, [1, 4], "y")
    with pytest.raises(ModelError, match=r"tensor 'fc0.weight' holds complex weights \(complex64\)"):
        load_weights(tmp_path / "c.onnx")


# --------------------------------------------------------------------------- bfloat16


def test_bfloat16_safetensors_is_upcast_exactly(tmp_path):
    rng = np.random.default_rng(0)
    w0, bits0 = bf16_exact(rng, 6, 9)  # (out, in): a Linear weight
    b0, bias_bits = bf16_exact(rng, 6)
    w1, bits1 = bf16_exact(rng, 3, 6)
    assert np.all(w0.view(np.uint32) & 0xFFFF == 0) and len(np.unique(w0)) > 40
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(safetensors_bytes({"net.0.weight": ("BF16", [6, 9], bits0), "net.0.bias": ("BF16", [6], bias_bits),
                                        "net.2.weight": ("BF16", [3, 6], bits1)}))
    weights = load_weights(path)
    np.testing.assert_array_equal(weights.kernels[0], w0.T.astype(np.float64))
    np.testing.assert_array_equal(weights.biases[0], b0.astype(np.float64))
    np.testing.assert_array_equal(weights.kernels[1], w1.T.astype(np.float64))


def test_bfloat16_needs_no_bfloat16_numpy_type(tmp_path):
    """In an interpreter where ml_dtypes (numpy's bfloat16 type, which TensorFlow and ONNX bring
    along) cannot be imported, bfloat16 weights still read exactly."""
    rng = np.random.default_rng(5)
    w, bits = bf16_exact(rng, 4, 6)
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(safetensors_bytes({"0.weight": ("BF16", [4, 6], bits)}))
    np.save(tmp_path / "expected.npy", w.T.astype(np.float64))
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ml_dtypes":
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, Block())
import numpy as np
from nn_clustering import load_weights
got = load_weights({str(path)!r}).kernels[0]
assert np.array_equal(got, np.load({str(tmp_path / "expected.npy")!r})), got
assert "ml_dtypes" not in sys.modules
print("exact")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "exact", run.stderr[-2000:]


def test_bfloat16_special_values_keep_their_meaning(tmp_path):
    bits = np.array([0x3F80, 0xBF80, 0x0000, 0x8000, 0x4049, 0x0001, 0x7F7F], "<u2")  # 1, -1, 0, -0, 3.140625, tiny, max
    expected = np.array([1.0, -1.0, 0.0, -0.0, 3.140625, 2.0**-133, 3.3895313892515355e38])
    path = tmp_path / "special.safetensors"
    path.write_bytes(safetensors_bytes({"0.weight": ("BF16", [1, 7], bits.tobytes())}))
    got = load_weights(path).kernels[0][:, 0]
    np.testing.assert_array_equal(got, expected)
    assert np.signbit(got[3])


def test_bfloat16_torch_storage_is_upcast_exactly(tmp_path):
    rng = np.random.default_rng(1)
    w, bits = bf16_exact(rng, 4, 5)
    path = torch_zip(tmp_path / "bf16.pt", {"fc.weight": ("0", 0, (4, 5), (5, 1))}, {"0": ("BFloat16Storage", bits)})
    np.testing.assert_array_equal(load_weights(path).kernels[0], w.T.astype(np.float64))


# --------------------------------------------------------------------------- PyTorch zip without PyTorch


def test_torch_views_offsets_strides_and_byte_order(tmp_path):
    """Two tensors sharing one storage: a transposed view (strides (1, 4)) and one at an
    offset; big-endian bytes; the values must be what the hand computation gives."""
    storage = np.arange(24, dtype=np.float32)
    tensors = {"fc1.weight": ("0", 0, (4, 3), (1, 4)),  # storage[:12].reshape(3, 4).T
               "fc1.bias": ("0", 20, (4,), (1,)),
               "fc2.weight": ("1", 2, (2, 4), (4, 1))}
    storages = {"0": ("FloatStorage", storage.astype(">f4").tobytes()),
                "1": ("DoubleStorage", np.arange(10, dtype=">f8").tobytes())}
    arrays = read_torch_zip(torch_zip(tmp_path / "big.pt", tensors, storages, byteorder="big", prefix="big"))
    np.testing.assert_array_equal(arrays["fc1.weight"], storage[:12].reshape(3, 4).T)
    np.testing.assert_array_equal(arrays["fc1.bias"], [20, 21, 22, 23])
    np.testing.assert_array_equal(arrays["fc2.weight"], np.arange(2, 10).reshape(2, 4))
    weights = load_weights(tmp_path / "big.pt")
    np.testing.assert_array_equal(weights.kernels[0], storage[:12].reshape(3, 4))


@pytest.mark.parametrize("tensor, message", [
    (("0", 10, (2, 2), (2, 1)), r"tensor '0.weight' of shape \(2, 2\) \(offset 10, strides \(2, 1\)\) reaches element "
                                r"13 of a storage of 12"),
    (("0", 0, (3, 5), (5, 1)), r"reaches element 14 of a storage of 12"),
    (("0", -1, (2,), (1,)), r"tensor '0.weight' has a malformed view"),
])
def test_torch_view_outside_its_storage_is_one_line(tmp_path, tensor, message):
    path = torch_zip(tmp_path / "bad.pt", {"0.weight": tensor}, {"0": ("FloatStorage", bytes(48))})
    with pytest.raises(ModelError, match=message):
        load_weights(path)


def test_torch_storage_member_shorter_than_declared_is_one_line(tmp_path):
    path = torch_zip(tmp_path / "short.pt", {"0.weight": ("0", 0, (2, 2), (2, 1))}, {"0": ("FloatStorage", bytes(16))})
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(tmp_path / "cut.pt", "w") as new:
        for info in old.infolist():
            data = old.read(info)
            new.writestr(info.filename, data[:8] if info.filename.endswith("data/0") else data)
    with pytest.raises(ModelError, match=r"storage of 4 FloatStorage elements \(16 bytes\) but its member data/0 "
                                         r"holds 8 bytes"):
        load_weights(tmp_path / "cut.pt")


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval"), ("torch", "load"),
                                          ("__torch__.MyModule", "forward"), ("collections", "namedtuple")])
def test_torch_pickle_asking_for_anything_else_is_refused_and_not_run(tmp_path, module, name):
    path = torch_zip(tmp_path / "evil.pt", {"0.weight": ("0", 0, (1, 1), (1, 1))}, {"0": ("FloatStorage", bytes(4))},
                     extra_globals=(module, name))
    with pytest.raises(ModelError, match=rf"the pickle asks for {module}.{name}, which a state_dict of tensors does "
                                         r"not need; it is not run") as info:
        load_weights(path)
    assert "\n" not in str(info.value)


def test_torch_pickle_of_something_other_than_tensors_is_one_line(tmp_path):
    path = torch_state_dict_zip(tmp_path / "m.pt", {"0.weight": np.ones((2, 2), np.float32)})
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(tmp_path / "list.pt", "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, b"\x80\x02]q\x00K\x01a." if info.filename.endswith("data.pkl") else old.read(info))
    with pytest.raises(ModelError, match=r"holds a list, not a state_dict of tensors"):
        load_weights(tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(ModelError, match="junk.pt"):
        load_weights(tmp_path / "junk.pt")


def test_torch_zip_matches_torch_load(tmp_path):
    """Where PyTorch is installed: our reader gives what torch.load gives, for a file torch wrote."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(9, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    state = model.state_dict()
    state["0.weight"] = state["0.weight"].t().contiguous().t()  # a non-contiguous view
    state["2.bias"] = torch.zeros(1).expand(3)  # stride 0
    torch.save(state, tmp_path / "m.pt")
    ours = read_torch_zip(tmp_path / "m.pt")
    theirs = torch.load(tmp_path / "m.pt", weights_only=True)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value.numpy())
    bf = {"0.weight": torch.randn(4, 5).to(torch.bfloat16)}
    torch.save(bf, tmp_path / "bf.pt")
    np.testing.assert_array_equal(read_torch_zip(tmp_path / "bf.pt")["0.weight"], bf["0.weight"].float().numpy())


def test_legacy_torch_file_is_checked_before_conversion(tmp_path):
    """Where PyTorch is installed, the legacy (non-zip) format is read with it: an expanded
    tensor is counted by its view before .double(), and complex tensors are refused."""
    torch = pytest.importorskip("torch")
    from nn_clustering.formats.limits import memory_limit_set

    torch.save({"0.weight": torch.zeros(1).expand(3000, 3000)}, tmp_path / "expanded.pt",
               _use_new_zipfile_serialization=False)
    with memory_limit_set("10M"), pytest.raises(ModelError, match=r"tensor '0.weight' of shape \(3000, 3000\) would "
                                                                  r"take 68.7 MiB as float64, over the 10 MiB limit"):
        load_weights(tmp_path / "expanded.pt")
    torch.save({"0.weight": torch.ones(3, 4, dtype=torch.complex64)}, tmp_path / "complex.pt",
               _use_new_zipfile_serialization=False)
    with pytest.raises(ModelError, match=r"tensor '0.weight' holds complex weights"):
        load_weights(tmp_path / "complex.pt")


# --------------------------------------------------------------------------- ONNX graph order


def _residual_nodes(order: list[int]):
    from onnx import helper

    nodes = [helper.make_node("Gemm", ["x", "fc0.weight", "fc0.bias"], ["h0"], name="fc0", transB=1),
             helper.make_node("Add", ["h0", "h2"], ["s"], name="sum"),
             helper.make_node("Gemm", ["s", "fc1.weight", "fc1.bias"], ["h2"], name="fc1", transB=1),
             helper.make_node("Gemm", ["h2", "fc2.weight", "fc2.bias"], ["y"], name="fc2", transB=1)]
    return [nodes[i] for i in order]


def _residual_weights():
    rng = np.random.default_rng(2)
    return {"fc0.weight": float32(rng, 6, 8), "fc0.bias": float32(rng, 6), "fc1.weight": float32(rng, 6, 6),
            "fc1.bias": float32(rng, 6), "fc2.weight": float32(rng, 3, 6), "fc2.bias": float32(rng, 3)}


def test_cyclic_onnx_graph_is_refused_naming_the_node(tmp_path):
    """``sum`` adds ``h2``, which ``fc1`` computes from ``sum``: a cycle, not a residual MLP."""
    pytest.importorskip("onnx")
    path = save_onnx(tmp_path / "cycle.onnx", _residual_nodes([0, 1, 2, 3]), _residual_weights(), [1, 8], "y")
    with pytest.raises(ModelError, match=r"node 'sum' \(Add\) reads 'h2' before the node that computes it: the graph "
                                         r"is not topologically sorted or has a cycle; re-export it, or sort"):
        load_weights(path)


def test_unsorted_onnx_graph_is_refused_and_its_sorted_twin_read(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    rng = np.random.default_rng(3)
    kernels, biases = [float32(rng, 8, 6), float32(rng, 6, 3)], [float32(rng, 6), float32(rng, 3)]
    sorted_path = onnx_mlp(tmp_path / "sorted.onnx", kernels, biases)
    model = onnx.load(str(sorted_path))
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    onnx.save(model, str(tmp_path / "reversed.onnx"))
    with pytest.raises(ModelError, match=r"node 'h1' \(Gemm\) reads 'r0' before the node that computes it"):
        load_weights(tmp_path / "reversed.onnx")
    weights = load_weights(sorted_path)
    np.testing.assert_array_equal(weights.kernels[1], kernels[1])
    no_bias = save_onnx(tmp_path / "optional.onnx", [helper.make_node("Gemm", ["x", "w", ""], ["y"])],
                        {"w": kernels[0]}, [1, 8], "y")  # an omitted optional input is no dangling name
    np.testing.assert_array_equal(load_weights(no_bias).kernels[0], kernels[0])


def test_onnx_node_reading_a_name_nothing_provides_is_one_line(tmp_path):
    pytest.importorskip("onnx")
    from onnx import helper

    path = save_onnx(tmp_path / "dangling.onnx", [helper.make_node("Gemm", ["x", "w", "ghost"], ["y"], name="fc")],
                     {"w": np.ones((4, 2), np.float32)}, [1, 4], "y")
    with pytest.raises(ModelError, match=r"node 'fc' \(Gemm\) reads 'ghost', which no graph input, initialiser or "
                                         "node provides"):
        load_weights(path)


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "link.bin"])
def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(bytes(32))
    (folder / "link.bin").symlink_to(tmp_path / "secret.bin")
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 2], data_location=TensorProto.EXTERNAL)
    weight.external_data.add(key="location", value=location)
    save_onnx(folder / "m.onnx", [helper.make_node("Gemm", ["x", "w"], ["y"])], {"w": weight}, [1, 4], "y")
    with pytest.raises(ModelError, match=rf"tensor 'w' keeps its data in '{location}', outside the model's folder"):
        load_weights(folder / "m.onnx")


# --------------------------------------------------------------------------- paths


def test_symbolic_link_loop_is_named_as_such(tmp_path):
    (tmp_path / "a.npz").symlink_to(tmp_path / "b.npz")
    (tmp_path / "b.npz").symlink_to(tmp_path / "a.npz")
    with pytest.raises(ModelError, match=r"a.npz is a symbolic link loop; point it at a model file"):
        load_weights(tmp_path / "a.npz")
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "gone.npz")
    with pytest.raises(ModelError, match=r"dangling.npz is a symbolic link to .*gone.npz', which does not exist"):
        load_weights(tmp_path / "dangling.npz")


@pytest.mark.parametrize("path", ["/proc/self/mem", "/dev/zero", "/proc/self/status"])
def test_device_or_proc_file_is_not_a_model_file(path):
    if not Path(path).exists():
        pytest.skip(f"no {path}")
    with pytest.raises(ModelError, match=r"is not a regular file \(a device, pipe or /proc file\); pass a model file"):
        load_weights(path)


def test_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(ModelError, match=r"model.npz is not a regular file \(a device, pipe or /proc file\)"):
        load_weights(fifo)


def test_folder_and_empty_file_are_one_line_each(tmp_path):
    with pytest.raises(ModelError, match="is a folder without a config.json"):
        load_weights(tmp_path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty.onnx is empty; re-save the model"):
        load_weights(tmp_path / "empty.onnx")


def _permission_message(path: Path) -> str:
    """load_weights' message for ``path`` as a user who may not read it (root drops to nobody
    in a forked child, since root reads any file)."""
    if os.geteuid() != 0:
        with pytest.raises(ModelError) as info:
            load_weights(path)
        return str(info.value)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                load_weights(path)
                message = "loaded"
            except ModelError as exc:
                message = str(exc)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        message = f.read()
    os.waitpid(pid, 0)
    return message


def test_unreadable_file_is_one_line(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="nn-clustering-perm-"))
    try:
        folder.chmod(0o755)
        path = folder / "net.npz"
        np.savez(path, np.ones((3, 2)), np.ones((2, 2)))
        path.chmod(0)
        assert _permission_message(path) == f"{path} cannot be read (permission denied); check its permissions"
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
