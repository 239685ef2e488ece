"""Transformers from Hugging Face checkpoint folders (method.md §3.5), against oracles written
by tests/export_transformer_fixtures.py from the models' own modules (tiny random GPT-2,
GPT-NeoX, LLaMA with grouped-query attention, BERT and ViT; tests/fixtures/transformers/):
the per-head split of fused projections, the norms folded into the reading rows, the edges
joining the stream, the value units and the MLP units, and a sharded checkpoint. Read without
PyTorch or transformers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from graphs import graph_of, same_graph

from nn_clustering import SpectralNCut, load_weights
from nn_clustering.core.graph import graph_inputs
from nn_clustering.errors import ModelError

FIXTURES = Path(__file__).parent / "fixtures" / "transformers"
FAMILIES = ("gpt2", "gpt_neox", "llama", "bert", "vit")


def oracle(family: str) -> tuple[dict[str, np.ndarray], dict]:
    data = np.load(FIXTURES / f"{family}.oracle.npz")
    return {k: data[k] for k in data.files if k != "meta"}, json.loads(str(data["meta"]))


def norms_before(family: str, o: dict, meta: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per block, the scales of the norms before its attention and its MLP read the stream (a
    post-norm model's: the norm after the previous sum, the embeddings' for the first block)."""
    if meta["pre_ln"]:
        return [(o[f"b{b}.ln_attn"], o[f"b{b}.ln_mlp"]) for b in range(meta["n_layers"])]
    from safetensors.numpy import load_file

    tensors = load_file(str(FIXTURES / family / "model.safetensors"))
    embedding = next(v for k, v in tensors.items() if k.endswith("embeddings.LayerNorm.weight"))
    before, out = embedding.astype(np.float64), []
    for b in range(meta["n_layers"]):
        out.append((before, o[f"b{b}.ln_attn_out"]))
        before = o[f"b{b}.ln_mlp_out"]
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_projections_match_the_models_own_modules(family):
    """Kernels in order: per block value (norm folded into rows), output, [gate,] up (norm
    folded), down; each against the oracle computed by running the model's modules."""
    o, meta = oracle(family)
    weights = load_weights(FIXTURES / family)
    expected = []
    for b, (n_attn, n_mlp) in enumerate(norms_before(family, o, meta)):
        expected += [o[f"b{b}.v"] * n_attn[:, None], o[f"b{b}.o"]]
        if meta["gated_mlp"]:
            expected.append(o[f"b{b}.mlp_gate"] * n_mlp[:, None])
        expected += [o[f"b{b}.mlp_in"] * n_mlp[:, None], o[f"b{b}.mlp_out"]]
    assert len(weights.kernels) == len(expected)
    for kernel, want in zip(weights.kernels, expected, strict=True):
        np.testing.assert_allclose(kernel, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_groups_are_the_stream_value_units_and_mlp_units_by_module_path(family):
    o, meta = oracle(family)
    weights = load_weights(FIXTURES / family)
    names, sizes = weights.wiring.names, weights.wiring.sizes
    per_block = 3 if meta["gated_mlp"] else 2
    assert names[0] == "stream" and sizes[0] == meta["d_model"]
    assert len(names) == 1 + per_block * meta["n_layers"]
    assert sizes[1] == meta["n_kv_heads"] * meta["head_dim"] and sizes[-1] == meta["d_mlp"]
    assert names[1].startswith(meta["paths"]["b0.v"]) and names[-1].startswith(
        meta["paths"][f"b{meta['n_layers'] - 1}.mlp_in"].rsplit(".", 1)[0])


def test_grouped_query_heads_share_their_value_units_by_hand():
    """LLaMA with 4 query heads on 2 key/value heads: the value -> stream block of block 0 is
    |o| with the rows of query heads 2k and 2k + 1 added onto value head k's units."""
    o, meta = oracle("llama")
    weights = load_weights(FIXTURES / "llama")
    kernels, builder = graph_inputs(weights)
    graph = builder(kernels)
    hd, repeat = meta["head_dim"], meta["n_heads"] // meta["n_kv_heads"]
    by_hand = np.zeros((meta["n_kv_heads"] * hd, meta["d_model"]))
    for h in range(meta["n_heads"]):
        kv = h // repeat
        by_hand[kv * hd:(kv + 1) * hd] += np.abs(o["b0.o"][h * hd:(h + 1) * hd])
    (block,) = [b for s, t, b in graph.edges if (s, t) == (1, 0)]
    np.testing.assert_allclose(block, by_hand, rtol=1e-5)


def test_a_sharded_checkpoint_equals_the_unsharded_one():
    one, sharded = load_weights(FIXTURES / "llama"), load_weights(FIXTURES / "llama_sharded")
    assert one.names == sharded.names and one.wiring == sharded.wiring
    for a, b in zip(one.kernels, sharded.kernels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_transformer_clusters_and_names_its_groups():
    fit = SpectralNCut(n_clusters=3, random_state=0).fit(FIXTURES / "gpt2")
    assert fit.layer_names_[:3] == ["stream", "transformer.h.0.attn.c_attn.v", "transformer.h.0.mlp.c_fc"]
    assert (fit.labels_ >= 0).all() and 0 < fit.ncut_ < 3


# --------------------------------------------------------------------------- bad checkpoints


def copy_of(tmp_path: Path, family: str) -> Path:
    return Path(shutil.copytree(FIXTURES / family, tmp_path / family))


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("case, message", [
    ("no_weights", "has no model.safetensors or model.safetensors.index.json"),
    ("family", "model_type 'mamba' is not read; supported: gpt2, gpt_neox, llama"),
    ("contradicts", "but the config says"),
    ("missing_in_shard", "is missing from shard"),
    ("escaping_shard", "not a .safetensors file of the folder itself"),
])
def test_bad_checkpoints_are_one_line(tmp_path, case, message):
    folder = copy_of(tmp_path, "llama_sharded" if "shard" in case else "gpt2")
    if case == "no_weights":
        (folder / "model.safetensors").unlink()
    elif case in ("family", "contradicts"):
        config = config_of(folder) | ({"model_type": "mamba"} if case == "family" else {"n_embd": 24})
        (folder / "config.json").write_text(json.dumps(config))
    else:  # the index moves one tensor to a shard that does not hold it, or outside the folder
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        name, shard = next(iter(index["weight_map"].items()))
        other = next(s for s in index["weight_map"].values() if s != shard)
        index["weight_map"][name] = other if case == "missing_in_shard" else "../x.safetensors"
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match=message) as e:
        load_weights(folder)
    assert "\n" not in str(e.value)


def test_float16_checkpoint_is_read_exactly(tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = copy_of(tmp_path, "gpt2")
    tensors = {k: v.astype(np.float16) for k, v in load_file(str(folder / "model.safetensors")).items()}
    save_file(tensors, str(folder / "model.safetensors"))
    weights = load_weights(folder)
    v = tensors["transformer.h.0.attn.c_attn.weight"].astype(np.float64)[:, 32:]
    ln = tensors["transformer.h.0.ln_1.weight"].astype(np.float64)
    np.testing.assert_array_equal(weights.kernels[0], v * ln[:, None])


def test_cluster_composition_counts_each_heads_value_dimensions_by_hand():
    from nn_clustering.experiments.composition import cluster_composition

    fit = SpectralNCut(n_clusters=3, random_state=0).fit(FIXTURES / "gpt2")
    rows = cluster_composition(fit.weights_, fit.labels_by_layer_)
    values = fit.labels_by_name_["transformer.h.1.attn.c_attn.v"]  # 4 heads of 4 value dimensions
    for h in range(4):
        for c in range(3):
            want = int(np.sum(values[4 * h:4 * h + 4] == c))
            got = [r.units for r in rows if (r.group, r.part, r.cluster) == ("transformer.h.1.attn.c_attn.v", f"head {h}", c)]
            assert got == ([want] if want else [])
    mlp = [r for r in rows if r.group == "transformer.h.0.mlp.c_fc"]
    assert sum(r.units for r in mlp) == 32 and {r.part for r in mlp} == {"units"}


def test_bfloat16_checkpoint_is_read_exactly(tmp_path):
    """A checkpoint saved in bfloat16 (numpy has no bfloat16: the bytes are written by hand)
    reads as the float32 values that bfloat16 holds exactly."""
    from make_fixture_models import bf16_exact, safetensors_bytes
    from safetensors.numpy import load_file

    folder = copy_of(tmp_path, "gpt2")
    rng = np.random.default_rng(22)
    entries, exact = {}, {}
    for name, value in load_file(str(folder / "model.safetensors")).items():
        exact[name], raw = bf16_exact(rng, *value.shape)
        entries[name] = ("BF16", list(value.shape), raw)
    (folder / "model.safetensors").write_bytes(safetensors_bytes(entries))
    weights = load_weights(folder)
    v = exact["transformer.h.0.attn.c_attn.weight"].astype(np.float64)[:, 32:]
    ln = exact["transformer.h.0.ln_1.weight"].astype(np.float64)
    np.testing.assert_array_equal(weights.kernels[0], v * ln[:, None])


@pytest.mark.parametrize("removed", ["attention", "output projection"])
def test_a_block_without_attention_is_its_residual_mlp_by_hand(tmp_path, removed):
    """A one-block GPT-2 whose attention is removed (all its weights zero, or only its output
    projection, which leaves the attention writing nothing into the stream): the graph is that
    of a residual MLP by hand, the stream's unit i joined to hidden unit j by
    |ln_2[i] W_fc[i, j]| + |W_proj[j, i]|, reading and writing on one edge; the value units
    have no edges to the stream."""
    from safetensors.numpy import load_file, save_file

    folder = copy_of(tmp_path, "gpt2")
    config = config_of(folder) | {"n_layer": 1}
    (folder / "config.json").write_text(json.dumps(config))
    tensors = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if ".h.1." not in k}
    for name in ("attn.c_attn", "attn.c_proj") if removed == "attention" else ("attn.c_proj",):
        tensors[f"transformer.h.0.{name}.weight"] = np.zeros_like(tensors[f"transformer.h.0.{name}.weight"])
    save_file(tensors, str(folder / "model.safetensors"))
    graph = graph_of(folder)
    d, m = config["n_embd"], config["n_inner"]
    fc, proj = (tensors[f"transformer.h.0.mlp.{n}.weight"].astype(np.float64) for n in ("c_fc", "c_proj"))
    ln = tensors["transformer.h.0.ln_2.weight"].astype(np.float64)
    by_hand = np.zeros((d + d + m, d + d + m))  # stream, value units, MLP units
    by_hand[:d, 2 * d:] = np.abs(ln[:, None] * fc) + np.abs(proj.T)
    if removed == "output projection":  # the value units still read the stream
        v = tensors["transformer.h.0.attn.c_attn.weight"].astype(np.float64)[:, 2 * d:]
        by_hand[:d, d:2 * d] = np.abs(tensors["transformer.h.0.ln_1.weight"].astype(np.float64)[:, None] * v)
    by_hand += by_hand.T
    assert graph.layer_sizes == (d, d, m)
    np.testing.assert_allclose(graph.adjacency.toarray(), by_hand, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------- ONNX exports

EXPORTS = [(family, exporter) for family in FAMILIES for exporter in ("legacy", "dynamo")]


@pytest.mark.parametrize(("family", "exporter"), EXPORTS)
def test_evaluating_the_onnx_export_reproduces_the_models_forward_pass(family, exporter):
    """The numpy evaluation the ONNX reader runs gives the model's own output (logits; BERT's
    hidden states) on the example input, as PyTorch computed it."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from nn_clustering.formats.onnx_transformer import evaluate_graph

    forward = np.load(FIXTURES / f"{family}.forward.npz")
    model = onnx.load(str(FIXTURES / f"{family}.{exporter}.onnx"))
    ev = evaluate_graph(model.graph, family, numpy_helper.to_array, forward["input"])
    np.testing.assert_allclose(ev.values[model.graph.output[0].name], forward["output"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("family", "exporter"), EXPORTS)
def test_checkpoint_folder_and_onnx_export_give_one_graph(family, exporter):
    """The same model from its checkpoint folder and from its ONNX export: the same groups
    (named by module path: the checkpoint's, or for ViT, whose modules transformers renames on
    loading, the in-memory ones the exporter saw), the same edge weights and the same n-cut."""
    pytest.importorskip("onnx")
    _, meta = oracle(family)
    folder, export = load_weights(FIXTURES / family), load_weights(FIXTURES / f"{family}.{exporter}.onnx")
    paths = meta["module_paths"] if family == "vit" else meta["paths"]
    assert export.wiring.names[1].startswith(paths["b0.v"]) and export.wiring.names[2].startswith(
        paths["b0.mlp_in"].rsplit(".", 1)[0])
    if family != "vit":
        assert export.wiring.names == folder.wiring.names
    assert export.wiring.sizes == folder.wiring.sizes and export.wiring.feeds == folder.wiring.feeds
    same_graph(graph_of(export), graph_of(folder), rtol=1e-6)
    fits = [SpectralNCut(n_clusters=3, random_state=0).fit(w) for w in (folder, export)]
    assert fits[0].ncut_ == pytest.approx(fits[1].ncut_, rel=1e-9)
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)


def one_block_onnx(path: Path, rng: np.random.Generator, extra=(), value_path=None) -> tuple[Path, list]:
    """A pre-LN block written node by node (d_model 4, 2 heads of 2, MLP 6, 3 positions):
    separate q/k/v projections, heads split by Reshape + Transpose, softmax attention, heads
    merged back, output projection, ReLU MLP; ``extra`` nodes are added, ``value_path`` nodes
    (reading 'v', writing 'v2') put between the value projection and the heads. Returns the file
    and (Wv, Wo, Wu, Wd, ln_1 gain, ln_2 gain), float32 values as float64."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    d, m, t = 4, 6, 3
    mats = {n: rng.normal(size=s).astype(np.float32) for n, s in
            [("Wq", (d, d)), ("Wk", (d, d)), ("Wv", (d, d)), ("Wo", (d, d)), ("Wu", (d, m)), ("Wd", (m, d)),
             ("g1", (d,)), ("b1", (d,)), ("g2", (d,)), ("b2", (d,))]}
    consts = {"heads": np.array([1, t, 2, 2], np.int64), "merged": np.array([1, t, d], np.int64)}
    node = helper.make_node
    v_in = "v" if value_path is None else "v2"
    nodes = [node("LayerNormalization", ["x", "g1", "b1"], ["n1"], axis=-1),
             *[node("MatMul", ["n1", f"W{c}"], [c]) for c in "qkv"], *(value_path or []),
             *[node("Reshape", [c, "heads"], [f"{c}r"]) for c in "qk"], node("Reshape", [v_in, "heads"], ["vr"]),
             *[node("Transpose", [f"{c}r"], [f"{c}h"], perm=[0, 2, 1, 3]) for c in "qkv"],
             node("Transpose", ["kh"], ["kt"], perm=[0, 1, 3, 2]), node("MatMul", ["qh", "kt"], ["s"]),
             node("Softmax", ["s"], ["p"], axis=-1), node("MatMul", ["p", "vh"], ["a"]),
             node("Transpose", ["a"], ["at"], perm=[0, 2, 1, 3]), node("Reshape", ["at", "merged"], ["am"]),
             node("MatMul", ["am", "Wo"], ["o"]), node("Add", ["x", "o"], ["r1"]),
             node("LayerNormalization", ["r1", "g2", "b2"], ["n2"], axis=-1), node("MatMul", ["n2", "Wu"], ["u"]),
             node("Relu", ["u"], ["h"]), node("MatMul", ["h", "Wd"], ["dn"]), node("Add", ["r1", "dn"], ["y"]),
             *extra]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, t, d])],
                              [numpy_helper.from_array(a, n) for n, a in {**mats, **consts}.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, [mats[n].astype(np.float64) for n in ("Wv", "Wo", "Wu", "Wd", "g1", "g2")]


def test_a_block_written_by_hand_in_onnx_is_read_by_the_rule():
    """The hand-written block's graph is the rule of method.md §3.5 applied to its matrices by
    hand: value units read the stream with |ln_1 gain x Wv|, write it with |Wo|; the MLP reads
    with |ln_2 gain x Wu| and writes with |Wd|; queries and keys make no edges."""
    import tempfile

    from nn_clustering.formats.transformer import Attention, Block, Mlp, transformer_weights

    with tempfile.TemporaryDirectory() as tmp:
        path, (wv, wo, wu, wd, g1, g2) = one_block_onnx(Path(tmp) / "block.onnx", np.random.default_rng(3))
        read = load_weights(path)
    d, m = 4, 6
    by_hand = np.zeros((d + d + m, d + d + m))
    by_hand[:d, d:2 * d] = np.abs(g1[:, None] * wv) + np.abs(wo.T)
    by_hand[:d, 2 * d:] = np.abs(g2[:, None] * wu) + np.abs(wd.T)
    by_hand += by_hand.T
    np.testing.assert_allclose(graph_of(read).adjacency.toarray(), by_hand, rtol=1e-12)
    rule = transformer_weights([Block(Attention(wv, wo, 2, 2, "v", "o"), Mlp(wu, wd, "u", "d"), g1, g2)], d, "hand")
    assert read.wiring.feeds == rule.wiring.feeds


@pytest.mark.parametrize(("case", "message"), [
    ("memory", "over the"),
    ("operator", "(Hardmax) is not an operator of the transformers this reader follows"),
    ("values mixed", "lies between a value projection and the attention or output projection and changes values"),
    ("convolution after", "(Conv) is a weighted layer between a transformer's blocks"),
])
def test_bad_transformer_onnx_files_are_one_line(tmp_path, case, message):
    from onnx import helper

    extra, value_path = [], None
    if case == "memory":  # a ConstantOfShape of 10^11 elements, refused before it is allocated
        extra = [helper.make_node("Constant", [], ["big"], value_ints=[100000, 100000, 10]),
                 helper.make_node("ConstantOfShape", ["big"], ["bomb"])]
    elif case == "operator":
        extra = [helper.make_node("Hardmax", ["n1"], ["hm"])]
    elif case == "convolution after":  # the block's output read by a 1 x 1 convolution
        from onnx import numpy_helper

        extra = [helper.make_node("Constant", [], ["shape4"], value_ints=[1, 4, 3, 1]),
                 helper.make_node("Reshape", ["y", "shape4"], ["y4"]),
                 helper.make_node("Constant", [], ["kernel"], value=numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32))),
                 helper.make_node("Conv", ["y4", "kernel"], ["conv"])]
    else:  # each position's values plus their mean over positions: not a copy of the projection
        value_path = [helper.make_node("ReduceMean", ["v"], ["vm"], axes=[1]), helper.make_node("Add", ["v", "vm"], ["v2"])]
    path, _ = one_block_onnx(tmp_path / "bad.onnx", np.random.default_rng(0), extra, value_path)
    with pytest.raises(ModelError, match=re.escape(message)) as e:
        load_weights(path)
    assert "\n" not in str(e.value)


