"""A GPT-2-shaped transformer written as an ONNX graph with ``onnx.helper``, random weights, no
PyTorch: token and position embeddings, pre-LayerNorm blocks of causal multi-head attention
(fused ``c_attn``, ``c_proj``) and a GELU MLP (``c_fc``, ``c_proj``), a final LayerNorm and the
tied unembedding. Inputs are token ids (batch, tokens), both dimensions free; the initialisers
carry Hugging Face's parameter names (``transformer.h.{i}.mlp.c_fc.weight``, ...).

GPT-2 small: ``write_gpt2(path, d=768, layers=12, heads=12, d_mlp=3072, vocab=50257, context=1024)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_gpt2(path: Path, d: int = 768, layers: int = 12, heads: int = 12, d_mlp: int = 3072, vocab: int = 50257,
               context: int = 1024, seed: int = 0) -> Path:
    """Write the model to ``path`` (weights inside the file); returns ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits: list = []
    nodes: list = []

    def w(name: str, *shape: int, scale: float = 0.02) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape, dtype=np.float32) * scale), name))
        return name

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def layer_norm(x: str, name: str) -> str:
        gamma = const(f"{name}.weight", np.ones(d, np.float32))
        beta = const(f"{name}.bias", np.zeros(d, np.float32))
        return node("LayerNormalization", [x, gamma, beta], f"{name}.out", axis=-1, epsilon=1e-5)

    def linear(x: str, name: str, n_in: int, n_out: int) -> str:
        y = node("MatMul", [x, w(f"{name}.weight", n_in, n_out)], f"{name}.matmul")
        return node("Add", [y, const(f"{name}.bias", np.zeros(n_out, np.float32))], f"{name}.out")

    head = d // heads
    const("shape.heads", np.array([0, 0, heads, head], np.int64))
    const("shape.merge", np.array([0, 0, d], np.int64))
    const("scale", np.array(1 / np.sqrt(head), np.float32))
    const("axes.0", np.array([0], np.int64))
    const("split.qkv", np.array([d, d, d], np.int64))
    const("mask.negative", np.array(-1e9, np.float32))
    # positions 0..T-1 and the causal mask from the input's length
    node("Shape", ["input_ids"], "ids.shape")
    const("index.1", np.array([1], np.int64))
    node("Gather", ["ids.shape", "index.1"], "ids.length", axis=0)
    node("Squeeze", ["ids.length", "axes.0"], "length")
    const("zero", np.array(0, np.int64))
    const("one", np.array(1, np.int64))
    node("Range", ["zero", "length", "one"], "positions")
    node("Unsqueeze", ["positions", "axes.0"], "positions.row")
    const("axes.1", np.array([1], np.int64))
    node("Unsqueeze", ["positions", "axes.1"], "positions.column")
    node("Greater", ["positions.row", "positions.column"], "future")  # (T, T): key after query
    x = node("Add", [node("Gather", [w("transformer.wte.weight", vocab, d), "input_ids"], "tokens", axis=0),
                     node("Gather", [w("transformer.wpe.weight", context, d, scale=0.01), "positions"], "pos",
                          axis=0)], "embedded")
    for i in range(layers):
        h = f"transformer.h.{i}"
        qkv = linear(layer_norm(x, f"{h}.ln_1"), f"{h}.attn.c_attn", d, 3 * d)
        nodes.append(helper.make_node("Split", [qkv, "split.qkv"], [f"{h}.q", f"{h}.k", f"{h}.v"], axis=-1,
                                      name=f"{h}.split"))
        q, k, v = (node("Transpose", [node("Reshape", [f"{h}.{p}", "shape.heads"], f"{h}.{p}.heads")],
                        f"{h}.{p}.t", perm=[0, 2, 1, 3]) for p in "qkv")
        kt = node("Transpose", [k], f"{h}.kt", perm=[0, 1, 3, 2])
        scores = node("Mul", [node("MatMul", [q, kt], f"{h}.qk"), "scale"], f"{h}.scores")
        masked = node("Where", ["future", "mask.negative", scores], f"{h}.masked")
        probs = node("Softmax", [masked], f"{h}.probs", axis=-1)
        mixed = node("MatMul", [probs, v], f"{h}.mixed")
        merged = node("Reshape", [node("Transpose", [mixed], f"{h}.mixed.t", perm=[0, 2, 1, 3]), "shape.merge"],
                      f"{h}.merged")
        x = node("Add", [x, linear(merged, f"{h}.attn.c_proj", d, d)], f"{h}.residual.attn")
        up = linear(layer_norm(x, f"{h}.ln_2"), f"{h}.mlp.c_fc", d, d_mlp)
        act = node("Gelu", [up], f"{h}.mlp.act", approximate="tanh")
        x = node("Add", [x, linear(act, f"{h}.mlp.c_proj", d_mlp, d)], f"{h}.residual.mlp")
    final = layer_norm(x, "transformer.ln_f")
    node("Transpose", ["transformer.wte.weight"], "unembed", perm=[1, 0])
    node("MatMul", [final, "unembed"], "logits")
    graph = helper.make_graph(
        nodes, "gpt2", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "tokens", vocab])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.save(model, str(path))
    return Path(path)
