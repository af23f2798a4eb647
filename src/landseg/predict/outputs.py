"""The files a prediction leaves behind: the class map, a coloured preview, and class areas.

A georeferenced input gets a GeoTIFF class map on its own grid, so it overlays the image in any GIS;
a plain photo gets a paletted PNG that is both an index mask and viewable.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import CRSError

from landseg.classes import IGNORE_INDEX, ClassSchema
from landseg.io.raster import RasterImage
from landseg.io.write import atomic_output, write_index_geotiff, write_index_png
from landseg.predict.predictor import Prediction

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
    counts = np.bincount(labelled.ravel(), minlength=schema.num_classes)
    if counts.size > schema.num_classes:
        raise ValueError(
            f"class map holds index {counts.size - 1}, but schema {schema.name!r} has {schema.num_classes} classes"
        )
    valid = int(counts.sum())
    area_per_pixel = pixel_area_m2(transform, crs)
    rows = []
    for name, pixels in zip(schema.names, counts.tolist()):
        area_m2 = None if area_per_pixel is None else pixels * area_per_pixel
        rows.append(
            {
                "class": name,
                "pixels": pixels,
                "share": pixels / valid if valid else 0.0,
                "area_m2": area_m2,
                "area_ha": None if area_m2 is None else area_m2 / SQUARE_METRES_PER_HECTARE,
            }
        )
    return rows


def write_area_csv(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    with atomic_output(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=AREA_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        "class": row["class"],
                        "pixels": row["pixels"],
                        "share": f"{row['share']:.6f}",
                        "area_m2": "" if row["area_m2"] is None else f"{row['area_m2']:.2f}",
                        "area_ha": "" if row["area_ha"] is None else f"{row['area_ha']:.4f}",
                    }
                )
    return path


def write_prediction(
    prediction: Prediction, image: RasterImage, schema: ClassSchema, out_dir: str | Path, stem: str
) -> dict[str, Path]:
    """Write ``{stem}_classes.tif|png``, ``{stem}_color.png`` and ``{stem}_areas.csv`` into ``out_dir``.

    Returns the paths by kind: ``"classes"``, ``"color"``, ``"areas"``.
    """
    if prediction.index.shape != image.shape:
        raise ValueError(f"prediction is {prediction.index.shape} pixels but the image is {image.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if image.georeferenced:
        classes = write_index_geotiff(
            out_dir / f"{stem}_classes.tif", prediction.index, image.crs, image.transform, schema
        )
    else:
        classes = write_index_png(out_dir / f"{stem}_classes.png", prediction.index, schema)
    # Imported here so prediction alone (serving, streaming) does not load matplotlib.
    from landseg.report.overlay import save_colorized_png

    color = save_colorized_png(prediction.index, schema, out_dir / f"{stem}_color.png", legend=True)
    areas = write_area_csv(
        out_dir / f"{stem}_areas.csv", class_areas(prediction.index, schema, image.transform, image.crs)
    )
    return {"classes": classes, "color": color, "areas": areas}