def test_composition_shares_and_the_cli_files_by_hand(tmp_path):
    """Each cell of the composition heatmap is the share of a part's units (a head's value
    dimensions, an MLP, the stream) in a cluster, counted by hand from the labels; the CLI's
    --composition writes the table (the rows of cluster_composition) and the figure."""
    import pandas as pd

    from nn_clustering.cli import main
    from nn_clustering.experiments.composition import (
        CompositionRow,
        cluster_composition,
        composition_shares,
    )

    fit = SpectralNCut(n_clusters=3, random_state=0).fit(FIXTURES / "gpt2")
    shares, labels, blocks = composition_shares(fit.weights_, fit.labels_by_layer_, 3)
    values = fit.labels_by_name_["transformer.h.1.attn.c_attn.v"]
    column = labels.index("1:h2")
    assert blocks == [1, 6] and labels[0] == "stream" and labels[5] == "0:c_fc"
    for c in range(3):
        assert shares[c, column] == np.mean(values[8:12] == c)
        assert shares[c, 0] == np.mean(fit.labels_by_name_["stream"] == c)
    np.testing.assert_allclose(shares.sum(axis=0), 1.0)
    stem = tmp_path / "out" / "gpt2"
    assert main(["cluster", str(FIXTURES / "gpt2"), "--k", "3", "--shuffles", "4", "--random-state", "0",
                 "--composition", str(stem), "--quiet"]) == 0
    table = pd.read_csv(stem.with_suffix(".csv"))
    assert list(table.columns) == CompositionRow.columns()
    want = [r.as_dict() for r in cluster_composition(fit.weights_, fit.labels_by_layer_)]
    assert table.to_dict("records") == want
    assert stem.with_suffix(".png").stat().st_size > 0 and stem.with_suffix(".svg").stat().st_size > 0
