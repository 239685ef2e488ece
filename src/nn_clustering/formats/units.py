"""What an activation graph's runner hands over: the reported layers and a function that runs a
batch (method.md §3.6). The runners: numpy MLPs in :mod:`.activations`, Keras models in
:mod:`.keras_run`, ONNX files in :mod:`.onnx_run`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UnitRunner:
    """A network ready to run: the names and sizes of the layers whose units it reports, and
    ``run(x)``, which returns their activations for a batch of inputs (one array per layer, one
    row per example: per token for a sequence model).

    ``n_inputs`` is the values per example; a sequence model (``tokens``) takes integer token ids
    (sequences, ``n_inputs`` tokens, None when any length runs) and ``batch`` sequences per run
    when its file fixes that (else any number)."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    n_inputs: int | None
    run: Any
    source: str = ""
    tokens: bool = False
    batch: int | None = None
