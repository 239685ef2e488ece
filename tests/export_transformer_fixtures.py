"""Writes the tiny Hugging Face transformer fixtures of tests/fixtures/transformers/ (random
weights, seeded, a few kilobytes each; built from config objects, nothing is downloaded):

* ``<family>/``: ``save_pretrained(..., safe_serialization=True)``, i.e. config.json plus
  model.safetensors, a checkpoint folder as users have them, for the families gpt2 (GPT2LMHeadModel),
  gpt_neox (Pythia-style GPTNeoXForCausalLM, parallel residual), llama (LlamaForCausalLM with
  grouped-query attention), bert (BertModel, post-LN) and vit (ViTForImageClassification);
* ``llama_sharded/``: the llama model again, in several shards with model.safetensors.index.json;
* ``<family>.oracle.npz``: for every block ``b`` the float64 matrices, in (in, out) layout
  (``x @ W``), of the query/key/value projections (output columns head-major), the attention
  output projection and the MLP, plus the norm gains and a JSON ``meta`` entry (dimensions, flags,
  and the checkpoint module path of each entry). They are computed by running the model's own
  modules on an identity batch (``lin(eye) - lin(zeros)``) and splitting fused outputs with the
  same view/split calls as the model's forward, then checked here against real forward passes;
* ``<family>.forward.npz``: the example input and the model's output on it;
* ``<family>.legacy.onnx`` / ``<family>.dynamo.onnx``: the model through the TorchScript
  (opset 17) and the dynamo ONNX exporters, where they succeed (the dynamo files without their
  per-node stack traces; if the folder still passes 1.5 MB, the dynamo files are dropped);
* ``README.md``: what the files are, with the library versions used.

Run it with a Python that has torch, transformers, safetensors and numpy (onnx and onnxscript
for the exports); it is not imported by the test suite:

    /tmp/torchenv/bin/python tests/export_transformer_fixtures.py [--out tests/fixtures/transformers] [--forwards]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors import safe_open
from torch import nn
from transformers import (
    AttentionInterface,
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

OUT = Path(__file__).parent / "fixtures" / "transformers"
BUDGET_BYTES = 1_500_000
SEQ_LEN = 8
FAMILIES = ("gpt2", "gpt_neox", "llama", "bert", "vit")

# ---------------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------------


def randomise(model: nn.Module) -> nn.Module:
    """Random gains and biases for every LayerNorm/RMSNorm (uniform(0.5, 2) and normal), and
    small random biases for every other layer (Hugging Face initialises them to zero), so that
    a reader mixing up gains, biases or fused bias slices gets caught."""
    for module in model.modules():
        is_norm = isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if is_norm:
            nn.init.uniform_(weight, 0.5, 2.0)
            if isinstance(bias, nn.Parameter):
                nn.init.normal_(bias)
        elif isinstance(bias, nn.Parameter):
            nn.init.normal_(bias, std=0.1)
    return model


def build(family: str) -> nn.Module:
    torch.manual_seed(0)
    if family == "gpt2":
        config = GPT2Config(
            n_layer=2, n_embd=16, n_head=4, n_inner=32, vocab_size=50, n_positions=32,
            bos_token_id=49, eos_token_id=49,  # the default 50256 is outside the tiny vocabulary
        )
        model = GPT2LMHeadModel(config)
    elif family == "gpt_neox":
        config = GPTNeoXConfig(
            num_hidden_layers=2, hidden_size=16, num_attention_heads=4, intermediate_size=32,
            vocab_size=50, max_position_embeddings=32, use_parallel_residual=True,
        )
        model = GPTNeoXForCausalLM(config)
    elif family == "llama":
        config = LlamaConfig(
            num_hidden_layers=2, hidden_size=16, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=32, vocab_size=50, max_position_embeddings=32, tie_word_embeddings=False,
        )
        model = LlamaForCausalLM(config)
    elif family == "bert":
        config = BertConfig(
            num_hidden_layers=2, hidden_size=16, num_attention_heads=4, intermediate_size=32,
            vocab_size=50, max_position_embeddings=32,
        )
        model = BertModel(config)
    elif family == "vit":
        config = ViTConfig(
            image_size=8, patch_size=4, num_channels=3, num_hidden_layers=2, hidden_size=16,
            num_attention_heads=4, intermediate_size=32, num_labels=3,
        )
        model = ViTForImageClassification(config)
    else:
        raise ValueError(family)
    return randomise(model).eval()


def example_input(family: str, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    if family == "vit":
        return torch.randn(1, 3, 8, 8, generator=generator, dtype=dtype)
    return torch.randint(0, 50, (1, SEQ_LEN), generator=generator)


def run(model: nn.Module, family: str, x: torch.Tensor) -> torch.Tensor:
    """The model's main output: logits for the language models and ViT, hidden states for BERT."""
    if family == "bert":
        return model(input_ids=x).last_hidden_state
    if family == "vit":
        return model(pixel_values=x).logits
    return model(input_ids=x, use_cache=False).logits


