"""Random-weight ONNX exports of modern vision architectures (and three small custom nets).

Each model is built with random weights (``torch.manual_seed(0)`` before each one, ``.eval()``,
``weights=None`` / ``pretrained=False``: nothing is downloaded) and exported with
``torch.onnx.export`` on one input of batch size 1:

* torchvision: resnet18, resnet50, resnext50_32x4d, vgg11, densenet121, squeezenet1_0,
  googlenet (``aux_logits=False, init_weights=True``), mobilenet_v2, mobilenet_v3_small,
  mobilenet_v3_large, efficientnet_b0, regnet_y_400mf, shufflenet_v2_x1_0, convnext_tiny, and
  resnet18(``zero_init_residual=True``) as ``resnet18_zero_init``; input (1, 3, 224, 224);
* timm: resnet18 and efficientnet_b0, saved as ``timm_resnet18`` and ``timm_efficientnet_b0``;
  input (1, 3, 224, 224);
* custom: ``conv1d_cnn`` (three Conv1d with a ReLU after the first two, input (1, 4, 64)),
  ``mlp_layernorm`` (Linear 32->64, LayerNorm, ReLU, Linear 64->64, LayerNorm, ReLU,
  Linear 64->10, input (1, 32)) and ``lstm`` (LSTM 8->16, batch first, then Linear 16->4 on the
  last step, input (1, 12, 8)).

Exporters (``--exporter``): ``legacy`` (TorchScript, ``dynamo=False``, opset 17) writes
``<name>.legacy.onnx``; ``dynamo`` (``dynamo=True``) writes ``<name>.dynamo.onnx`` with its
weights inside the file (an external ``.data`` file, if one appears, is folded back in).
A model that fails to build or export prints its one-line reason and the script goes on; each
model and exporter prints one line: name, exporter, file size in MB and seconds (building the
model included), or the reason.

The state_dicts of ``mlp_layernorm`` and of a small net of Hugging Face ``Conv1D`` layers
(skipped when ``transformers`` is not installed) are also saved as ``.safetensors``.
``manifest.json`` in the out folder lists every file of this run: model name, family
(torchvision / timm / custom), exporter (or format), torch / torchvision / timm versions and
sha256.

Run it with the separate PyTorch environment (not the project's .venv):

    /tmp/torchenv/bin/python benchmarks/export_torch_models.py --out DIR [--models ...]
        [--exporter dynamo|legacy|both]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import timm
import torch
import torchvision
from torch import nn

IMAGE_INPUT = (1, 3, 224, 224)
LEGACY_OPSET = 17


# --------------------------------------------------------------------------- custom models


class Conv1dCNN(nn.Sequential):
    """Three Conv1d layers, 4 -> 16 -> 32 -> 8 channels, with a ReLU after the first two."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv1d(4, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(32, 8, kernel_size=3, padding=1),
        )


