"""Writes the small PyTorch-exported fixtures of tests/fixtures/torch/ (kilobytes each, random
weights, seeded): each net through both ONNX exporters (``<name>.legacy.onnx``, TorchScript,
opset 17; ``<name>.dynamo.onnx``), and the sequential one also as a safetensors state_dict.
tests/test_torch_exports.py reads them without PyTorch.

    /path/to/python-with-torch tests/export_torch_fixtures.py [--out tests/fixtures/torch]

The nets hold the layers of modern vision networks: an inverted residual block with a
depthwise convolution, SiLU and squeeze-and-excitation (MobileNet/EfficientNet), a ConvNeXt
block (channels-last LayerNorm, Linear, GELU, layer scale), a ShuffleNet unit (split, concat,
channel shuffle), a ResNet block whose last batch norm is zero (``zero_init_residual``), a
pre-activation DenseNet layer and an MLP with LayerNorm. Batch norms get random statistics, so
folding them is not a no-op.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).parent / "fixtures" / "torch"


def randomise_norms(net: nn.Module) -> nn.Module:
    """Random affine parameters and running statistics for every batch and layer norm."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.normal_(m.bias)
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.normal_(m.bias)
    return net


class MBConv(nn.Module):
    """Conv-BN-SiLU stem, depthwise conv, squeeze-and-excitation, projection, residual."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.SiLU())
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.SiLU())
        self.se_reduce, self.se_expand = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)
        self.project = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        h = self.depthwise(x)
        gate = torch.sigmoid(self.se_expand(torch.relu(self.se_reduce(h.mean((2, 3), keepdim=True)))))
        return self.head(x + self.project(h * gate))


class ConvNeXtBlock(nn.Module):
    """Patchify stem, then a ConvNeXt block in channels-last with layer scale."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.norm = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 8)
        self.gamma = nn.Parameter(torch.rand(8) + 0.1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        h = self.norm(self.dw(x).permute(0, 2, 3, 1))
        h = (self.gamma * self.fc2(nn.functional.gelu(self.fc1(h)))).permute(0, 3, 1, 2)
        return self.head(x + h)


class ShuffleUnit(nn.Module):
    """Split the channels, convolve one half, concatenate, shuffle."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, groups=4))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        left, right = x.chunk(2, dim=1)
        x = torch.cat((left, self.branch(right)), dim=1)
        b, c, h, w = x.shape
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        return self.head(x)


class ZeroInitBlock(nn.Module):
    """A ResNet basic block whose last batch norm has zero scale (``zero_init_residual``)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.head(torch.relu(x + h))


class DenseLayer(nn.Module):
    """DenseNet's pre-activation layer: BN-ReLU-conv on a concatenation."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norm, self.conv = nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, padding=1)
        self.norm2, self.head = nn.BatchNorm2d(12), nn.Conv2d(12, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat((x, self.conv(torch.relu(self.norm(x)))), dim=1)
        return self.head(torch.relu(self.norm2(x)))


def layernorm_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 16), nn.LayerNorm(16),
                         nn.ReLU(), nn.Linear(16, 3))


NETS = {"mbconv": (MBConv, (1, 3, 8, 8)), "convnext_block": (ConvNeXtBlock, (1, 3, 8, 8)),
        "shuffle_unit": (ShuffleUnit, (1, 3, 8, 8)), "zero_init_block": (ZeroInitBlock, (1, 3, 8, 8)),
        "dense_layer": (DenseLayer, (1, 3, 8, 8)), "layernorm_mlp": (layernorm_mlp, (1, 12))}


def export(name: str, out: Path) -> None:
    """Both exporters' files of one net (and the state_dict of the MLP)."""
    make, shape = NETS[name]
    torch.manual_seed(0)
    net = randomise_norms(make()).eval()
    if name == "zero_init_block":
        nn.init.zeros_(net.bn2.weight)
    x = torch.randn(*shape)
    torch.onnx.export(net, (x,), str(out / f"{name}.legacy.onnx"), dynamo=False, opset_version=17)
    torch.onnx.export(net, (x,), str(out / f"{name}.dynamo.onnx"), dynamo=True, external_data=False)
    if name == "layernorm_mlp":
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(out / f"{name}.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in NETS:
        export(name, args.out)
        print(name, sorted(p.name for p in args.out.glob(f"{name}.*")))


if __name__ == "__main__":
    main()
