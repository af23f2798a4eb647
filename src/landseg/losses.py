"""Segmentation losses, all multiclass and ignore-aware, composed from ``train.loss``.

Every loss takes raw logits ``(N, K, H, W)`` and targets ``(N, H, W)`` with ``IGNORE_INDEX`` marking
unlabelled pixels, which never contribute to the loss or its gradient; a batch without a single
labelled pixel gives a zero loss with zero (not NaN) gradients.

Dice, soft Jaccard and Lovasz-Softmax are segmentation-models-pytorch's (``tests/test_losses.py``
checks them against hand-computed values). The focal loss is written here because smp's multiclass
``FocalLoss`` is a one-vs-rest *sigmoid* focal loss, not the softmax focal loss of Lin et al. (2017)
that the seeds mean; cross-entropy is PyTorch's, normalized without dividing zero by zero.
"""

from __future__ import annotations

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from landseg.classes import IGNORE_INDEX
from landseg.config import LossConfig


def statistical_class_weights(method: str, pixels: np.ndarray, present_image_pixels: np.ndarray) -> np.ndarray:
    """Class weights from training statistics.

    ``pixels[c]``: labelled pixels of class ``c``; ``present_image_pixels[c]``: labelled pixels of the
    images that contain class ``c``.

    - ``median_frequency`` (Eigen and Fergus, 2015): ``f_c = pixels[c] / present_image_pixels[c]``,
      ``w_c = median(f) / f_c``.
    - ``inverse_frequency``: ``w_c = N / (K * n_c)`` over the ``K`` classes present, so a balanced set
      gets weight 1 everywhere.
    - ``inverse_share``: seed 000's ``w_c = sum(F) / F_c``, the reciprocal of the class's share.

    A class absent from the training masks is never a target, so its weight is 0 rather than infinite.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    present = pixels > 0
    if not present.any():
        raise ValueError("the training masks have no labelled pixel to compute class weights from")
    weights = np.zeros_like(pixels)
    if method == "median_frequency":
        frequency = pixels[present] / np.asarray(present_image_pixels, dtype=np.float64)[present]
        weights[present] = np.median(frequency) / frequency
    elif method == "inverse_frequency":
        weights[present] = pixels.sum() / (present.sum() * pixels[present])
    elif method == "inverse_share":
        weights[present] = pixels.sum() / pixels[present]
    else:
        raise ValueError(f"unknown class weighting {method!r}")
    return weights


def resolve_class_weights(config: LossConfig, pixels: np.ndarray, present_image_pixels: np.ndarray) -> LossConfig:
    """``config`` with every statistic name (``median_frequency``...) replaced by its numbers."""
    updates: dict = {}
    for option in ("class_weights", "alpha"):
        value = getattr(config, option)
        if isinstance(value, str):
            weights = statistical_class_weights(value, pixels, present_image_pixels)
            updates[option] = [float(w) for w in weights]
    if config.terms:
        updates["terms"] = [resolve_class_weights(t, pixels, present_image_pixels) for t in config.terms]
    return config.model_copy(update=updates)


class CrossEntropy(nn.Module):
    """PyTorch's (optionally class-weighted, label-smoothed) cross-entropy, mean over labelled pixels.

    The weighted mean divides by the summed weights of the labelled pixels' classes, as PyTorch's
    ``reduction="mean"`` does, but a batch without labelled pixels gives 0 instead of 0 / 0 = NaN.
    """

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


def build_loss(config: LossConfig, num_classes: int) -> nn.Module:
    """The loss ``config`` describes; statistic names in it must be resolved first
    (``resolve_class_weights``)."""
    loss = _build_unweighted(config, num_classes)
    return loss if config.weight == 1.0 else WeightedSum([loss], [config.weight])


def _build_unweighted(config: LossConfig, num_classes: int) -> nn.Module:
    name = config.name
    if name == "sum":
        return WeightedSum([_build_unweighted(t, num_classes) for t in config.terms], [t.weight for t in config.terms])
    if name == "ce":
        weights = _weight_tensor(config.class_weights, num_classes, "class_weights")
        return CrossEntropy(weights, label_smoothing=config.label_smoothing)
    if name == "focal":
        return FocalLoss(config.gamma, _weight_tensor(config.alpha, num_classes, "alpha"))
    if name in ("dice", "soft_jaccard"):
        weights = _weight_tensor(config.class_weights, num_classes, "class_weights")
        # smp's loss averages 1 - score over all classes, a class absent from the batch adding 0.
        options = dict(log_loss=config.log_loss, smooth=config.smooth, ignore_index=IGNORE_INDEX)
        if weights is not None:
            options["class_weights"] = weights.tolist()
        cls = smp.losses.DiceLoss if name == "dice" else smp.losses.JaccardLoss
        return cls("multiclass", **options)
    if name == "lovasz":
        return LovaszSoftmax(per_image=config.per_image)
    raise ValueError(f"unknown loss {name!r}")


def _weight_tensor(weights, num_classes: int, option: str) -> torch.Tensor | None:
    if weights is None:
        return None
    if isinstance(weights, str):
        raise ValueError(f"loss {option} {weights!r} must be resolved to numbers first (resolve_class_weights)")
    if len(weights) != num_classes:
        raise ValueError(f"loss {option} has {len(weights)} values but the schema has {num_classes} classes")
    return torch.tensor(weights, dtype=torch.float32)
