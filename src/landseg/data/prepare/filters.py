"""Which chips to keep, and a report of every chip left out and why.

Rules, checked in this order (a chip is reported under the first rule it breaks):

- ``no_label``: not a single labelled pixel (after image no-data became ignore);
- ``blank_image``: the image is constant in every band (all black, say) while the label is not;
- ``cloudy``: cloud or shadow (the ``values`` of the scene's cloud mask) covers more than ``fraction`` of
  the chip's valid pixels;
- ``low_valid_fraction``: labelled, valid-image pixels are fewer than ``min_valid_fraction`` of the chip;
- ``dominant_class``: one class (of ``classes``, default any) covers more than ``max_fraction`` of the
  chip's labelled pixels, e.g. the water-only chips of a coastal scene;
- ``top_k_dominant``: one of the k classes most frequent over all candidate chips covers more than
  ``max_fraction`` of the chip (seed 000's rule against the majority classes).

Unreadable files and windows are *quarantined*: listed with GDAL's error, and the run goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landseg.classes import ClassSchema
from landseg.data.prepare.config import FilterConfig
from landseg.errors import ConfigError
from landseg.io.write import atomic_output

RULES = ("no_label", "blank_image", "cloudy", "low_valid_fraction", "dominant_class", "top_k_dominant")


@dataclass(frozen=True)
class ChipFilter:
    drop_unlabelled: bool = True
    drop_blank_images: bool = True
    min_valid_fraction: float = 0.0
    dominant_fraction: float | None = None
    dominant_classes: tuple[int, ...] = ()
    top_k: int | None = None
    top_k_fraction: float | None = None
    frequent_classes: tuple[int, ...] = ()
    """The ``top_k`` most frequent classes, set by ``with_class_totals`` once all chips are counted."""
    max_cloud_fraction: float | None = None
    cloud_values: tuple[int, ...] = ()
    """Cloud mask values that count as cloud or shadow."""

    def __post_init__(self) -> None:
        if (self.top_k is None) != (self.top_k_fraction is None):
            raise ValueError("top_k and top_k_fraction are given together or not at all")

    @classmethod
    def from_config(cls, config: FilterConfig, schema: ClassSchema) -> ChipFilter:
        dominant, clouds = config.max_class_fraction, config.max_cloud_fraction
        classes: tuple[int, ...] = tuple(range(schema.num_classes))
        if dominant is not None and dominant.classes is not None:
            unknown = [c for c in dominant.classes if c not in schema.names]
            if unknown:
                raise ConfigError(f"filters.max_class_fraction.classes: {unknown} not in schema {schema.names}")
            classes = tuple(schema.names.index(c) for c in dominant.classes)
        return cls(
            drop_unlabelled=config.drop_unlabelled,
            drop_blank_images=config.drop_blank_images,
            min_valid_fraction=config.min_valid_fraction,
            dominant_fraction=None if dominant is None else dominant.max_fraction,
            dominant_classes=classes,
            top_k=None if config.top_k is None else config.top_k.k,
            top_k_fraction=None if config.top_k is None else config.top_k.max_fraction,
            max_cloud_fraction=None if clouds is None else clouds.fraction,
            cloud_values=() if clouds is None else tuple(clouds.values),
        )

    @property
    def needs_class_totals(self) -> bool:
        return self.top_k is not None

    @property
    def needs_cloud_masks(self) -> bool:
        return self.max_cloud_fraction is not None

    def with_class_totals(self, totals: np.ndarray) -> ChipFilter:
        """Fix the k most frequent classes from pixel totals over all candidate chips (ties: lower index)."""
        if self.top_k is None:
            return self
        order = np.argsort(-np.asarray(totals), kind="stable")[: self.top_k]
        return ChipFilter(**{**self.__dict__, "frequent_classes": tuple(int(i) for i in sorted(order))})

    def rejection(
        self, counts: np.ndarray, valid_fraction: float, blank_image: bool, cloudy_fraction: float = 0.0
    ) -> str | None:
        """The first rule a chip breaks, or None to keep it; ``cloudy_fraction`` from ``cloud_share``."""
        labelled = int(counts.sum())
        if labelled == 0:
            return "no_label" if self.drop_unlabelled else None
        if blank_image and self.drop_blank_images:
            return "blank_image"
        if self.max_cloud_fraction is not None and cloudy_fraction > self.max_cloud_fraction:
            return "cloudy"
        if valid_fraction < self.min_valid_fraction:
            return "low_valid_fraction"
        shares = counts / labelled
        if self.dominant_fraction is not None and (shares[list(self.dominant_classes)] > self.dominant_fraction).any():
            return "dominant_class"
        if self.top_k is not None and self.top_k_fraction is not None:
            if not self.frequent_classes:
                raise RuntimeError("with_class_totals must set the frequent classes before filtering")
            if (shares[list(self.frequent_classes)] > self.top_k_fraction).any():
                return "top_k_dominant"
        return None


def is_blank(data: np.ndarray, valid: np.ndarray) -> bool:
    """Every band holds a single value over the chip's valid pixels (an all-black image, say)."""
    values = data.reshape(data.shape[0], -1) if valid.all() else data[:, valid]  # no copy in the usual case
    if values.shape[1] == 0:
        return False
    return bool((values.min(axis=1) == values.max(axis=1)).all())


