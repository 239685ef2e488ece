"""Networks exported by PyTorch itself (tests/fixtures/torch/, written by
tests/export_torch_fixtures.py): every net gives the same graph through the legacy and the
dynamo exporter, named by its module paths, and the MLP the same graph from its state_dict and
by hand. Read without PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from graphs import graph_of

from nn_clustering import NetworkWeights, SpectralNCut, load_weights

pytest.importorskip("onnx")
FIXTURES = Path(__file__).parent / "fixtures" / "torch"
NAMES = {
    "mbconv": ["stem.0", "depthwise.0", "se_reduce", "se_expand", "project.0", "head"],
    "convnext_block": ["stem", "dw", "fc1", "fc2", "head"],
    "shuffle_unit": ["stem", "branch.0", "branch.2", "head"],
    "zero_init_block": ["stem.0", "conv1", "conv2", "head"],
    "dense_layer": ["stem", "conv", "head"],
    "layernorm_mlp": ["0", "3", "6"],
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_both_exporters_give_one_graph_named_by_module_paths(name):
    legacy, dynamo = (load_weights(FIXTURES / f"{name}.{exporter}.onnx") for exporter in ("legacy", "dynamo"))
    assert legacy.names == dynamo.names == NAMES[name]
    a, b = graph_of(legacy), graph_of(dynamo)
    assert a.layer_sizes == b.layer_sizes
    np.testing.assert_allclose(a.adjacency.toarray(), b.adjacency.toarray(), rtol=1e-5)


def test_layernorm_mlp_state_dict_and_exports_agree_with_the_hand_computation():
    from safetensors.numpy import load_file

    state = {k: v.astype(np.float64) for k, v in load_file(str(FIXTURES / "layernorm_mlp.safetensors")).items()}
    by_hand = [state["0.weight"].T, state["3.weight"].T * state["1.weight"][:, None],
               state["6.weight"].T * state["4.weight"][:, None]]
    expected = graph_of(NetworkWeights.from_arrays(by_hand)).adjacency.toarray()
    for path in ("layernorm_mlp.safetensors", "layernorm_mlp.legacy.onnx", "layernorm_mlp.dynamo.onnx"):
        np.testing.assert_allclose(graph_of(load_weights(FIXTURES / path)).adjacency.toarray(), expected, rtol=1e-6)


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_zero_initialised_block_clusters_with_its_last_conv_isolated(exporter):
    fit = SpectralNCut(n_clusters=2, random_state=0).fit(FIXTURES / f"zero_init_block.{exporter}.onnx")
    assert (fit.labels_by_name_["conv2"] == -1).all()
    assert (fit.labels_by_name_["conv1"] >= 0).all() and (fit.labels_by_name_["head"] >= 0).all()
