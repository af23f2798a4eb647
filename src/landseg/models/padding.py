"""Let a network that needs sides divisible by its stride take images of any height and width.

Encoders halve the image several times, so most networks need sides that are multiples of their
output stride. ``PadToMultiple`` mirrors the image out to the next valid size, runs the network and
crops the logits back, so every model landseg builds maps ``(N, C, H, W)`` to ``(N, K, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def padded_size(size: int, multiple: int, min_size: int = 1) -> int:
    """The smallest side ``>= max(size, min_size)`` that is a multiple of ``multiple``."""
    target = max(size, min_size)
    return -(-target // multiple) * multiple


def mirror_pad(x: torch.Tensor, bottom: int, right: int) -> torch.Tensor:
    """Reflect-pad the bottom and right edges, by more than the image side if need be.

    Mirroring keeps the padded border looking like land cover rather than a flat band the network
    never saw in training. ``reflect`` can only add fewer pixels than the side has, so small images
    are mirrored again and again (as ``numpy.pad`` does); a side of one pixel is repeated.
    """
    return _mirror_side(_mirror_side(x, bottom, dim=-2), right, dim=-1)


def _mirror_side(x: torch.Tensor, amount: int, dim: int) -> torch.Tensor:
    while amount > 0:
        if x.shape[dim] == 1:
            return F.pad(x, _end_padding(amount, dim), mode="replicate")
        step = min(amount, x.shape[dim] - 1)
        x = F.pad(x, _end_padding(step, dim), mode="reflect")
        amount -= step
    return x


def _end_padding(amount: int, dim: int) -> tuple[int, int, int, int]:
    """``F.pad`` widths (left, right, top, bottom) adding ``amount`` after the end of ``dim``."""
    return (0, amount, 0, 0) if dim == -1 else (0, 0, 0, amount)


class PadToMultiple(nn.Module):
    """Wraps ``net`` so that it accepts any input size and returns logits of the input size."""

    def __init__(self, net: nn.Module, multiple: int, min_size: int = 1):
        super().__init__()
        if multiple < 1 or min_size < 1:
            raise ValueError(f"multiple and min_size must be positive, got {multiple} and {min_size}")
        self.net = net
        self.multiple = int(multiple)
        self.min_size = int(min_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        bottom = padded_size(height, self.multiple, self.min_size) - height
        right = padded_size(width, self.multiple, self.min_size) - width
        logits = self.net(mirror_pad(x, bottom, right))
        return logits[..., :height, :width]

    def extra_repr(self) -> str:
        return f"multiple={self.multiple}, min_size={self.min_size}"