def cloud_share(mask: np.ndarray, valid: np.ndarray, values: tuple[int, ...], nodata: float | None) -> float:
    """Share of a chip's valid pixels that its cloud mask window marks with one of ``values``; pixels that
    are no-data in the image or in the mask count neither way."""
    counted = valid if nodata is None else valid & (mask != nodata)
    total = int(counted.sum())
    return float(np.isin(mask[counted], values).sum() / total) if total else 0.0


def missing_cloud_masks(scenes: list[str]) -> ConfigError:
    """The one-line error for scenes without a cloud mask while ``filters.max_cloud_fraction`` reads masks."""
    named = ", ".join(repr(s) for s in scenes[:3]) + (f" and {len(scenes) - 3} more" if len(scenes) > 3 else "")
    return ConfigError(
        f"filters.max_cloud_fraction needs a cloud mask for every scene; none for {named}: give "
        "input.scenes[].cloud_mask or input.cloud_masks, or filters.max_cloud_fraction.source: model"
    )


@dataclass
class FilterReport:
    candidates: int = 0
    kept: int = 0
    dropped: dict[str, list[str]] = field(default_factory=lambda: {rule: [] for rule in RULES})
    quarantined: list[dict] = field(default_factory=list)
    frequent_classes: list[str] = field(default_factory=list)
    scenes_without_chips: list[dict] = field(default_factory=list)
    """Scenes every chip of which was dropped or quarantined, with the rules that took them."""

    def keep(self) -> None:
        self.candidates += 1
        self.kept += 1

    def drop(self, chip: str, rule: str) -> None:
        self.candidates += 1
        self.dropped[rule].append(chip)

    def quarantine(self, source: str | Path, error: str, chip: str | None = None, window: str = "") -> None:
        if chip is not None:
            self.candidates += 1
        self.quarantined.append({"source": str(source), "chip": chip or "", "window": window, "error": error})

    def scene_without_chips(self, scene: str, image: str | Path, reasons: dict[str, int]) -> None:
        self.scenes_without_chips.append({"scene": scene, "image": str(image), "chips": reasons})

    def extend(self, part: FilterReport) -> None:
        """Append one scene's report, as if this report had gone on to that scene (its task may have
        run in another process)."""
        self.candidates += part.candidates
        self.kept += part.kept
        for rule, chips in part.dropped.items():
            self.dropped[rule].extend(chips)
        self.quarantined.extend(part.quarantined)
        self.scenes_without_chips.extend(part.scenes_without_chips)

    def to_dict(self) -> dict:
        return {
            "candidates": self.candidates,
            "kept": self.kept,
            "dropped": {rule: {"count": len(chips), "chips": chips} for rule, chips in self.dropped.items()},
            "quarantined": {"count": len(self.quarantined), "items": self.quarantined},
            "top_k_classes": self.frequent_classes,
            "scenes_without_chips": self.scenes_without_chips,
        }

    def write(self, path: Path) -> Path:
        with atomic_output(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2))
        return path
