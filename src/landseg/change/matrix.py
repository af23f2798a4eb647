"""The transition matrix, accumulated block by block: pixels and ground area from class to class.

Each block adds its pixel counts (``bincount`` of ``from * K + to``) and areas (the same counts
weighted by each pixel's ground area, ``maps.areas``) to running totals, so memory depends on the block, not the map;
partial counters of separate blocks add up with ``merge`` to the same result. Pixels that are no-data on
either date are counted apart and left out. With a confidence rule a pixel counts as changed only when
both dates are at least that sure; a change that is not becomes persistence of BEFORE's class (and is
counted as "uncertain"). The confidence of every changed pixel (the lower of the two dates) is kept as
a histogram, so changed area against any threshold comes out of one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from landseg.change.inputs import CONFIDENCE_STEPS
from landseg.classes import IGNORE_INDEX
from landseg.maps.areas import SQUARE_METRES_PER_HECTARE


@dataclass
class TransitionCounter:
    num_classes: int
    with_area: bool = True
    pixels: np.ndarray = field(init=False)
    area_m2: np.ndarray = field(init=False)
    excluded: dict = field(init=False)
    """Pixels (and m²) of the overlap left out: no-data BEFORE, no-data AFTER, either."""
    confidence_pixels: np.ndarray = field(init=False)
    confidence_m2: np.ndarray = field(init=False)
    uncertain_pixels: int = 0
    uncertain_m2: float = 0.0

    def __post_init__(self):
        k = self.num_classes
        self.pixels = np.zeros((k, k), dtype=np.int64)
        self.area_m2 = np.zeros((k, k), dtype=np.float64)
        self.excluded = {"before_nodata": 0, "after_nodata": 0, "either": 0, "either_m2": 0.0}
        self.confidence_pixels = np.zeros(CONFIDENCE_STEPS + 1, dtype=np.int64)
        self.confidence_m2 = np.zeros(CONFIDENCE_STEPS + 1, dtype=np.float64)

    def add(
        self,
        before: np.ndarray,
        after: np.ndarray,
        areas: np.ndarray | None = None,
        confidence: np.ndarray | None = None,
        min_steps: int | None = None,
    ) -> np.ndarray:
        """Count one block of class indices (``IGNORE_INDEX`` = no-data); return its from-to codes
        (``IGNORE_INDEX`` where excluded) after the confidence rule.

        ``areas`` is each pixel's ground area in m² (the block's shape); ``confidence`` the lower confidence step (0..254)
        of the two dates per pixel; ``min_steps`` the rule's threshold in those steps."""
        k = self.num_classes
        # An equal-area grid has one pixel area: counts times it, without a weight per pixel.
        uniform = areas is not None and areas.size > 0 and areas.min() == areas.max()
        scale = float(areas.flat[0]) if uniform and areas is not None else None
        weights = None if areas is None or uniform else areas
        missing_before, missing_after = before == IGNORE_INDEX, after == IGNORE_INDEX
        missing = missing_before | missing_after
        self.excluded["before_nodata"] += int(missing_before.sum())
        self.excluded["after_nodata"] += int(missing_after.sum())
        self.excluded["either"] += int(missing.sum())
        if weights is not None:
            self.excluded["either_m2"] += float(weights[missing].sum())
        elif scale is not None:
            self.excluded["either_m2"] += int(missing.sum()) * scale
        valid = ~missing
        b, a = before[valid], after[valid]  # uint8: from-to codes stay below 255 for up to 15 classes
        w = None if weights is None else weights[valid]
        if confidence is not None:
            changed = b != a
            sure = confidence[valid]
            histogram = np.bincount(sure[changed], minlength=CONFIDENCE_STEPS + 1)
            self.confidence_pixels += histogram
            if w is not None:
                self.confidence_m2 += np.bincount(sure[changed], weights=w[changed], minlength=CONFIDENCE_STEPS + 1)
            elif scale is not None:
                self.confidence_m2 += histogram * scale
            if min_steps is not None:
                doubtful = changed & (sure < min_steps)
                self.uncertain_pixels += int(doubtful.sum())
                if w is not None:
                    self.uncertain_m2 += float(w[doubtful].sum())
                elif scale is not None:
                    self.uncertain_m2 += int(doubtful.sum()) * scale
                a = np.where(doubtful, b, a)
        codes = b * np.uint8(k) + a
        counts = np.bincount(codes, minlength=k * k).reshape(k, k)
        self.pixels += counts
        if w is not None:
            self.area_m2 += np.bincount(codes, weights=w, minlength=k * k).reshape(k, k)
        elif scale is not None:
            self.area_m2 += counts * scale
        out = np.full(before.shape, IGNORE_INDEX, dtype=np.uint8)
        out[valid] = codes
        return out

    def merge(self, other: TransitionCounter) -> TransitionCounter:
        self.pixels += other.pixels
        self.area_m2 += other.area_m2
        for key in self.excluded:
            self.excluded[key] += other.excluded[key]
        self.confidence_pixels += other.confidence_pixels
        self.confidence_m2 += other.confidence_m2
        self.uncertain_pixels += other.uncertain_pixels
        self.uncertain_m2 += other.uncertain_m2
        return self


