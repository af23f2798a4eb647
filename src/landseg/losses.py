"""Segmentation losses, all multiclass and ignore-aware, composed from ``train.loss``.

Each loss is configured by its own pydantic model (``CrossEntropyConfig``, ``FocalConfig``...), whose
``criterion`` builds it; ``LossConfig``, the union of them discriminated by ``name``, is what
``train.loss`` holds, so that an unknown loss or an option the chosen loss does not take is refused when
the config is read. Adding a loss means adding its config model here (naming it in ``LossConfig``) and,
unless smp has it, its PyTorch module in ``landseg.loss_modules``.

This module imports no PyTorch, so that ``landseg.config`` (and with it ``landseg prepare``) reads configs
without loading it: each ``criterion()`` imports its module (and so PyTorch) when it builds the loss.
Dice, soft Jaccard and Lovasz-Softmax are segmentation-models-pytorch's (``tests/test_losses.py``
checks them against hand-computed values).
"""

from __future__ import annotations

import difflib
import typing
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, model_validator

from landseg.classes import IGNORE_INDEX
from landseg.section import Section, unknown_key_message

if TYPE_CHECKING:
    import torch
    from torch import nn

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
        from landseg.loss_modules import WeightedSum  # PyTorch is loaded only when a loss is built

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
        from landseg.loss_modules import CrossEntropy  # PyTorch is loaded only when a loss is built

        weights = _weight_tensor(self.class_weights, num_classes, "class_weights")
        return CrossEntropy(weights, label_smoothing=self.label_smoothing)


class FocalConfig(LossSettings):
    name: Literal["focal"] = "focal"
    gamma: float = Field(2.0, ge=0)
    """The focusing exponent."""
    alpha: ClassWeights = None
    """Per-class alpha_t (a list, or a statistic of the training masks); None = 1 for all."""

    def criterion(self, num_classes: int) -> nn.Module:
        from landseg.loss_modules import FocalLoss  # PyTorch is loaded only when a loss is built

        return FocalLoss(self.gamma, _weight_tensor(self.alpha, num_classes, "alpha"))


class _OverlapConfig(LossSettings):
    """smp's Dice and soft Jaccard losses: they average ``1 - score`` over all classes, a class absent from
    the batch adding 0."""

    smp_loss: ClassVar[str]
    """The loss class in ``segmentation_models_pytorch.losses``."""
    class_weights: ClassWeights = None
    log_loss: bool = False
    """``-log(score)`` instead of ``1 - score``."""
    smooth: float = Field(0.0, ge=0)

    def criterion(self, num_classes: int) -> nn.Module:
        # Imported here, not with the config, so that reading a config does not load PyTorch.
        import segmentation_models_pytorch as smp

        weights = _weight_tensor(self.class_weights, num_classes, "class_weights")
        options: dict[str, Any] = dict(log_loss=self.log_loss, smooth=self.smooth, ignore_index=IGNORE_INDEX)
        if weights is not None:
            options["class_weights"] = weights.tolist()
        loss_class: type[nn.Module] = getattr(smp.losses, self.smp_loss)
        return loss_class("multiclass", **options)


class DiceConfig(_OverlapConfig):
    smp_loss = "DiceLoss"
    name: Literal["dice"] = "dice"


class SoftJaccardConfig(_OverlapConfig):
    smp_loss = "JaccardLoss"
    name: Literal["soft_jaccard"] = "soft_jaccard"


class LovaszConfig(LossSettings):
    name: Literal["lovasz"] = "lovasz"
    per_image: bool = False
    """Average the loss over images instead of computing it over the whole batch."""

    def criterion(self, num_classes: int) -> nn.Module:
        from landseg.loss_modules import LovaszSoftmax  # PyTorch is loaded only when a loss is built

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
        from landseg.loss_modules import WeightedSum  # PyTorch is loaded only when a loss is built

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
    import torch  # here, so that reading a config does not load PyTorch

    return torch.tensor(weights, dtype=torch.float32)
