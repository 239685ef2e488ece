"""The ONNX reader's operator table (formats/onnx_ops.py): one handler per operator, each
documented; the handlers' readings and refusals, one small graph each."""

from __future__ import annotations

import numpy as np
import pytest
from model_files import float32, save_onnx

from nn_clustering import load_weights
from nn_clustering.errors import ModelError
from nn_clustering.formats import onnx_ops

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402


def test_the_tables_name_every_supported_operator_and_each_handler_is_documented():
    supported, families = onnx_ops.SUPPORTED, onnx_ops.PASS_THROUGH | onnx_ops.GLOBAL_POOLS | onnx_ops.REDUCTIONS
    assert supported == sorted({*onnx_ops.OPERATORS, *onnx_ops.CONSTANT_FOLDS})
    assert families <= set(onnx_ops.OPERATORS)
    for handler in {*onnx_ops.OPERATORS.values(), *onnx_ops.CONSTANT_FOLDS.values()}:
        doc = handler.__doc__ or ""
        assert "Parameters\n    ----------" in doc and "Returns\n    -------" in doc, handler.__name__


def test_a_new_operator_is_one_table_entry(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    weights = {"a.weight": float32(rng, 4, 5), "b.weight": float32(rng, 3, 4)}
    nodes = [helper.make_node("Gemm", ["x", "a.weight"], ["h"], transB=1),
             helper.make_node("Acosh", ["h"], ["e"], name="erf"),
             helper.make_node("Gemm", ["e", "b.weight"], ["y"], transB=1)]
    path = save_onnx(tmp_path / "acosh.onnx", nodes, weights, [1, 5], "y")
    with pytest.raises(ModelError, match=r"node 'erf' uses operator Acosh, which the graph builder does not support"):
        load_weights(path)
    monkeypatch.setitem(onnx_ops.OPERATORS, "Acosh", onnx_ops.OPERATORS["Relu"])
    assert load_weights(path).names == ["a", "b"]


def test_matmul_add_and_gemm_attributes_give_the_layers_weights(tmp_path):
    rng = np.random.default_rng(1)
    w0, b0, w1, b1 = float32(rng, 5, 4), float32(rng, 4), float32(rng, 4, 3), float32(rng, 3)
    nodes = [helper.make_node("MatMul", ["x", "fc0.weight"], ["h"]),
             helper.make_node("Add", ["h", "fc0.bias"], ["hb"]), helper.make_node("Tanh", ["hb"], ["t"]),
             helper.make_node("Gemm", ["t", "fc1.weight", "fc1.bias"], ["y"], alpha=0.5, beta=2.0)]
    path = save_onnx(tmp_path / "mm.onnx", nodes, {"fc0.weight": w0, "fc0.bias": b0, "fc1.weight": w1,
                                                   "fc1.bias": b1}, [1, 5], "y")
    weights = load_weights(path)
    assert weights.names == ["fc0", "fc1"]
    np.testing.assert_array_equal(weights.kernels[0], w0.astype(np.float64))
    np.testing.assert_array_equal(weights.biases[0], b0.astype(np.float64))
    np.testing.assert_array_equal(weights.kernels[1], w1.astype(np.float64) * 0.5)
    np.testing.assert_array_equal(weights.biases[1], b1.astype(np.float64) * 2.0)


def _refused(tmp_path, nodes, weights, shape=(1, 5)):
    with pytest.raises(ModelError) as e:
        load_weights(save_onnx(tmp_path / "m.onnx", nodes, weights, list(shape), "y"))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_handlers_refuse_what_they_cannot_follow_in_one_line(tmp_path):
    rng = np.random.default_rng(2)
    w, k = {"w": float32(rng, 4, 5)}, {"k": float32(rng, 2, 1, 3, 3)}
    gemm = helper.make_node("Gemm", ["x", "w"], ["h"], transB=1)
    assert "node 'g' (Gemm) transposes its input (transA=1)" in _refused(
        tmp_path, [helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transA=1)], w)
    assert "node 'mm' (MatMul) must multiply an activation by a weight initialiser" in _refused(
        tmp_path, [helper.make_node("MatMul", ["w", "x"], ["y"], name="mm")], w)
    assert "node 'mm' (MatMul) must multiply an activation by a weight initialiser" in _refused(
        tmp_path, [helper.make_node("MatMul", ["x"], ["y"], name="mm")], w)
    assert "layer 'k' has 2 output channels, which do not split into 3 groups" in _refused(
        tmp_path, [helper.make_node("Conv", ["x", "k"], ["y"], name="c", group=3)], k, (1, 3, 6, 6))
    assert "layer 'k' has 2 outputs but a bias of shape (5,)" in _refused(
        tmp_path, [helper.make_node("Conv", ["x", "k", "b"], ["y"], name="c")], k | {"b": np.ones(5)}, (1, 1, 6, 6))
    recurrent = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
                 helper.make_node("LSTM", ["t", "w", "w"], ["y"], name="lstm", hidden_size=4)]
    assert "node 'lstm' (LSTM) is recurrent" in _refused(tmp_path, recurrent, w)
    assert "node 'm' (Mul) multiplies by a constant of shape (3,), which is not one factor per unit" in _refused(
        tmp_path, [helper.make_node("Mul", ["x", "c3"], ["y"], name="m")], {"c3": np.ones(3)})
    assert "node 'cat' (Concat) joins along axis 2" in _refused(
        tmp_path, [helper.make_node("Conv", ["x", "k"], ["h"]),
                   helper.make_node("Concat", ["h", "h"], ["y"], name="cat", axis=2)], k, (1, 1, 6, 6))
    assert "node 'bn' (BatchNormalization) is in training mode" in _refused(
        tmp_path, [gemm, helper.make_node("BatchNormalization", ["h", "s", "b", "m", "v"], ["y"], name="bn",
                                          training_mode=1)], w | {n: np.ones(4) for n in "sbmv"})
    assert "node 'r' (Relu) reads no tensor computed from the input" in _refused(
        tmp_path, [gemm, helper.make_node("Relu", ["w"], ["y"], name="r")], w)
    assert "node 'c' (Constant) holds no tensor value" in _refused(
        tmp_path, [helper.make_node("Constant", [], ["c0"], name="c", value_float=1.0), gemm,
                   helper.make_node("Relu", ["h"], ["y"])], w)


def test_constant_node_weights_and_keepdims_reduction(tmp_path):
    rng = np.random.default_rng(3)
    k0, k1, fc = float32(rng, 3, 1, 3, 3), float32(rng, 2, 3, 3, 3), float32(rng, 4, 2)
    nodes = [helper.make_node("Constant", [], ["k0"], value=numpy_helper.from_array(k0, "k0")),
             helper.make_node("Conv", ["x", "k0"], ["c0"], name="conv0", pads=[1] * 4),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "k1"], ["c1"], name="conv1", pads=[1] * 4),
             helper.make_node("ReduceMax", ["c1"], ["m"], axes=[2, 3], keepdims=1),
             helper.make_node("Flatten", ["m"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    weights = load_weights(save_onnx(tmp_path / "cnn.onnx", nodes, {"k1": k1, "fc": fc}, [1, 1, 6, 6], "y"))
    assert weights.names == ["k0", "k1", "fc"]  # named by their weights, Constant or initialiser
    np.testing.assert_array_equal(weights.kernels[0], k0.transpose(2, 3, 1, 0).astype(np.float64))
    np.testing.assert_array_equal(weights.kernels[2], fc.T.astype(np.float64))
