"""What a prediction reports beside its class map: a coloured preview with legend and class areas.

Areas are counted block by block from the class raster (``count_classes``), so they cost no memory in
scene size, and are given in m² and ha wherever the grid's CRS has linear units.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import CRSError

from landseg.classes import IGNORE_INDEX, ClassSchema
from landseg.io.georef import open_without_grid_warning
from landseg.io.write import atomic_output

AREA_COLUMNS = ("class", "pixels", "share", "area_m2", "area_ha")
SQUARE_METRES_PER_HECTARE = 10_000.0


def pixel_area_m2(transform: rasterio.Affine, crs: rasterio.crs.CRS | None) -> float | None:
    """Ground area of one pixel in square metres, or None when the grid is not in linear units."""
    if crs is None or not crs.is_projected:
        return None
    try:
        _, metres_per_unit = crs.linear_units_factor
    except CRSError:
        return None
    # The determinant is the pixel's area in CRS units even for rotated or sheared grids.
    return abs(transform.determinant) * metres_per_unit**2


def class_areas(
    index: np.ndarray, schema: ClassSchema, transform: rasterio.Affine, crs: rasterio.crs.CRS | None
) -> list[dict]:
    """One row per class: pixels, share of the valid (non-``IGNORE_INDEX``) pixels and ground area.

    ``area_m2`` and ``area_ha`` are None unless the CRS is projected with known linear units.
    """
    labelled = index[index != IGNORE_INDEX]
    return class_areas_from_counts(np.bincount(labelled.ravel(), minlength=schema.num_classes), schema, transform, crs)


def class_areas_from_counts(
    counts: np.ndarray, schema: ClassSchema, transform: rasterio.Affine, crs: rasterio.crs.CRS | None
) -> list[dict]:
    """``class_areas`` from pixel counts per class index, for maps counted block by block."""
    counts = np.asarray(counts)
    if counts.size > schema.num_classes and counts[schema.num_classes :].any():
        raise ValueError(
            f"class map holds index {int(np.flatnonzero(counts)[-1])}, but schema {schema.name!r} has "
            f"{schema.num_classes} classes"
        )
    counts = counts[: schema.num_classes]
    valid = int(counts.sum())
    area_per_pixel = pixel_area_m2(transform, crs)
    rows = []
    for name, pixels in zip(schema.names, counts.tolist(), strict=False):
        area_m2 = None if area_per_pixel is None else pixels * area_per_pixel
        rows.append(
            {
                "class": name,
                "pixels": int(pixels),
                "share": pixels / valid if valid else 0.0,
                "area_m2": area_m2,
                "area_ha": None if area_m2 is None else area_m2 / SQUARE_METRES_PER_HECTARE,
            }
        )
    return rows


def count_classes(raster_path: str | Path, num_classes: int) -> np.ndarray:
    """Pixels per class index of a class raster's band 1, read block by block (no-data skipped)."""
    counts = np.zeros(max(num_classes, IGNORE_INDEX + 1), dtype=np.int64)
    with open_without_grid_warning(raster_path) as source:
        for _, window in source.block_windows(1):
            counts += np.bincount(source.read(1, window=window).ravel(), minlength=counts.size)
    counts[IGNORE_INDEX] = 0
    return counts[: max(num_classes, int(np.flatnonzero(counts).max(initial=0)) + 1)]


def write_area_json(path: str | Path, rows: list[dict], extra: dict | None = None) -> Path:
    """The area rows as JSON, with ``extra`` (scene size, pixel area, CRS) beside them."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps({**(extra or {}), "classes": rows}, indent=2), encoding="utf-8")
    return path


def write_preview(class_raster: str | Path, schema: ClassSchema, path: str | Path) -> Path:
    """A coloured PNG with legend of a class raster of any size, read at most ``PREVIEW_MAX_SIDE`` a side."""
    from landseg.report.overlay import PREVIEW_MAX_SIDE, save_colorized_png

    with open_without_grid_warning(class_raster) as source:
        step = max(1, -(-max(source.height, source.width) // PREVIEW_MAX_SIDE))
        shape = (max(1, source.height // step), max(1, source.width // step))
        # Decimated reads come from the COG's overviews, built by majority vote.
        index = source.read(1, out_shape=shape, resampling=Resampling.nearest)
    return save_colorized_png(index, schema, path, legend=True)


def write_area_csv(path: str | Path, rows: list[dict], note: str | None = None) -> Path:
    """The area rows as CSV; ``note`` (areas approximate, or why there are none in m2) fills a last column."""
    path = Path(path)
    with atomic_output(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=AREA_COLUMNS + (("note",) if note else ()))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **({"note": note} if note else {}),
                    "class": row["class"],
                    "pixels": row["pixels"],
                    "share": f"{row['share']:.6f}",
                    "area_m2": "" if row["area_m2"] is None else f"{row['area_m2']:.2f}",
                    "area_ha": "" if row["area_ha"] is None else f"{row['area_ha']:.4f}",
                }
            )
    return path
