"""LLaMA and its kin (``model_type`` ``llama``, ``mistral``, ``qwen2``; SmolLM is a LLaMA):
PyTorch ``Linear`` layers, (out, in), separate ``q_proj``/``k_proj``/``v_proj``/``o_proj``;
grouped-query attention (``num_key_value_heads`` key/value heads, each shared by
num_attention_heads / num_key_value_heads query heads); RMSNorm (``input_layernorm``,
``post_attention_layernorm``); a SwiGLU MLP (``down_proj(silu(gate_proj(x)) * up_proj(x))``)."""

from __future__ import annotations

from ..transformer import Attention, Block, Mlp
from .checkpoint import Checkpoint


def llama_blocks(ckpt: Checkpoint) -> tuple[list[Block], int]:
    """The blocks of a LLaMA-family checkpoint and its d_model."""
    d, heads = ckpt.number("hidden_size"), ckpt.number("num_attention_heads")
    kv_heads = ckpt.number("num_key_value_heads", default=heads)
    layers, d_mlp = ckpt.number("num_hidden_layers"), ckpt.number("intermediate_size")
    head_dim = ckpt.number("head_dim", default=d // heads)
    p = ckpt.prefix("layers.0.self_attn.v_proj.weight")
    blocks = []
    for i in range(layers):
        h = f"{p}layers.{i}"
        attention = Attention(ckpt.matrix(f"{h}.self_attn.v_proj.weight", (kv_heads * head_dim, d), transpose=True),
                              ckpt.matrix(f"{h}.self_attn.o_proj.weight", (d, heads * head_dim), transpose=True),
                              heads, kv_heads, f"{h}.self_attn.v_proj", f"{h}.self_attn.o_proj")
        mlp = Mlp(ckpt.matrix(f"{h}.mlp.up_proj.weight", (d_mlp, d), transpose=True),
                  ckpt.matrix(f"{h}.mlp.down_proj.weight", (d, d_mlp), transpose=True),
                  f"{h}.mlp.up_proj", f"{h}.mlp.down_proj",
                  ckpt.matrix(f"{h}.mlp.gate_proj.weight", (d_mlp, d), transpose=True), f"{h}.mlp.gate_proj")
        blocks.append(Block(attention, mlp, ckpt.vector(f"{h}.input_layernorm.weight", d),
                            ckpt.vector(f"{h}.post_attention_layernorm.weight", d)))
    return blocks, d
