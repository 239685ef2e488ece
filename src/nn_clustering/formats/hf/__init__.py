"""Transformers from Hugging Face checkpoint folders, one module per model family (as
TransformerLens converts them): each reads its family's tensors into the framework-neutral
:class:`~nn_clustering.formats.transformer.Block` description, and
:func:`~nn_clustering.formats.transformer.transformer_weights` makes the graph's weights. The
family is told by ``config.json``'s ``model_type``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...core.graph import NetworkWeights
from ...errors import ModelError, quoted
from ..transformer import Block, transformer_weights
from .checkpoint import CONFIG, Checkpoint, read_config
from .encoders import bert_blocks, vit_blocks
from .gpt2 import gpt2_blocks
from .llama import llama_blocks
from .neox import neox_blocks

#: The reader of each ``model_type``.
FAMILIES: dict[str, Callable[[Checkpoint], tuple[list[Block], int]]] = {
    "gpt2": gpt2_blocks, "gpt_neox": neox_blocks, "llama": llama_blocks, "mistral": llama_blocks,
    "qwen2": llama_blocks, "bert": bert_blocks, "vit": vit_blocks,
}


def is_checkpoint_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding a ``config.json``."""
    return path.is_dir() and (path / CONFIG).is_file()


def load_checkpoint_weights(folder: str | Path) -> NetworkWeights:
    """The weight graph's :class:`NetworkWeights` of the transformer in a Hugging Face
    checkpoint folder (method.md §3.5); one line for a family that is not read, a missing or
    contradicting tensor, or a folder without safetensors weights."""
    folder = Path(folder)
    config = read_config(folder)
    family = config.get("model_type")
    if family not in FAMILIES:
        raise ModelError(f"{folder}: model_type {quoted(family)} is not read; supported: {', '.join(FAMILIES)} "
                         "(or export the model to ONNX)")
    blocks, d_model = FAMILIES[family](Checkpoint.read(folder, config))
    return transformer_weights(blocks, d_model, str(folder))
