"""Segmentation losses. All take raw logits ``(N, K, H, W)`` and targets ``(N, H, W)`` with
``IGNORE_INDEX`` marking unlabelled pixels, which never contribute to the loss or its gradient."""

from __future__ import annotations

import torch
from torch import nn

from landseg.classes import IGNORE_INDEX


def build_loss(name: str, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss(weight=class_weights, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
    raise ValueError(f"unknown loss {name!r}")
