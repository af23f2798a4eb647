"""Flagged pixels as regions: 4-connected areas of suspected label issues, each with its given class,
its likely class, its size in pixels (and its ground area in m², from ``maps.areas``, on a georeferenced
grid), its confidences and its polygon.

Regions smaller than ``min_pixels`` are left out (scattered pixels along class borders are the model's
own uncertainty more often than a wrong label). Polygons come from ``maps.polygons.strip_polygons``,
the polygonization of ``landseg predict``, in pixel coordinates (column, row); 4-connected regions and
4-connected polygons are the same sets of pixels, so each region is exactly one polygon (holes kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from landseg.audit.issues import ImageIssues
from landseg.classes import IGNORE_INDEX
from landseg.maps.polygons import strip_polygons


@dataclass
class Region:
    image: str
    region: int
    """1-based, per image; the value of the region in ``label_regions``' raster."""
    given: int
    likely: int
    pixels: int
    area_m2: float | None
    given_confidence: float
    """Mean probability of the given class over the region."""
    likely_confidence: float
    """Mean probability of the likely class over the region."""
    bounds: tuple[int, int, int, int]
    """Row and column bounds ``(top, left, bottom, right)``, bottom and right exclusive."""
    polygon: object
    """shapely polygon in pixel coordinates (x = column, y = row)."""

    @property
    def severity(self) -> float:
        """Pixels weighted by how little the model believes the given label: the regions.csv order."""
        return self.pixels * (1.0 - self.given_confidence)


def label_regions(flagged: np.ndarray, min_pixels: int = 1) -> np.ndarray:
    """``(H, W)`` int32 region numbers 1..n of the 4-connected flagged areas of at least ``min_pixels``; 0 elsewhere."""
    numbers, count = ndimage.label(flagged)
    if count == 0:
        return numbers.astype(np.int32)
    sizes = np.bincount(numbers.ravel(), minlength=count + 1)
    keep = sizes >= max(1, min_pixels)
    keep[0] = False
    renumber = np.zeros(count + 1, dtype=np.int32)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return renumber[numbers]


def describe_regions(
    key: str,
    numbers: np.ndarray,
    labels: np.ndarray,
    issues: ImageIssues,
    num_classes: int,
    pixel_areas: np.ndarray | None,
) -> list[Region]:
    """The regions of one image, in region-number order; ``pixel_areas`` is each pixel's ground area in m²
    (``numbers``' shape), None without one."""
    count = int(numbers.max()) if numbers.size else 0
    if count == 0:
        return []
    inside = numbers > 0
    ids = numbers[inside].astype(np.int64)
    size = np.bincount(ids, minlength=count + 1)
    given = np.bincount(ids * num_classes + labels[inside], minlength=(count + 1) * num_classes)
    likely = np.bincount(ids * num_classes + issues.likely[inside], minlength=(count + 1) * num_classes)
    given_class = given.reshape(count + 1, num_classes).argmax(axis=1)
    likely_class = likely.reshape(count + 1, num_classes).argmax(axis=1)
    given_p = np.bincount(ids, weights=issues.given_confidence[inside], minlength=count + 1)
    likely_p = np.bincount(ids, weights=issues.likely_confidence[inside], minlength=count + 1)
    area = None if pixel_areas is None else np.bincount(ids, weights=pixel_areas[inside], minlength=count + 1)
    boxes = ndimage.find_objects(numbers)
    polygons = region_polygons(numbers)
    regions = []
    for number in range(1, count + 1):
        rows, cols = boxes[number - 1]
        pixels = int(size[number])
        regions.append(
            Region(
                image=key,
                region=number,
                given=int(given_class[number]),
                likely=int(likely_class[number]),
                pixels=pixels,
                area_m2=None if area is None else float(area[number]),
                given_confidence=float(given_p[number] / pixels),
                likely_confidence=float(likely_p[number] / pixels),
                bounds=(rows.start, cols.start, rows.stop, cols.stop),
                polygon=polygons.get(number),
            )
        )
    return regions


def region_polygons(numbers: np.ndarray) -> dict[int, object]:
    """Region number to its polygon in pixel coordinates."""
    # strip_polygons traces every value but IGNORE_INDEX: region n becomes IGNORE_INDEX + n, the rest IGNORE_INDEX.
    coded = np.where(numbers > 0, numbers.astype(np.int64) + IGNORE_INDEX, IGNORE_INDEX).astype(np.int32)
    polygons: dict[int, object] = {}
    for value, polygon in strip_polygons(lambda top, bottom: coded[top:bottom], coded.shape[0]):
        number = value - IGNORE_INDEX
        if number in polygons:  # cannot happen for 4-connected regions; joined to stay one row per region
            import shapely

            polygon = shapely.union_all([polygons[number], polygon])
        polygons[number] = polygon
    return polygons
