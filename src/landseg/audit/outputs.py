"""The audit's files: ranked CSVs of images and regions, the regions as a GeoPackage, per-class shares,
and the given-vs-likely confusion of the flagged pixels as a plot. Every file appears complete or not at all.

``regions.csv`` and ``regions.gpkg`` are what ``data.exclude`` reads (``landseg.data.exclude``): the
column ``image`` names each region's image by its path under the data root, the CSV carries the region
in pixel coordinates (``pixel_wkt``), the GeoPackage in map coordinates (all regions in the CRS of the
first georeferenced image; images without georeferencing are only in the CSV).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from landseg.audit.regions import Region
from landseg.classes import ClassSchema
from landseg.data.exclude import IMAGE_COLUMN, LAYER, PIXEL_GEOMETRY_COLUMN
from landseg.io.vector import Feature, first_crs, write_polygon_layer
from landseg.metrics import ConfusionMatrix
from landseg.report.plots import plot_confusion_matrix

IMAGE_COLUMNS = (
    "rank",
    IMAGE_COLUMN,
    "label_quality",
    "labelled_pixels",
    "flagged_pixels",
    "flagged_share",
    "regions",
    "region_pixels",
    "model",
)
REGION_COLUMNS = (
    "rank",
    IMAGE_COLUMN,
    "region",
    "given_class",
    "likely_class",
    "pixels",
    "area_m2",
    "given_confidence",
    "likely_confidence",
    "severity",
    "top",
    "left",
    "bottom",
    "right",
    PIXEL_GEOMETRY_COLUMN,
)
CLASS_COLUMNS = ("class", "labelled_pixels", "flagged_pixels", "flagged_share", "regions", "most_often_likely")


def _rounded(value: float | None, digits: int = 6) -> float | str:
    return "" if value is None or not np.isfinite(value) else round(float(value), digits)


def region_rows(regions: Sequence[Region], schema: ClassSchema) -> list[dict]:
    """Regions by severity, worst first, as CSV rows."""
    import shapely

    ranked = sorted(regions, key=lambda r: r.severity, reverse=True)
    return [
        {
            "rank": rank,
            IMAGE_COLUMN: r.image,
            "region": r.region,
            "given_class": schema.names[r.given],
            "likely_class": schema.names[r.likely],
            "pixels": r.pixels,
            "area_m2": _rounded(r.area_m2, 3),
            "given_confidence": _rounded(r.given_confidence, 4),
            "likely_confidence": _rounded(r.likely_confidence, 4),
            "severity": _rounded(r.severity, 2),
            "top": r.bounds[0],
            "left": r.bounds[1],
            "bottom": r.bounds[2],
            "right": r.bounds[3],
            PIXEL_GEOMETRY_COLUMN: shapely.to_wkt(r.polygon, rounding_precision=-1),
        }
        for rank, r in enumerate(ranked, start=1)
    ]


def write_regions_geopackage(path: Path, rows: Sequence[dict], regions_by_key: dict, grids: dict) -> Path | None:
    """Regions of georeferenced images in map coordinates; None when no image is georeferenced.

    ``regions_by_key`` maps ``(image, region)`` to its ``Region``; ``grids`` maps an image to its
    ``(transform, crs)``."""
    import shapely.affinity

    target = first_crs(crs for _, crs in grids.values())
    if target is None:
        return None
    features = []
    for row in rows:
        t, crs = grids[row[IMAGE_COLUMN]]
        polygon = regions_by_key[(row[IMAGE_COLUMN], row["region"])].polygon
        mapped = shapely.affinity.affine_transform(polygon, [t.a, t.b, t.d, t.e, t.c, t.f])
        features.append(Feature(mapped, crs, row))
    fields = [c for c in REGION_COLUMNS if c != PIXEL_GEOMETRY_COLUMN]
    return write_polygon_layer(path, features, fields, LAYER, target)


def class_rows(
    labelled: np.ndarray, flagged: ConfusionMatrix, regions: Sequence[Region], schema: ClassSchema
) -> list[dict]:
    """Per given class: how many of its labelled pixels look wrong, and what they most likely are."""
    counts = flagged.matrix
    region_counts = np.bincount([r.given for r in regions], minlength=schema.num_classes)
    rows = []
    for k, name in enumerate(schema.names):
        wrong = int(counts[k].sum())
        rows.append(
            {
                "class": name,
                "labelled_pixels": int(labelled[k]),
                "flagged_pixels": wrong,
                "flagged_share": _rounded(wrong / labelled[k] if labelled[k] else None, 5),
                "regions": int(region_counts[k]),
                "most_often_likely": schema.names[int(counts[k].argmax())] if wrong else "",
            }
        )
    return rows


def plot_given_vs_likely(flagged: ConfusionMatrix, schema: ClassSchema, path: Path) -> Path:
    """Rows: the given class of flagged pixels; columns: the class the model finds likely."""
    return plot_confusion_matrix(
        flagged,
        schema,
        path,
        title="Suspected label issues: given vs likely class",
        axes=("given class", "likely class"),
        scores=False,
    )
