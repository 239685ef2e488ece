"""BERT (``model_type`` ``bert``) and ViT (``vit``): PyTorch ``Linear`` layers, (out, in), separate
``query``/``key``/``value``, ``attention.output.dense`` as the output projection,
``intermediate.dense`` and ``output.dense`` as the MLP.

BERT is post-norm: ``x = LN(x + attention(x))``, ``x = LN(x + mlp(x))``; each norm scales the
stream's units for the layers that read it next, so the attention's norm is the MLP's reading
scale and the MLP's norm the next block's (the embeddings' norm the first block's). ViT is
pre-norm (``layernorm_before``, ``layernorm_after``); its patch embedding, like a CNN's input,
is left out."""

from __future__ import annotations

from ..transformer import Attention, Block, Mlp
from .checkpoint import Checkpoint


def _layer(ckpt: Checkpoint, h: str, d: int, heads: int, d_mlp: int) -> tuple[Attention, Mlp]:
    """The attention and MLP of ``encoder.layer.<i>`` (shared by BERT and ViT)."""
    value = f"{h}.attention.self.value"  # BERT's; ViT's is attention.attention.value
    value = value if f"{value}.weight" in ckpt.tensors else f"{h}.attention.attention.value"
    attention = Attention(ckpt.matrix(f"{value}.weight", (d, d), transpose=True),
                          ckpt.matrix(f"{h}.attention.output.dense.weight", (d, d), transpose=True), heads, heads,
                          value, f"{h}.attention.output.dense")
    mlp = Mlp(ckpt.matrix(f"{h}.intermediate.dense.weight", (d_mlp, d), transpose=True),
              ckpt.matrix(f"{h}.output.dense.weight", (d, d_mlp), transpose=True),
              f"{h}.intermediate.dense", f"{h}.output.dense")
    return attention, mlp


def _sizes(ckpt: Checkpoint) -> tuple[int, int, int, int]:
    """d_model, heads, layers and the MLP's width from the config."""
    d = ckpt.number("hidden_size")
    return d, ckpt.number("num_attention_heads"), ckpt.number("num_hidden_layers"), ckpt.number(
        "intermediate_size", default=4 * d)


def bert_blocks(ckpt: Checkpoint) -> tuple[list[Block], int]:
    """The blocks of a BERT checkpoint, in pre-norm form, and its d_model."""
    d, heads, layers, d_mlp = _sizes(ckpt)
    p = ckpt.prefix("encoder.layer.0.attention.output.dense.weight")
    before = ckpt.vector(f"{p}embeddings.LayerNorm.weight", d)
    blocks = []
    for i in range(layers):
        h = f"{p}encoder.layer.{i}"
        attention, mlp = _layer(ckpt, h, d, heads, d_mlp)
        after_attention = ckpt.vector(f"{h}.attention.output.LayerNorm.weight", d)
        blocks.append(Block(attention, mlp, before, after_attention))
        before = ckpt.vector(f"{h}.output.LayerNorm.weight", d)
    return blocks, d


def vit_blocks(ckpt: Checkpoint) -> tuple[list[Block], int]:
    """The blocks of a ViT checkpoint and its d_model."""
    d, heads, layers, d_mlp = _sizes(ckpt)
    p = ckpt.prefix("encoder.layer.0.attention.output.dense.weight")
    blocks = []
    for i in range(layers):
        h = f"{p}encoder.layer.{i}"
        attention, mlp = _layer(ckpt, h, d, heads, d_mlp)
        blocks.append(Block(attention, mlp, ckpt.vector(f"{h}.layernorm_before.weight", d),
                            ckpt.vector(f"{h}.layernorm_after.weight", d)))
    return blocks, d
