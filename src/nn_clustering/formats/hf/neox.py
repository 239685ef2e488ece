"""GPT-NeoX and Pythia (``model_type`` ``gpt_neox``): PyTorch ``Linear`` layers, (out, in). The
fused ``attention.query_key_value`` output is viewed per head as (heads, 3 * head_dim): head h's
query, key and value are consecutive slices of its own 3 * head_dim block (interleaved by head,
not side by side). ``input_layernorm`` before the attention, ``post_attention_layernorm``
before the MLP, both reading the stream (Pythia's parallel residual reads the same stream for
both, which this description holds too)."""

from __future__ import annotations

import numpy as np

from ..transformer import Attention, Block, Mlp
from .checkpoint import Checkpoint


def neox_blocks(ckpt: Checkpoint) -> tuple[list[Block], int]:
    """The blocks of a GPT-NeoX checkpoint and its d_model."""
    d, heads = ckpt.number("hidden_size"), ckpt.number("num_attention_heads")
    layers, d_mlp = ckpt.number("num_hidden_layers"), ckpt.number("intermediate_size", default=4 * d)
    head_dim = d // heads
    p = ckpt.prefix("layers.0.attention.query_key_value.weight")
    blocks = []
    for i in range(layers):
        h = f"{p}layers.{i}"
        qkv = ckpt.matrix(f"{h}.attention.query_key_value.weight", (3 * d, d), transpose=True)
        per_head = qkv.reshape(d, heads, 3, head_dim)  # column h * 3 * head_dim + j * head_dim + c
        values = np.ascontiguousarray(per_head[:, :, 2, :].reshape(d, d))
        attention = Attention(values, ckpt.matrix(f"{h}.attention.dense.weight", (d, d), transpose=True), heads, heads,
                              f"{h}.attention.query_key_value.v", f"{h}.attention.dense")
        mlp = Mlp(ckpt.matrix(f"{h}.mlp.dense_h_to_4h.weight", (d_mlp, d), transpose=True),
                  ckpt.matrix(f"{h}.mlp.dense_4h_to_h.weight", (d, d_mlp), transpose=True),
                  f"{h}.mlp.dense_h_to_4h", f"{h}.mlp.dense_4h_to_h")
        blocks.append(Block(attention, mlp, ckpt.vector(f"{h}.input_layernorm.weight", d),
                            ckpt.vector(f"{h}.post_attention_layernorm.weight", d)))
    return blocks, d
