"""Test-time augmentation: class probabilities averaged over flipped and rotated copies of a batch.

Land cover has no preferred orientation, so the dihedral group of the square is a free ensemble.
Each copy's softmax is mapped back to the original orientation before averaging.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from landseg.errors import CheckpointError, ConfigError
from landseg.predict.choices import TTA_MODES, TTAMode

# (forward, inverse) pairs acting on the last two axes of (B, C, H, W).
Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _flip(dims: tuple[int, ...]) -> Transform:
    def apply(x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, dims)

    return apply, apply


def _rotate(quarter_turns: int, then_flip: bool) -> Transform:
    def forward(x: torch.Tensor) -> torch.Tensor:
        x = torch.rot90(x, quarter_turns, dims=(-2, -1))
        return torch.flip(x, (-1,)) if then_flip else x

    def inverse(x: torch.Tensor) -> torch.Tensor:
        x = torch.flip(x, (-1,)) if then_flip else x
        return torch.rot90(x, -quarter_turns, dims=(-2, -1))

    return forward, inverse


def tta_transforms(mode: TTAMode | None) -> list[Transform]:
    """Identity alone, the four flips (none, horizontal, vertical, both), or all eight of D4."""
    if mode is None:
        return [(_identity, _identity)]
    if mode == "flips":
        return [(_identity, _identity), _flip((-1,)), _flip((-2,)), _flip((-2, -1))]
    if mode == "d4":
        return [_rotate(k, flip) for flip in (False, True) for k in range(4)]
    raise ConfigError(f"unknown test-time augmentation {mode!r}; choose one of {', '.join(TTA_MODES)} or none")


def softmax_probabilities(
    network: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, num_classes: int, transforms: list[Transform]
) -> torch.Tensor:
    """``(B, K, H, W)`` float32 softmax of ``network`` on ``batch``, averaged over ``transforms``.

    Square inputs only when a transform rotates; logits at a different resolution than the input
    (models that predict at a coarser stride) are upsampled bilinearly first.
    """
    height, width = batch.shape[-2:]
    total: torch.Tensor | None = None
    for forward, inverse in transforms:
        logits = network(forward(batch))
        if logits.ndim != 4 or logits.shape[1] != num_classes:
            raise CheckpointError(
                f"network returned shape {tuple(logits.shape)}; expected (batch, {num_classes} classes, H, W)"
            )
        logits = inverse(logits.float())
        if logits.shape[-2:] != (height, width):
            logits = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        probabilities = torch.softmax(logits, dim=1)
        total = probabilities if total is None else total + probabilities
    if total is None:
        raise ValueError("no transforms to average over; tta_transforms(None) gives the identity")
    return total / len(transforms)
