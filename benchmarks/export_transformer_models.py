"""Random-weight GPT-2 small and Pythia-70M, each as a Hugging Face checkpoint folder and as its
ONNX exports, for ``bench_transformers.py --onnx-dir``.

Each model is built from its published configuration with random weights (``torch.manual_seed(0)``,
nothing is downloaded; GPT-2 small: 12 blocks, d_model 768, 12 heads, MLP 3072, vocabulary
50257; Pythia-70M: 6 blocks, d_model 512, 8 heads, MLP 2048, vocabulary 50304, parallel
residual), saved with ``save_pretrained`` as ``<name>/`` and exported with ``torch.onnx.export``
on token ids of shape (1, 8) as ``<name>.dynamo.onnx`` (``dynamo=True``, weights inside the
file), and with ``--exporter legacy`` or ``both`` as ``<name>.legacy.onnx`` (TorchScript
exporter, opset 17; with transformers 5 it fails on the causal mask's ``aten::diff``, which
tests/export_transformer_fixtures.py works around for the tiny fixtures). One line per file:
name, size in MB and seconds, or the reason an export failed.

Run it with the separate PyTorch environment (not the project's .venv):

    /tmp/torchenv/bin/python benchmarks/export_transformer_models.py --out DIR [--exporter dynamo|legacy|both]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

CONFIGS = {
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257)),
    "pythia-70m": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(
        hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048, vocab_size=50304,
        rotary_pct=0.25, use_parallel_residual=True)),
}


class Logits(torch.nn.Module):
    """The model's logits alone (no cache), what the exporters trace."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def export(model: torch.nn.Module, path: Path, dynamo: bool) -> None:
    """``torch.onnx.export`` of ``model`` on token ids (1, 8), its weights inside the file."""
    ids = torch.arange(1, 9).reshape(1, 8)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if dynamo:
            program = torch.onnx.export(Logits(model), (ids,), dynamo=True, input_names=["input_ids"])
            program.save(str(path), external_data=False)
        else:
            torch.onnx.export(Logits(model), (ids,), str(path), dynamo=False, opset_version=17,
                              input_names=["input_ids"], output_names=["logits"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--exporter", choices=["legacy", "dynamo", "both"], default="dynamo")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    exporters = ["legacy", "dynamo"] if args.exporter == "both" else [args.exporter]
    for name in args.models:
        torch.manual_seed(0)
        model = CONFIGS[name]().eval()
        model.save_pretrained(args.out / name, safe_serialization=True)
        for exporter in exporters:
            path = args.out / f"{name}.{exporter}.onnx"
            start = time.perf_counter()
            try:
                export(model, path, exporter == "dynamo")
            except Exception as exc:  # report and go on
                print(f"{name} {exporter}: failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
                continue
            print(f"{name} {exporter}: {path.stat().st_size / 1e6:.0f} MB, {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
