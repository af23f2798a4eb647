"""Segmentation losses, all multiclass and ignore-aware, composed from ``train.loss``.

Each loss is configured by its own pydantic model (``CrossEntropyConfig``, ``FocalConfig``...), whose
``criterion`` builds it; ``LossConfig``, the union of them discriminated by ``name``, is what
``train.loss`` holds, so that an unknown loss or an option the chosen loss does not take is refused when
the config is read. Adding a loss means adding its module and its config model here, and naming the
config in ``LossConfig``.

Every loss takes raw logits ``(N, K, H, W)`` and targets ``(N, H, W)`` with ``IGNORE_INDEX`` marking
unlabelled pixels, which never contribute to the loss or its gradient; a batch without a single
labelled pixel gives a zero loss with zero (not NaN) gradients.

Dice, soft Jaccard and Lovasz-Softmax are segmentation-models-pytorch's (``tests/test_losses.py``
checks them against hand-computed values). The focal loss is written here because smp's multiclass
``FocalLoss`` is a one-vs-rest *sigmoid* focal loss, not the softmax focal loss of Lin et al. (2017)
that the seeds mean; cross-entropy is PyTorch's, normalized without dividing zero by zero.
"""

from __future__ import annotations

import difflib
import typing
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, model_validator
from torch import nn

from landseg.classes import IGNORE_INDEX
from landseg.section import Section, unknown_key_message

ClassWeighting = Literal["median_frequency", "inverse_frequency", "inverse_share"]
"""Class weights computed from the training masks (see ``statistical_class_weights``)."""


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
        value = getattr(config, option, None)
        if isinstance(value, str):
            weights = statistical_class_weights(value, pixels, present_image_pixels)
            updates[option] = [float(w) for w in weights]
    if isinstance(config, SumConfig):
        updates["terms"] = [resolve_class_weights(t, pixels, present_image_pixels) for t in config.terms]
    return config.model_copy(update=updates)


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


# -- configs: one pydantic model per loss, each building its module -----------------------------------
def _non_negative(weights: Any) -> Any:
    if isinstance(weights, list) and (not weights or any(w < 0 for w in weights)):
        raise ValueError(f"class weights must be non-negative numbers, one per class, got {weights}")
    return weights


ClassWeights = Annotated[ClassWeighting | list[float] | None, AfterValidator(_non_negative)]
"""One weight per class, or a statistic of the training masks (resolved by ``resolve_class_weights``)."""


class LossSettings(Section):
    """What every loss config has: its ``name`` (the union's discriminator) and its ``weight`` in a sum.

    Options of other losses are refused with the loss they belong to, except at their default values:
    older versions wrote every loss's options, at their defaults, into configs and checkpoints.
    """

    name: str
    weight: float = Field(1.0, ge=0)
    """Factor of this loss in a sum (seed 002: ``(1 - alpha) * CE + alpha * L'``)."""

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        own = cls.user_keys()
        kept = {}
        for key, value in data.items():
            if key in own:
                kept[key] = value
                continue
            owners = [c for c in loss_configs().values() if key in c.model_fields]
            if not owners:
                raise ValueError(
                    unknown_key_message(key, set().union(*(c.user_keys() for c in loss_configs().values())))
                )
            if any(value != owner.model_fields[key].get_default(call_default_factory=True) for owner in owners):
                belongs = " and ".join(owner.model_fields["name"].default for owner in owners)
                raise ValueError(
                    f"loss {cls.model_fields['name'].default!r} does not take {key!r} (it belongs to {belongs})"
                )
        return kept

    def build(self, num_classes: int) -> nn.Module:
        """The loss module for ``num_classes`` classes, scaled by ``weight``."""
        loss = self.criterion(num_classes)
        return loss if self.weight == 1.0 else WeightedSum([loss], [self.weight])

    def criterion(self, num_classes: int) -> nn.Module:
        """The loss module, unweighted."""
        raise NotImplementedError


class CrossEntropyConfig(LossSettings):
    name: Literal["ce"] = "ce"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: ClassWeights = None

    def criterion(self, num_classes: int) -> nn.Module:
        weights = _weight_tensor(self.class_weights, num_classes, "class_weights")
        return CrossEntropy(weights, label_smoothing=self.label_smoothing)


