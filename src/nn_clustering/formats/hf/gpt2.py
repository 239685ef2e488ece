"""GPT-2 (``model_type`` ``gpt2``): Hugging Face's ``Conv1D`` layers store (in, out). The fused
``attn.c_attn`` projection's output is queries, keys and values side by side (d_model columns
each); values are its last third, head-major. Pre-norm: ``ln_1`` before the attention, ``ln_2``
before the MLP (``mlp.c_fc``, GELU, ``mlp.c_proj``)."""

from __future__ import annotations

from ..transformer import Attention, Block, Mlp
from .checkpoint import Checkpoint


def gpt2_blocks(ckpt: Checkpoint) -> tuple[list[Block], int]:
    """The blocks of a GPT-2 checkpoint and its d_model."""
    d = ckpt.number("n_embd", "hidden_size")
    heads, layers = ckpt.number("n_head", "num_attention_heads"), ckpt.number("n_layer", "num_hidden_layers")
    d_mlp = ckpt.number("n_inner", default=4 * d)
    p = ckpt.prefix("h.0.attn.c_attn.weight")
    blocks = []
    for i in range(layers):
        h = f"{p}h.{i}"
        qkv = ckpt.matrix(f"{h}.attn.c_attn.weight", (d, 3 * d))
        attention = Attention(qkv[:, 2 * d:], ckpt.matrix(f"{h}.attn.c_proj.weight", (d, d)), heads, heads,
                              f"{h}.attn.c_attn.v", f"{h}.attn.c_proj")
        mlp = Mlp(ckpt.matrix(f"{h}.mlp.c_fc.weight", (d, d_mlp)), ckpt.matrix(f"{h}.mlp.c_proj.weight", (d_mlp, d)),
                  f"{h}.mlp.c_fc", f"{h}.mlp.c_proj")
        blocks.append(Block(attention, mlp, ckpt.vector(f"{h}.ln_1.weight", d), ckpt.vector(f"{h}.ln_2.weight", d)))
    return blocks, d