# ---------------------------------------------------------------------------------------------
# Probing the model's own modules
# ---------------------------------------------------------------------------------------------


def probe(module: nn.Module, d_in: int) -> torch.Tensor:
    """A float64 copy of ``module`` run on a (1, d_in + 1, d_in) "hidden state" whose first d_in
    positions are the identity and whose last position is zero. Shaped like a (batch, seq,
    features) hidden state, the output can go through the forward code's own view/split calls."""
    rows = torch.cat([torch.eye(d_in), torch.zeros(1, d_in)]).double()[None]
    with torch.no_grad():
        return copy.deepcopy(module).double()(rows)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """(1, heads, seq, head_dim) -> (1, seq, heads * head_dim), head-major: what the attention
    classes do to their output before the output projection (``transpose(1, 2).reshape``)."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], -1)


def affine(probed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, d_in + 1, out) probe output -> the (d_in, out) matrix and the (out,) bias."""
    rows = probed[0]
    return rows[:-1] - rows[-1], rows[-1]


def split_heads_as(head_dim: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``t.view(*t.shape[:-1], -1, head_dim).transpose(1, 2)``, as the attention forwards do."""
    return lambda t: t.view(*t.shape[:-1], -1, head_dim).transpose(1, 2)


def block_parts(family: str, model: nn.Module, b: int) -> dict:
    """For block ``b``: the probe outputs (already split like the forward code splits them) with
    the module each came from, the norm modules, and the block's activation function."""
    cfg = model.config
    d = cfg.hidden_size
    if family == "gpt2":
        blk = model.transformer.h[b]
        heads = split_heads_as(blk.attn.head_dim)
        # GPT2Attention.forward: self.c_attn(hidden_states).split(self.split_size, dim=2)
        q, k, v = probe(blk.attn.c_attn, d).split(blk.attn.split_size, dim=2)
        lin = {
            "q": (merge_heads(heads(q)), blk.attn.c_attn),
            "k": (merge_heads(heads(k)), blk.attn.c_attn),
            "v": (merge_heads(heads(v)), blk.attn.c_attn),
            "o": (probe(blk.attn.c_proj, d), blk.attn.c_proj),
            "mlp_in": (probe(blk.mlp.c_fc, d), blk.mlp.c_fc),
            "mlp_out": (probe(blk.mlp.c_proj, blk.mlp.c_fc.nf), blk.mlp.c_proj),
        }
        norms = {"ln_attn": blk.ln_1, "ln_mlp": blk.ln_2}
        return {"linear": lin, "norms": norms, "act": blk.mlp.act, "attention": blk.attn}
    if family == "gpt_neox":
        blk = model.gpt_neox.layers[b]
        att = blk.attention
        # GPTNeoXAttention.forward: qkv = self.query_key_value(hidden_states)
        #     .view((*input_shape, -1, 3 * self.head_size)).transpose(1, 2); qkv.chunk(3, dim=-1)
        qkv = probe(att.query_key_value, d)
        qkv = qkv.view((*qkv.shape[:-1], -1, 3 * att.head_size)).transpose(1, 2)
        q, k, v = qkv.chunk(3, dim=-1)
        lin = {
            "q": (merge_heads(q), att.query_key_value),
            "k": (merge_heads(k), att.query_key_value),
            "v": (merge_heads(v), att.query_key_value),
            "o": (probe(att.dense, d), att.dense),
            "mlp_in": (probe(blk.mlp.dense_h_to_4h, d), blk.mlp.dense_h_to_4h),
            "mlp_out": (probe(blk.mlp.dense_4h_to_h, cfg.intermediate_size), blk.mlp.dense_4h_to_h),
        }
        norms = {"ln_attn": blk.input_layernorm, "ln_mlp": blk.post_attention_layernorm}
        return {"linear": lin, "norms": norms, "act": blk.mlp.act, "attention": att}
    if family in ("llama", "bert", "vit"):
        if family == "llama":
            blk = model.model.layers[b]
            att = blk.self_attn
            q_mod, k_mod, v_mod, o_mod = att.q_proj, att.k_proj, att.v_proj, att.o_proj
            mlp_in, mlp_out, act = blk.mlp.up_proj, blk.mlp.down_proj, blk.mlp.act_fn
            norms = {"ln_attn": blk.input_layernorm, "ln_mlp": blk.post_attention_layernorm}
            head_dim = att.head_dim
        elif family == "bert":
            blk = model.encoder.layer[b]
            att = blk.attention.self
            q_mod, k_mod, v_mod = att.query, att.key, att.value
            o_mod = blk.attention.output.dense
            mlp_in, mlp_out = blk.intermediate.dense, blk.output.dense
            act = blk.intermediate.intermediate_act_fn
            norms = {"ln_attn_out": blk.attention.output.LayerNorm, "ln_mlp_out": blk.output.LayerNorm}
            head_dim = att.attention_head_size
        else:
            blk = model.vit.layers[b]
            att = blk.attention
            q_mod, k_mod, v_mod, o_mod = att.q_proj, att.k_proj, att.v_proj, att.o_proj
            mlp_in, mlp_out, act = blk.mlp.fc1, blk.mlp.fc2, blk.mlp.activation_fn
            norms = {"ln_attn": blk.layernorm_before, "ln_mlp": blk.layernorm_after}
            head_dim = att.head_dim
        # separate projections: self.q_proj(hidden_states).view((*input_shape, -1, head_dim))
        heads = split_heads_as(head_dim)
        lin = {
            "q": (merge_heads(heads(probe(q_mod, d))), q_mod),
            "k": (merge_heads(heads(probe(k_mod, d))), k_mod),
            "v": (merge_heads(heads(probe(v_mod, d))), v_mod),
            "o": (probe(o_mod, o_mod.in_features), o_mod),
            "mlp_in": (probe(mlp_in, d), mlp_in),
            "mlp_out": (probe(mlp_out, mlp_out.in_features), mlp_out),
        }
        if family == "llama":
            lin["mlp_gate"] = (probe(blk.mlp.gate_proj, d), blk.mlp.gate_proj)
        return {"linear": lin, "norms": norms, "act": act, "attention": att}
    raise ValueError(family)


def blocks_of(family: str, model: nn.Module) -> nn.ModuleList:
    return {
        "gpt2": lambda: model.transformer.h,
        "gpt_neox": lambda: model.gpt_neox.layers,
        "llama": lambda: model.model.layers,
        "bert": lambda: model.encoder.layer,
        "vit": lambda: model.vit.layers,
    }[family]()


def final_norm(family: str, model: nn.Module) -> nn.Module | None:
    return {
        "gpt2": lambda: model.transformer.ln_f,
        "gpt_neox": lambda: model.gpt_neox.final_layer_norm,
        "llama": lambda: model.model.norm,
        "bert": lambda: None,  # BertModel's only other norm is embeddings.LayerNorm
        "vit": lambda: model.vit.layernorm,
    }[family]()


# ---------------------------------------------------------------------------------------------
# Checkpoint module paths: found by matching each module's weight against the saved tensors
# (transformers 5 renames some modules in memory, e.g. ViT's q_proj, but saves the old names)
# ---------------------------------------------------------------------------------------------


def checkpoint_path(module: nn.Module, saved: dict[str, torch.Tensor]) -> tuple[str, str]:
    """The checkpoint prefix of ``module`` and the layout its weight is stored in ("out_in" for
    nn.Linear, "in_out" for GPT-2's Conv1D; "vector" for norms)."""
    w = module.weight.detach()
    hits = []
    for name, t in saved.items():
        if not name.endswith(".weight") or t.dim() != w.dim():
            continue
        if t.shape == w.shape and torch.equal(t, w):
            hits.append((name, "vector" if w.dim() == 1 else "as_module"))
        elif w.dim() == 2 and t.shape == w.T.shape and torch.equal(t, w.T):
            hits.append((name, "transposed"))
    assert len(hits) == 1, f"{type(module).__name__}: {len(hits)} matching saved tensors"
    name, how = hits[0]
    if how == "vector":
        layout = "vector"
    else:
        module_layout = "in_out" if type(module).__name__ == "Conv1D" else "out_in"
        flipped = {"in_out": "out_in", "out_in": "in_out"}
        layout = module_layout if how == "as_module" else flipped[module_layout]
    return name.removesuffix(".weight"), layout


def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    return tensors


# ---------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------


def oracle(family: str, model: nn.Module, saved: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """The oracle arrays (float64) and, for the checks, the biases."""
    cfg = model.config
    module_names = {m: n for n, m in model.named_modules()}
    arrays, biases, paths, module_paths, layouts = {}, {}, {}, {}, {}

    def record(key: str, module: nn.Module) -> None:
        paths[key], layouts[key] = checkpoint_path(module, saved)
        module_paths[key] = module_names[module]

    n_layers = len(blocks_of(family, model))
    for b in range(n_layers):
        parts = block_parts(family, model, b)
        for name, (probed, module) in parts["linear"].items():
            key = f"b{b}.{name}"
            arrays[key], biases[key] = affine(probed)
            record(key, module)
        for name, norm in parts["norms"].items():
            key = f"b{b}.{name}"
            arrays[key] = norm.weight.detach().double().clone()
            record(key, norm)
    if (norm := final_norm(family, model)) is not None:
        arrays["ln_final"] = norm.weight.detach().double().clone()
        record("ln_final", norm)

    head_dim = arrays["b0.q"].shape[1] // cfg.num_attention_heads
    meta = {
        "family": family,
        "model_class": type(model).__name__,
        "d_model": cfg.hidden_size,
        "n_heads": cfg.num_attention_heads,
        "n_kv_heads": arrays["b0.k"].shape[1] // head_dim,
        "head_dim": head_dim,
        "d_mlp": arrays["b0.mlp_in"].shape[1],
        "n_layers": n_layers,
        "pre_ln": family != "bert",
        "parallel_residual": family == "gpt_neox",
        "gated_mlp": family == "llama",
        "norm": "rmsnorm" if family == "llama" else "layernorm",
        "activation": cfg.activation_function if family == "gpt2" else cfg.hidden_act,
        "rotary": family in ("gpt_neox", "llama"),
        "causal": family in ("gpt2", "gpt_neox", "llama"),
        # "fused_concat": one module, outputs [q | k | v] (GPT-2's c_attn); "fused_per_head":
        # one module, outputs head by head, [q_h | k_h | v_h] for each head h (NeoX's
        # query_key_value); "separate": a module each
        "qkv_layout": {"gpt2": "fused_concat", "gpt_neox": "fused_per_head"}.get(family, "separate"),
        "paths": paths,
        "module_paths": module_paths,
        "checkpoint_weight_layout": layouts,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    arrays = {k: v.numpy() for k, v in arrays.items()}
    arrays["meta"] = np.array(json.dumps(meta, indent=1))
    return arrays, biases


# ---------------------------------------------------------------------------------------------
# Checking the oracle against the real model
# ---------------------------------------------------------------------------------------------

RECORDED: dict[nn.Module, dict[str, torch.Tensor]] = {}


def recording_attention(module, query, key, value, attention_mask, **kwargs):
    """The sdpa attention, keeping the query/key/value states the model handed to it (after any
    rotary embedding; key/value before grouped-query repetition)."""
    RECORDED[module] = {"q": query.detach(), "k": key.detach(), "v": value.detach()}
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register("oracle_record", recording_attention)
AttentionMaskInterface.register("oracle_record", sdpa_mask)


def check(family: str, model: nn.Module, arrays: dict, biases: dict) -> None:
    """Runs a float64 copy of the model with recording hooks and rebuilds every block's output
    from the oracle matrices: q, k and v against the states the attention received, then the
    attention, MLP, norms and residual wiring (meta's pre_ln/parallel_residual) end to end."""
    meta = json.loads(str(arrays["meta"]))
    ref = copy.deepcopy(model).double()
    ref.set_attn_implementation("oracle_record")
    blocks = blocks_of(family, ref)
    inputs, outputs = {}, {}
    hooks = []
    for b, blk in enumerate(blocks):
        def pre(_m, args, kwargs, b=b):
            inputs[b] = args[0] if args else kwargs["hidden_states"]

        def post(_m, _args, out, b=b):
            outputs[b] = out[0] if isinstance(out, tuple) else out

        hooks.append(blk.register_forward_pre_hook(pre, with_kwargs=True))
        hooks.append(blk.register_forward_hook(post))
    RECORDED.clear()
    with torch.no_grad():
        run(ref, family, example_input(family, torch.float64))
    for h in hooks:
        h.remove()

    H, KV, hd = meta["n_heads"], meta["n_kv_heads"], meta["head_dim"]
    W = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "meta"}

    def heads(t, n):  # (seq, n * hd) -> (n, seq, hd)
        return t.view(t.shape[0], n, hd).transpose(0, 1)

    for b in range(meta["n_layers"]):
        parts = block_parts(family, ref, b)
        x = inputs[b][0]  # (seq, d_model)
        norms = parts["norms"]

        def lin(h, name, b=b):
            return h @ W[f"b{b}.{name}"] + biases[f"b{b}.{name}"]

        def attention(h, b=b, parts=parts):
            got, seq = RECORDED[parts["attention"]], h.shape[0]
            q, k, v = heads(lin(h, "q"), H), heads(lin(h, "k"), KV), heads(lin(h, "v"), KV)
            torch.testing.assert_close(got["v"][0], v, rtol=1e-9, atol=1e-9)
            # rotary embeddings are the identity at position 0 only
            cut = 1 if meta["rotary"] else seq
            torch.testing.assert_close(got["q"][0][:, :cut], q[:, :cut], rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(got["k"][0][:, :cut], k[:, :cut], rtol=1e-9, atol=1e-9)
            if meta["rotary"]:
                q, k = got["q"][0], got["k"][0]
            group = H // KV  # query head j reads key/value head j // group (repeat_kv)
            k, v = k.repeat_interleave(group, dim=0), v.repeat_interleave(group, dim=0)
            scores = q @ k.transpose(1, 2) / math.sqrt(hd)
            if meta["causal"]:
                scores = scores.masked_fill(torch.ones(seq, seq).triu(1).bool(), -math.inf)
            mixed = scores.softmax(-1) @ v  # (H, seq, hd)
            return lin(mixed.transpose(0, 1).reshape(seq, H * hd), "o")

        def mlp(h, parts=parts):
            inner = parts["act"](lin(h, "mlp_in"))
            if meta["gated_mlp"]:  # LlamaMLP: down(act(gate(x)) * up(x))
                inner = parts["act"](lin(h, "mlp_gate")) * lin(h, "mlp_in")
            return lin(inner, "mlp_out")

        with torch.no_grad():
            if not meta["pre_ln"]:  # BERT: LN(x + attn(x)), then LN(h + mlp(h))
                h = norms["ln_attn_out"](x + attention(x))
                y = norms["ln_mlp_out"](h + mlp(h))
            elif meta["parallel_residual"]:  # NeoX: x + attn(ln1(x)) + mlp(ln2(x))
                y = x + attention(norms["ln_attn"](x)) + mlp(norms["ln_mlp"](x))
            else:
                h = x + attention(norms["ln_attn"](x))
                y = h + mlp(norms["ln_mlp"](h))
            torch.testing.assert_close(y, outputs[b][0], rtol=1e-9, atol=1e-9)
            # the stored gains are the norms' gains: norm(x) - norm(0) = normalised(x) * gain
            for name, norm in norms.items():
                gain = W[f"b{b}.{name}"]
                z = x - x.mean(-1, keepdim=True) if meta["norm"] == "layernorm" else x
                eps = getattr(norm, "eps", None) or norm.variance_epsilon
                normalised = z / torch.sqrt(z.pow(2).mean(-1, keepdim=True) + eps)
                # (LlamaRMSNorm computes in float32 whatever the input dtype)
                torch.testing.assert_close(
                    norm(x) - norm(torch.zeros_like(x)), normalised * gain, rtol=1e-6, atol=1e-6
                )
    print(f"  oracle checked against the model: {meta['n_layers']} blocks rebuilt exactly")


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------


def exportable(model: nn.Module, family: str) -> nn.Module:
    """A copy of the model whose forward takes one tensor and returns plain tensors (BERT: the
    hidden states and the pooler output). The copy's class is a subclass of the model's own, so
    the ONNX files keep the model's parameter names (a wrapper module would prefix them)."""
    base = type(model)

    def forward(self, x):
        if family == "bert":
            out = base.forward(self, input_ids=x)
            return out.last_hidden_state, out.pooler_output
        if family == "vit":
            return base.forward(self, pixel_values=x).logits
        # An all-ones attention mask: without one, transformers' mask code checks position_ids
        # for packed sequences with torch.diff, which the legacy exporter cannot translate.
        mask = torch.ones_like(x)
        return base.forward(self, input_ids=x, attention_mask=mask, use_cache=False).logits

    twin = copy.deepcopy(model)
    twin.__class__ = type(f"{base.__name__}ForExport", (base,), {"forward": forward})
    return twin.eval()


def strip_debug_metadata(path: Path) -> None:
    """Drops the per-node Python stack traces and FX node dumps the dynamo exporter writes (two
    thirds of these small files); the module scopes (namespace, name_scopes, class_hierarchy)
    stay."""
    import onnx

    proto = onnx.load(str(path))
    for node in proto.graph.node:
        keep = [p for p in node.metadata_props if p.key not in DEBUG_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(proto, str(path))


DEBUG_METADATA = {"pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node"}


@contextlib.contextmanager
def quiet():
    """Silences the exporters' progress lines and the graph dump the legacy exporter writes
    (from C++, hence at the file-descriptor level) when it fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def export_onnx(family: str, model: nn.Module, out: Path) -> list[str]:
    failures = []
    wrapped = exportable(model, family)
    x = example_input(family)
    name = "pixel_values" if family == "vit" else "input_ids"
    for kind, kwargs in (
        ("legacy", {"dynamo": False, "opset_version": 17}),
        ("dynamo", {"dynamo": True, "external_data": False}),
    ):
        path = out / f"{family}.{kind}.onnx"
        try:
            with quiet():
                torch.onnx.export(wrapped, (x,), str(path), input_names=[name], **kwargs)
            if kind == "dynamo":
                strip_debug_metadata(path)
            print(f"  {path.name}: {path.stat().st_size} bytes")
        except Exception as exc:  # report it and go on
            reason = " ".join(str(exc).split())[:200]
            print(f"  {path.name}: export failed: {type(exc).__name__}: {reason}")
            failures.append(f"{path.name}: {type(exc).__name__}: {reason}")
            path.unlink(missing_ok=True)
    return failures


# ---------------------------------------------------------------------------------------------
# Writing everything
# ---------------------------------------------------------------------------------------------


def assert_reloads(model: nn.Module, family: str, folder: Path) -> None:
    """The saved folder loads back into the same class and gives the same outputs."""
    loaded = type(model).from_pretrained(folder).eval()
    x = example_input(family)
    with torch.no_grad():
        torch.testing.assert_close(run(loaded, family, x), run(model, family, x), rtol=0, atol=0)


def write_family(family: str, out: Path) -> list[str]:
    print(family)
    model = build(family)
    folder = out / family
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    assert_reloads(model, family, folder)
    if family == "llama":
        sharded = out / "llama_sharded"
        shutil.rmtree(sharded, ignore_errors=True)
        model.save_pretrained(sharded, safe_serialization=True, max_shard_size="8KB")
        shards = sorted(sharded.glob("*.safetensors"))
        assert len(shards) >= 2 and (sharded / "model.safetensors.index.json").exists()
        assert_reloads(model, family, sharded)
        print(f"  llama_sharded/: {len(shards)} shards")

    arrays, biases = oracle(family, model, read_safetensors(folder))
    check(family, model, arrays, biases)
    np.savez_compressed(out / f"{family}.oracle.npz", **arrays)
    write_forward(family, model, out)
    return export_onnx(family, model, out)


def write_forward(family: str, model: nn.Module, out: Path) -> None:
    """``<family>.forward.npz``: the example input and the model's main output on it (what an
    evaluation of its ONNX export must reproduce)."""
    x = example_input(family)
    with torch.no_grad():
        y = run(model, family, x)
    np.savez_compressed(out / f"{family}.forward.npz", input=x.numpy(), output=y.double().numpy())


def write_forwards(out: Path) -> None:
    """The forward files alone, from the checkpoint folders already in ``out`` (the other
    fixtures are left as they are)."""
    for family in FAMILIES:
        model = type(build(family)).from_pretrained(out / family).eval()
        write_forward(family, model, out)
        print(f"{family}.forward.npz")


README = """\
# Tiny Hugging Face transformer fixtures

Written by `tests/export_transformer_fixtures.py` (its docstring says more):

    /tmp/torchenv/bin/python tests/export_transformer_fixtures.py --out tests/fixtures/transformers

Random weights (seed 0; every norm gain uniform(0.5, 2), norm biases normal, other biases
normal(0, 0.1)), built from config objects: 2 blocks, d_model 16, 4 heads, MLP width 32.

- `<family>/`: `save_pretrained` folder (config.json, model.safetensors; generation_config.json
  for the language models) for gpt2 (GPT2LMHeadModel), gpt_neox (GPTNeoXForCausalLM, parallel
  residual), llama (LlamaForCausalLM, 2 key/value heads), bert (BertModel, post-LN, with pooler)
  and vit (ViTForImageClassification, 3 labels).
- `llama_sharded/`: the same llama in {n_shards} safetensors shards plus model.safetensors.index.json.
- `<family>.oracle.npz`: float64, (in, out) layout: `b{{b}}.q/k/v/o`, `b{{b}}.mlp_in/mlp_out`
  (llama also `b{{b}}.mlp_gate`), norm gains `b{{b}}.ln_attn/ln_mlp` (bert:
  `b{{b}}.ln_attn_out/ln_mlp_out`), `ln_final` (not bert), and `meta` (JSON: dimensions, flags,
  checkpoint module path of each entry in `paths`, the in-memory one in `module_paths`).
  Computed by running the model's own modules on an identity batch and checked against real
  forward passes.
- `<family>.forward.npz`: `input` (the example input: token ids (1, 8), or an image (1, 3, 8, 8))
  and `output`, the model's logits on it (bert: hidden states), float64.
- `<family>.legacy.onnx` / `<family>.dynamo.onnx`: TorchScript (opset 17) and dynamo (opset 20)
  ONNX exports; input `input_ids` (1, 8) int64 (an all-ones attention mask is built inside the
  graph), or `pixel_values` (1, 3, 8, 8) for vit; outputs: logits (bert: hidden states and
  pooler output). Initializers carry the in-memory parameter names (`meta.module_paths`, which
  for vit differ from the checkpoint's), except nn.Linear weights, which both exporters store
  pre-transposed under generated names (`onnx::MatMul_*`, `val_*`). The dynamo files have their
  per-node stack traces and FX dumps removed (size); module scopes stay.{notes}

Versions: transformers {transformers}, torch {torch}, safetensors {safetensors}, onnx {onnx},
onnxscript {onnxscript}, numpy {numpy}.
"""


def version(module_name: str) -> str:
    try:
        return __import__(module_name).__version__
    except ImportError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--forwards", action="store_true", help="write only the <family>.forward.npz files, from the "
                        "checkpoint folders already in --out")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.forwards:
        write_forwards(out)
        return

    failures = []
    for family in FAMILIES:
        failures += write_family(family, out)

    notes = [f"\n  Export failed: {f}" for f in failures]
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if total > BUDGET_BYTES:
        for p in sorted(out.glob("*.dynamo.onnx")):
            p.unlink()
        notes.append("\n  The dynamo exports were dropped to keep the folder under 1.5 MB.")
        print(f"{total} bytes is over the budget: dropped the dynamo exports")

    n_shards = len(list((out / "llama_sharded").glob("*.safetensors")))
    (out / "README.md").write_text(
        README.format(
            n_shards=n_shards, notes="".join(notes), transformers=transformers.__version__,
            torch=torch.__version__, safetensors=version("safetensors"), onnx=version("onnx"),
            onnxscript=version("onnxscript"), numpy=np.__version__,
        )
    )
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {total} bytes")


if __name__ == "__main__":
    main()
