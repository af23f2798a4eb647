"""The PyTorch modules of the losses that ``landseg.losses`` configures (each config's ``criterion()``
builds one), kept apart from those settings so that reading a config does not load PyTorch.

Every loss takes raw logits ``(N, K, H, W)`` and targets ``(N, H, W)`` with ``IGNORE_INDEX`` marking
unlabelled pixels, which never contribute to the loss or its gradient; a batch without a single
labelled pixel gives a zero loss with zero (not NaN) gradients.

The focal loss is written here because smp's multiclass ``FocalLoss`` is a one-vs-rest *sigmoid* focal
loss, not the softmax focal loss of Lin et al. (2017) that the seeds mean; cross-entropy is PyTorch's,
normalized without dividing zero by zero.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from landseg.classes import IGNORE_INDEX


class CrossEntropy(nn.Module):
    """PyTorch's (optionally class-weighted, label-smoothed) cross-entropy, mean over labelled pixels.

    The weighted mean divides by the summed weights of the labelled pixels' classes, as PyTorch's
    ``reduction="mean"`` does, but a batch without labelled pixels gives 0 instead of 0 / 0 = NaN.
    """

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=IGNORE_INDEX,
            label_smoothing=self.label_smoothing,
            reduction="sum",
        )
        valid = target != IGNORE_INDEX
        if self.weight is None:
            denominator = valid.sum()
        else:
            denominator = self.weight[torch.where(valid, target, 0)].mul(valid).sum()
        return total / denominator.clamp_min(1e-12)


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al., 2017): ``-alpha_t (1 - p_t)^gamma log p_t``, mean over labelled
    pixels. ``gamma = 0`` and no ``alpha`` is cross-entropy; ``alpha`` holds one ``alpha_t`` per class."""

    alpha: torch.Tensor | None

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != IGNORE_INDEX
        safe_target = torch.where(valid, target, 0)
        log_pt = F.log_softmax(logits, dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
        # (1 - p_t)^gamma has an infinite derivative at p_t = 1 when gamma < 1.
        modulation = (1 - log_pt.exp()).clamp_min(1e-6) ** self.gamma
        loss = -modulation * log_pt
        if self.alpha is not None:
            loss = loss * self.alpha[safe_target]
        return (loss * valid).sum() / valid.sum().clamp_min(1)


class LovaszSoftmax(nn.Module):
    """smp's Lovasz-Softmax (Berman et al., 2018) over the classes present in the labels.

    smp returns an empty tensor instead of a zero for images without labelled pixels; those are
    skipped here (per image) or give a zero loss (whole batch).
    """

    def __init__(self, per_image: bool = False):
        super().__init__()
        self.per_image = per_image
        self.loss = smp.losses.LovaszLoss("multiclass", per_image=False, ignore_index=IGNORE_INDEX)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = (target != IGNORE_INDEX).flatten(1).any(1).tolist()
        if not any(labelled):
            return logits.sum() * 0.0
        if not self.per_image:
            return self.loss(logits, target)
        losses = [self.loss(logits[i : i + 1], target[i : i + 1]) for i, keep in enumerate(labelled) if keep]
        return torch.stack(losses).mean()


class WeightedSum(nn.Module):
    """``sum_i weight_i * loss_i``, e.g. seed 002's ``(1 - alpha) * CE + alpha * Lovasz``."""

    def __init__(self, terms: list[nn.Module], weights: list[float]):
        super().__init__()
        if len(terms) != len(weights) or not terms:
            raise ValueError("a weighted sum needs one weight per term and at least one term")
        self.terms = nn.ModuleList(terms)
        self.weights = [float(w) for w in weights]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = self.weights[0] * self.terms[0](logits, target)
        for weight, term in zip(self.weights[1:], self.terms[1:], strict=False):
            total = total + weight * term(logits, target)
        return total