def summarize(
    counter: TransitionCounter, names: list[str], with_area: bool, thresholds: tuple[float, ...] = ()
) -> dict:
    """The matrix and what users read from it: totals per date, gains, losses, net, share changed."""
    pixels = counter.pixels
    hectares = counter.area_m2 / SQUARE_METRES_PER_HECTARE if with_area else None
    total = int(pixels.sum())
    diagonal = int(np.trace(pixels))
    classes = []
    for i, name in enumerate(names):
        row: dict[str, str | int | float] = {"class": name}
        for unit, matrix in (("pixels", pixels), ("ha", hectares)):
            if matrix is None:
                continue
            before, after, stayed = matrix[i].sum(), matrix[:, i].sum(), matrix[i, i]
            convert = int if unit == "pixels" else float
            row.update(
                {
                    f"before_{unit}": convert(before),
                    f"after_{unit}": convert(after),
                    f"gain_{unit}": convert(after - stayed),
                    f"loss_{unit}": convert(before - stayed),
                    f"net_{unit}": convert(after - before),
                }
            )
        classes.append(row)
    summary = {
        "classes": names,
        "pixels": pixels.tolist(),
        "hectares": None if hectares is None else hectares.tolist(),
        "per_class": classes,
        "compared_pixels": total,
        "changed_pixels": total - diagonal,
        "changed_share": (total - diagonal) / total if total else 0.0,
        "compared_ha": None if hectares is None else float(hectares.sum()),
        "changed_ha": None if hectares is None else float(hectares.sum() - np.trace(hectares)),
        "excluded": {
            k: (v / SQUARE_METRES_PER_HECTARE if k.endswith("m2") else v) for k, v in counter.excluded.items()
        },
    }
    summary["excluded"]["either_ha"] = summary["excluded"].pop("either_m2") if with_area else None
    if thresholds:
        summary["uncertain_pixels"] = counter.uncertain_pixels
        summary["uncertain_ha"] = counter.uncertain_m2 / SQUARE_METRES_PER_HECTARE if with_area else None
        summary["changed_vs_confidence"] = confidence_curve(counter, thresholds, with_area)
    return summary


def confidence_curve(counter: TransitionCounter, thresholds: tuple[float, ...], with_area: bool) -> list[dict]:
    """Changed pixels (and ha) whose both dates are at least P confident, for each P."""
    pixels_at_least = np.cumsum(counter.confidence_pixels[::-1])[::-1]
    area_at_least = np.cumsum(counter.confidence_m2[::-1])[::-1] / SQUARE_METRES_PER_HECTARE
    rows = []
    for p in thresholds:
        step = threshold_steps(p)
        row: dict[str, float | None] = {
            "min_confidence": p,
            "changed_pixels": int(pixels_at_least[step]) if step <= CONFIDENCE_STEPS else 0,
        }
        row["changed_ha"] = (float(area_at_least[step]) if step <= CONFIDENCE_STEPS else 0.0) if with_area else None
        rows.append(row)
    return rows


def threshold_steps(p: float) -> int:
    """The least confidence step that is at least ``p`` (steps are ``value / 254``)."""
    return int(np.ceil(p * CONFIDENCE_STEPS - 1e-9))
