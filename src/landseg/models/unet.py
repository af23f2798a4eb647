"""The classic U-Net of Ronneberger et al. (2015), written out, with configurable widths.

Differences from the paper, as the seeds use it: convolutions are padded ("same") so the output
has the input's size, and BatchNorm follows every convolution. Sides must be multiples of
``2 ** (len(widths) - 1)``; ``build_model`` wraps the network so that any size works.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

RONNEBERGER_WIDTHS = (64, 128, 256, 512, 1024)


class DoubleConv(nn.Sequential):
    """(3x3 conv, BatchNorm, ReLU, dropout) twice."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        layers: list[nn.Module] = []
        for channels in (in_channels, out_channels):
            layers += [
                # No bias: BatchNorm's shift would cancel it.
                nn.Conv2d(channels, out_channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            if dropout > 0:
                # Whole feature maps are dropped: neighbouring pixels are too correlated for
                # element-wise dropout to regularize much.
                layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UpBlock(nn.Module):
    """Transposed convolution doubling the size and halving the channels, skip concat, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class ClassicUNet(nn.Module):
    """U-Net returning logits ``(N, num_classes, H, W)`` for inputs ``(N, in_channels, H, W)``.

    ``widths`` are the channels of each level from the top down; the last is the bottleneck.
    Seed 000 used (64, 128, 256, 512, 1024) and (32, 64, 128, 256); seed 004 (16, 32, 64, 128, 256).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = RONNEBERGER_WIDTHS,
        dropout: float = 0.0,
    ):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError(f"a U-Net needs at least two widths (one level down), got {widths}")
        self.widths = widths
        self.stem = DoubleConv(in_channels, widths[0], dropout)
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.down = nn.ModuleList(DoubleConv(a, b, dropout) for a, b in itertools.pairwise(widths))
        self.up = nn.ModuleList(
            UpBlock(b, a, dropout) for a, b in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=False)
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this: one halving per level below the top."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(self.pool(x))
        for block, skip in zip(self.up, reversed(skips), strict=False):
            x = block(x, skip)
        return self.head(x)
