"""Georeferenced class maps, strata rasters and labelled point layers built for the assess tests."""

import json
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

# An equal-area grid (NSIDC EASE-Grid 2.0): a 30 m pixel covers exactly 900 m² of ground, as the papers assume.
EQUAL_AREA = "EPSG:6933"
PIXEL = 30.0
ORIGIN = (1_000_000.0, 4_000_000.0)


def write_raster(path: Path, values: np.ndarray, *, nodata=255, crs=EQUAL_AREA, tags=None) -> Path:
    profile = dict(
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype=values.dtype,
        nodata=nodata,
        crs=crs,
        transform=from_origin(*ORIGIN, PIXEL, PIXEL),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)
        if tags:
            dst.update_tags(**tags)
    return path


def pixel_centres(rows, cols):
    rows, cols = np.asarray(rows), np.asarray(cols)
    return ORIGIN[0] + (cols + 0.5) * PIXEL, ORIGIN[1] - (rows + 0.5) * PIXEL


def write_points(path: Path, x, y, fields: dict, crs=EQUAL_AREA) -> Path:
    geometry = shapely.to_wkb(shapely.points(np.asarray(x, dtype=float), np.asarray(y, dtype=float)))
    arrays = [np.asarray(v, dtype=object if isinstance(v[0], str) or v[0] is None else None) for v in fields.values()]
    pyogrio.raw.write(path, geometry, arrays, list(fields), driver="GPKG", geometry_type="Point", crs=crs)
    return path


def write_design(path: Path, strata: list[dict], strata_source="map", method="stratified") -> Path:
    path.write_text(json.dumps({"method": method, "strata_source": strata_source, "strata": strata}))
    return path


@pytest.fixture
def forest_schema(tmp_path) -> Path:
    """Olofsson et al.'s (2014) four classes, coded 1-4."""
    path = tmp_path / "forest_change.yaml"
    path.write_text(
        "name: forest_change\nclasses:\n"
        "  - {name: deforestation, color: '#D7301F', code: 1}\n"
        "  - {name: forest gain, color: '#74C476', code: 2}\n"
        "  - {name: stable forest, color: '#006D2C', code: 3}\n"
        "  - {name: stable non-forest, color: '#FEE391', code: 4}\n"
        "ignore_codes: [255]\n"
    )
    return path