class MLPLayerNorm(nn.Sequential):
    """Linear 32->64, LayerNorm, ReLU, Linear 64->64, LayerNorm, ReLU, Linear 64->10."""

    def __init__(self) -> None:
        super().__init__(
            nn.Linear(32, 64),
            nn.LayerNorm(64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.LayerNorm(64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )


class SmallLSTM(nn.Module):
    """LSTM (input 8, hidden 16, batch first), then Linear 16->4 on the last time step."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=8, hidden_size=16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


# --------------------------------------------------------------------------- the model table

tv = torchvision.models

# name -> (family, builder, input shape)
MODELS: dict[str, tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet18": ("torchvision", lambda: tv.resnet18(weights=None), IMAGE_INPUT),
    "resnet50": ("torchvision", lambda: tv.resnet50(weights=None), IMAGE_INPUT),
    "resnext50_32x4d": ("torchvision", lambda: tv.resnext50_32x4d(weights=None), IMAGE_INPUT),
    "vgg11": ("torchvision", lambda: tv.vgg11(weights=None), IMAGE_INPUT),
    "densenet121": ("torchvision", lambda: tv.densenet121(weights=None), IMAGE_INPUT),
    "squeezenet1_0": ("torchvision", lambda: tv.squeezenet1_0(weights=None), IMAGE_INPUT),
    "googlenet": (
        "torchvision",
        lambda: tv.googlenet(weights=None, aux_logits=False, init_weights=True),
        IMAGE_INPUT,
    ),
    "mobilenet_v2": ("torchvision", lambda: tv.mobilenet_v2(weights=None), IMAGE_INPUT),
    "mobilenet_v3_small": (
        "torchvision",
        lambda: tv.mobilenet_v3_small(weights=None),
        IMAGE_INPUT,
    ),
    "mobilenet_v3_large": (
        "torchvision",
        lambda: tv.mobilenet_v3_large(weights=None),
        IMAGE_INPUT,
    ),
    "efficientnet_b0": ("torchvision", lambda: tv.efficientnet_b0(weights=None), IMAGE_INPUT),
    "regnet_y_400mf": ("torchvision", lambda: tv.regnet_y_400mf(weights=None), IMAGE_INPUT),
    "shufflenet_v2_x1_0": (
        "torchvision",
        lambda: tv.shufflenet_v2_x1_0(weights=None),
        IMAGE_INPUT,
    ),
    "convnext_tiny": ("torchvision", lambda: tv.convnext_tiny(weights=None), IMAGE_INPUT),
    "resnet18_zero_init": (
        "torchvision",
        lambda: tv.resnet18(weights=None, zero_init_residual=True),
        IMAGE_INPUT,
    ),
    "timm_resnet18": (
        "timm",
        lambda: timm.create_model("resnet18", pretrained=False),
        IMAGE_INPUT,
    ),
    "timm_efficientnet_b0": (
        "timm",
        lambda: timm.create_model("efficientnet_b0", pretrained=False),
        IMAGE_INPUT,
    ),
    "conv1d_cnn": ("custom", Conv1dCNN, (1, 4, 64)),
    "mlp_layernorm": ("custom", MLPLayerNorm, (1, 32)),
    "lstm": ("custom", SmallLSTM, (1, 12, 8)),
}

VERSIONS = {
    "torch": torch.__version__,
    "torchvision": torchvision.__version__,
    "timm": timm.__version__,
}


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model ``name`` with seed-0 random weights in eval mode, and a seed-0 random input."""
    _, builder, shape = MODELS[name]
    torch.manual_seed(0)
    model = builder().eval()
    return model, torch.randn(*shape)


# --------------------------------------------------------------------------- exporting


def remove(path: Path) -> None:
    """Delete ``path`` and its external-data file, left over from an earlier run or a failure."""
    for p in (path, path.with_name(path.name + ".data")):
        p.unlink(missing_ok=True)


def export_legacy(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=LEGACY_OPSET)


def export_dynamo(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    """Dynamo export with the weights inside the .onnx file; a ``.data`` file is folded back."""
    # The dynamo exporter prints its progress; keep the one-line-per-model output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False)
    data = [p for p in path.parent.glob(path.name + "*") if p != path]
    if data:
        proto = onnx.load(str(path), load_external_data=True)
        onnx.save(proto, str(path), save_as_external_data=False)
        for p in data:
            p.unlink()


EXPORTERS = {"legacy": export_legacy, "dynamo": export_dynamo}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def entry(path: Path, model: str, family: str, **fields: str | None) -> dict:
    """One manifest entry for the file ``path``."""
    return {
        "file": path.name,
        "model": model,
        "family": family,
        **fields,
        "size_bytes": path.stat().st_size,
        "versions": VERSIONS,
        "sha256": sha256(path),
    }


def reason(exc: BaseException) -> str:
    """The exception's type and the first non-empty line of its message, at most 200 chars."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:200]


def export_model(name: str, exporters: list[str], out: Path) -> list[dict]:
    """Export ``name`` with each exporter, printing one line each; the manifest entries made."""
    family = MODELS[name][0]
    entries = []
    for exporter in exporters:
        path = out / f"{name}.{exporter}.onnx"
        remove(path)
        start = time.perf_counter()
        try:
            model, x = build(name)
            with torch.no_grad():
                EXPORTERS[exporter](model, x, path)
        except Exception as exc:  # any failure: report it and go on with the next one
            remove(path)
            print(
                f"{name:22s} {exporter:7s} FAILED after {time.perf_counter() - start:.1f} s: "
                f"{reason(exc)}",
                flush=True,
            )
            continue
        seconds = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        print(f"{name:22s} {exporter:7s} {size_mb:9.2f} MB {seconds:7.1f} s", flush=True)
        entries.append(entry(path, name, family, exporter=exporter, format="onnx"))
    return entries


# --------------------------------------------------------------------------- safetensors


class HFConv1DNet(nn.Module):
    """Two Hugging Face ``Conv1D`` layers (GPT-2's transposed Linear), 32 -> 64 -> 10."""

    def __init__(self, conv1d: type[nn.Module]) -> None:
        super().__init__()
        self.c_fc = conv1d(64, 32)  # Conv1D(nf=out features, nx=in features)
        self.act = nn.ReLU()
        self.c_proj = conv1d(10, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


def save_state_dicts(out: Path) -> list[dict]:
    """``mlp_layernorm.safetensors`` and, with transformers installed, ``hf_conv1d.safetensors``."""
    from safetensors.torch import save_file

    entries = []
    torch.manual_seed(0)
    path = out / "mlp_layernorm.safetensors"
    save_file(MLPLayerNorm().eval().state_dict(), str(path))
    print(f"{path.name:30s} {path.stat().st_size / 1e6:9.2f} MB", flush=True)
    entries.append(entry(path, "mlp_layernorm", "custom", exporter=None, format="safetensors"))

    path = out / "hf_conv1d.safetensors"
    path.unlink(missing_ok=True)
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        print("hf_conv1d.safetensors skipped: transformers is not installed", flush=True)
        return entries
    torch.manual_seed(0)
    save_file(HFConv1DNet(Conv1D).eval().state_dict(), str(path))
    print(f"{path.name:30s} {path.stat().st_size / 1e6:9.2f} MB", flush=True)
    entries.append(entry(path, "hf_conv1d", "custom", exporter=None, format="safetensors"))
    return entries


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the files")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--exporter", choices=["dynamo", "legacy", "both"], default="both")
    args = parser.parse_args()

    exporters = ["legacy", "dynamo"] if args.exporter == "both" else [args.exporter]
    args.out.mkdir(parents=True, exist_ok=True)
    print(", ".join(f"{k} {v}" for k, v in VERSIONS.items()) + f", onnx {onnx.__version__}")

    start = time.perf_counter()
    entries = []
    for name in args.models:
        entries += export_model(name, exporters, args.out)
    entries += save_state_dicts(args.out)

    manifest = args.out / "manifest.json"
    manifest.write_text(json.dumps({"versions": VERSIONS, "files": entries}, indent=2) + "\n")
    print(
        f"{len(entries)} files and {manifest.name} in {args.out}, "
        f"{time.perf_counter() - start:.1f} s in all",
        flush=True,
    )


if __name__ == "__main__":
    main()
