"""A Hugging Face checkpoint folder (``config.json`` with ``model.safetensors``, or shards listed
by ``model.safetensors.index.json``), read without PyTorch or transformers: the config, and
every tensor through the safetensors reader of :mod:`~nn_clustering.formats.state_dict`, whose
sizes count against one memory budget for the whole folder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ModelError, quoted
from ..limits import ModelBudget, shape_text
from ..state_dict import read_safetensors

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
#: The largest config or index file read (a real one is a few kilobytes, an index a few MB).
MAX_JSON = 64 * 2**20
SAVE_HINT = "save it with model.save_pretrained(folder, safe_serialization=True)"
#: A shard's file name: a plain name inside the folder.
SHARD_NAME = re.compile(r"^[\w.-]+\.safetensors$")


def _json(path: Path, source: str) -> dict:
    """A JSON object from a small file of the folder."""
    if not path.is_file():
        raise ModelError(f"{source}: has no {path.name}; {SAVE_HINT}")
    if path.stat().st_size > MAX_JSON:
        raise ModelError(f"{source}: {path.name} is larger than {MAX_JSON >> 20} MB; not a checkpoint's {path.name}")
    try:
        value = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelError(f"{source}: {path.name} is not readable JSON; {SAVE_HINT}") from None
    if not isinstance(value, dict):
        raise ModelError(f"{source}: {path.name} is not a JSON object; {SAVE_HINT}")
    return value


def read_config(folder: Path) -> dict:
    """The folder's ``config.json`` as a dict."""
    return _json(folder / CONFIG, str(folder))


def _shards(folder: Path, source: str) -> dict[str, list[str]]:
    """Shard file -> the tensors it should hold (one file: everything it holds)."""
    if (folder / INDEX).is_file():
        weight_map = _json(folder / INDEX, source).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError(f"{source}: {INDEX} has no weight_map; {SAVE_HINT}")
        shards: dict[str, list[str]] = {}
        for name, shard in weight_map.items():
            if not isinstance(shard, str) or not SHARD_NAME.match(shard):
                raise ModelError(f"{source}: {INDEX} names shard {quoted(shard)}, not a .safetensors file of the "
                                 "folder itself")
            shards.setdefault(shard, []).append(name)
        return shards
    if (folder / WEIGHTS).is_file():
        return {WEIGHTS: []}
    others = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".h5", ".msgpack"))
    found = f" (it holds {', '.join(others[:3])})" if others else ""
    raise ModelError(f"{source}: has no {WEIGHTS} or {INDEX}{found}; {SAVE_HINT}")


@dataclass
class Checkpoint:
    """A checkpoint folder's config and tensors (by name, as stored: float16/bfloat16 read
    exactly, float32 as it is)."""

    source: str
    config: dict
    tensors: dict[str, np.ndarray]

    @classmethod
    def read(cls, folder: Path, config: dict) -> Checkpoint:
        """Read every shard of ``folder`` (each checked against one budget), beside its
        ``config`` (:func:`read_config`)."""
        source = str(folder)
        budget, tensors = ModelBudget(source), {}
        for shard, expected in _shards(folder, source).items():
            path = folder / shard
            if not path.is_file() or path.is_symlink():
                raise ModelError(f"{source}: shard {quoted(shard)} is missing (or a link); copy the whole checkpoint")
            found = read_safetensors(path, budget)
            missing = [n for n in expected if n not in found]
            if missing:
                raise ModelError(f"{source}: tensor {quoted(missing[0])} is missing from shard {quoted(shard)}; "
                                 "the index and the shards disagree: copy the whole checkpoint")
            tensors.update(found)
        return cls(source, config, tensors)

    def number(self, *keys: str, default: int | None = None) -> int:
        """The first of ``keys`` the config holds, as a positive integer."""
        for key in keys:
            value = self.config.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ModelError(f"{self.source}: config {key} = {quoted(value)} is not a positive integer")
                return value
        if default is None:
            raise ModelError(f"{self.source}: config.json has none of {', '.join(keys)}; {SAVE_HINT}")
        return default

    def prefix(self, suffix: str) -> str:
        """The module path in front of ``suffix`` (``transformer.`` for a head model's
        ``transformer.h.0...``, empty for the bare model)."""
        for name in self.tensors:
            if name.endswith(suffix):
                return name[: -len(suffix)]
        raise ModelError(f"{self.source}: no tensor ends with {quoted(suffix)}; the config's model_type "
                         f"{quoted(self.config.get('model_type'))} does not match the tensors")

    def matrix(self, name: str, shape: tuple[int, ...], transpose: bool = False) -> np.ndarray:
        """Tensor ``name`` as float64 (its transpose with ``transpose``: PyTorch's (out, in) to
        (in, out)), which must have ``shape`` as stored."""
        if name not in self.tensors:
            raise ModelError(f"{self.source}: tensor {quoted(name)} is missing; copy the whole checkpoint")
        value = self.tensors[name]
        if tuple(value.shape) != tuple(shape):
            raise ModelError(f"{self.source}: tensor {quoted(name)} has shape {shape_text(value.shape)} but the config "
                             f"says {shape_text(shape)}; the config and the tensors disagree")
        value = value.astype(np.float64)
        return value.T if transpose else value

    def vector(self, name: str, size: int) -> np.ndarray | None:
        """A norm's scale (None when the checkpoint has no such tensor: a norm without scale)."""
        return self.matrix(name, (size,)) if name in self.tensors else None
