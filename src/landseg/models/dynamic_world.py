"""The network architecture of Dynamic World (Brown et al. 2022), computing what its SavedModel does.

Read from the SavedModel's graph (``tools/convert_dynamic_world.py`` converts its variables):

- a full-resolution stem, 3x3 convolution 9 -> 64;
- ``tf.image.resize(..., (H // 2, W // 2), bilinear, antialias=True)`` (ScaleAndTranslate with the
  triangle kernel widened to the downscale), so everything after it runs at half resolution;
- two residual blocks (64 -> 96 -> 144) and a 64 -> 48 side branch of the resized stem, concatenated;
- a third residual block (192 -> 144), bilinear upsampling back to (H, W) (half-pixel centres, no
  antialias), L2 normalization over channels and a 1x1 convolution to 9 logits (``head``).

Every convolution is followed by batch normalization (epsilon 1e-3) and Mish. A residual block is
three "separable" units (here pointwise 1x1 first, then depthwise 3x3, each with its own norm and Mish)
plus a 1x1 shortcut, summed. Any H, W >= 2 works; odd sides are fine, because both resizes take their
sizes from the input (H // 2 down, H up).

Only the architecture lives here, so that ``build_model(ModelSpec("dynamic_world", ...))`` rebuilds a
network fine-tuned from it with another number of classes (``num_classes`` sizes ``head``). The published
weights, and the zoo model that predicts with them, are ``landseg.zoo.dynamic_world``.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

IN_BANDS = 9
NUM_CLASSES = 9
BN_EPSILON = 1e-3
"""Keras' default, and what every FusedBatchNormV3 of the graph uses (torch's default is 1e-5)."""
L2_EPSILON = 1e-12
"""``tf.math.l2_normalize``'s floor on the sum of squares."""
HEAD = "head"
"""The final classification layer: the one layer whose shape depends on the number of classes."""


class ConvNormMish(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, depthwise: bool = False):
        groups = in_channels if depthwise else 1
        super().__init__()
        # TensorFlow's SAME padding for odd kernels at stride 1 is symmetric, so plain padding matches it.
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups)
        self.norm = nn.BatchNorm2d(out_channels, eps=BN_EPSILON)
        self.act = nn.Mish()


class SeparableUnit(nn.Sequential):
    """Pointwise, then depthwise: the order the SavedModel's layers run in (Keras' SeparableConv2D is the reverse)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pointwise = ConvNormMish(in_channels, out_channels)
        self.depthwise = ConvNormMish(out_channels, out_channels, kernel=3, depthwise=True)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, units: int = 3):
        super().__init__()
        widths = [in_channels] + [out_channels] * units
        self.units = nn.Sequential(*(SeparableUnit(a, b) for a, b in itertools.pairwise(widths)))
        self.shortcut = ConvNormMish(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(x) + self.shortcut(x)


class DynamicWorldNet(nn.Module):
    """``(N, in_channels, H, W)`` normalized bands to ``(N, num_classes, H, W)`` logits.

    The defaults are the published network's: B2, B3, B4, B5, B6, B7, B8, B11, B12 in, 9 classes out.
    """

    def __init__(self, in_channels: int = IN_BANDS, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.stem = ConvNormMish(in_channels, 64, kernel=3)
        self.block1 = ResidualBlock(64, 96)
        self.block2 = ResidualBlock(96, 144)
        self.side = SeparableUnit(64, 48)
        self.block3 = ResidualBlock(144 + 48, 144)
        self.head = nn.Conv2d(144, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if min(size) < 2:
            raise ValueError(f"Dynamic World needs inputs of at least 2 x 2 pixels, got {tuple(size)}")
        x = self.stem(x)
        # torch's antialiased bilinear is the same triangle filter as ScaleAndTranslate's (to ~1e-7). It has
        # no bfloat16 kernel, so under bf16 autocast it runs in float32 and hands back the autocast dtype.
        dtype = x.dtype
        x = F.interpolate(
            x.float(), size=(size[0] // 2, size[1] // 2), mode="bilinear", align_corners=False, antialias=True
        ).to(dtype)
        x = torch.cat([self.block2(self.block1(x)), self.side(x)], dim=1)
        x = F.interpolate(self.block3(x), size=size, mode="bilinear", align_corners=False)
        x = x * torch.rsqrt(x.square().sum(dim=1, keepdim=True).clamp_min(L2_EPSILON))
        return self.head(x)