class FocalConfig(LossSettings):
    name: Literal["focal"] = "focal"
    gamma: float = Field(2.0, ge=0)
    """The focusing exponent."""
    alpha: ClassWeights = None
    """Per-class alpha_t (a list, or a statistic of the training masks); None = 1 for all."""

    def criterion(self, num_classes: int) -> nn.Module:
        return FocalLoss(self.gamma, _weight_tensor(self.alpha, num_classes, "alpha"))


class _OverlapConfig(LossSettings):
    """smp's Dice and soft Jaccard losses: they average ``1 - score`` over all classes, a class absent from
    the batch adding 0."""

    smp_loss: ClassVar[type[nn.Module]]
    class_weights: ClassWeights = None
    log_loss: bool = False
    """``-log(score)`` instead of ``1 - score``."""
    smooth: float = Field(0.0, ge=0)

    def criterion(self, num_classes: int) -> nn.Module:
        weights = _weight_tensor(self.class_weights, num_classes, "class_weights")
        options: dict[str, Any] = dict(log_loss=self.log_loss, smooth=self.smooth, ignore_index=IGNORE_INDEX)
        if weights is not None:
            options["class_weights"] = weights.tolist()
        return self.smp_loss("multiclass", **options)


class DiceConfig(_OverlapConfig):
    smp_loss = smp.losses.DiceLoss
    name: Literal["dice"] = "dice"


class SoftJaccardConfig(_OverlapConfig):
    smp_loss = smp.losses.JaccardLoss
    name: Literal["soft_jaccard"] = "soft_jaccard"


class LovaszConfig(LossSettings):
    name: Literal["lovasz"] = "lovasz"
    per_image: bool = False
    """Average the loss over images instead of computing it over the whole batch."""

    def criterion(self, num_classes: int) -> nn.Module:
        return LovaszSoftmax(per_image=self.per_image)


class SumConfig(LossSettings):
    name: Literal["sum"] = "sum"
    terms: list[LossConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_terms(self) -> SumConfig:
        if not self.terms:
            raise ValueError("loss 'sum' needs terms, e.g. [{name: ce, weight: 0.5}, {name: lovasz, weight: 0.5}]")
        return self

    def criterion(self, num_classes: int) -> nn.Module:
        return WeightedSum([t.criterion(num_classes) for t in self.terms], [t.weight for t in self.terms])


def loss_configs() -> dict[str, type[LossSettings]]:
    """Every loss config by its name, as ``LossConfig`` lists them."""
    members = typing.get_args(typing.get_args(LossConfig)[0])
    return {member.model_fields["name"].default: member for member in members}


def _named(value: Any) -> Any:
    """A loss mapping without a name is cross-entropy (as it always was); an unknown name is refused with
    the closest known one."""
    if not isinstance(value, dict):
        return value
    name = value.get("name", "ce")
    known = list(loss_configs())
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown loss {name!r}{hint}; losses: {', '.join(known)}")
    return {**value, "name": name}


LossConfig = Annotated[
    CrossEntropyConfig | FocalConfig | DiceConfig | SoftJaccardConfig | LovaszConfig | SumConfig,
    Field(discriminator="name"),
    BeforeValidator(_named),
]
"""One loss (``train.loss``), or a weighted sum of losses: ``{name: sum, terms: [{name: ce, weight: 0.5}, ...]}``."""


SumConfig.model_rebuild()
_LOSS_ADAPTER: TypeAdapter[LossConfig] = TypeAdapter(LossConfig)


def parse_loss(data: dict[str, Any]) -> LossConfig:
    """The loss config ``data`` describes (``{name: focal, gamma: 2}``); pydantic's ValidationError otherwise."""
    return _LOSS_ADAPTER.validate_python(data)


def build_loss(config: LossConfig, num_classes: int) -> nn.Module:
    """The loss ``config`` describes; statistic names in it must be resolved first
    (``resolve_class_weights``)."""
    return config.build(num_classes)


def _weight_tensor(weights: ClassWeights, num_classes: int, option: str) -> torch.Tensor | None:
    if weights is None:
        return None
    if isinstance(weights, str):
        raise ValueError(f"loss {option} {weights!r} must be resolved to numbers first (resolve_class_weights)")
    if len(weights) != num_classes:
        raise ValueError(f"loss {option} has {len(weights)} values but the schema has {num_classes} classes")
    return torch.tensor(weights, dtype=torch.float32)
