"""Regions left out of training (``data.exclude``): suspected label issues become ignore pixels.

The file is what ``landseg audit`` writes, ``regions.gpkg`` (possibly edited in QGIS: delete a row to
keep its labels, draw a polygon to drop more) or ``regions.csv``. Every row names its image by the
image's path under the data root (column ``image``). A GeoPackage's polygons are in map coordinates and
are reprojected to each image's CRS; a CSV's are in pixel coordinates (column ``pixel_wkt``, x = column,
y = row, as WKT). Mask pixels whose centres fall inside a polygon of their image become ``IGNORE_INDEX``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio import features
from rasterio.crs import CRS

from landseg.classes import IGNORE_INDEX
from landseg.errors import ConfigError, DataError

IMAGE_COLUMN = "image"
"""The image's path under the data root, with ``/`` separators."""
PIXEL_GEOMETRY_COLUMN = "pixel_wkt"
"""The region's polygon in pixel coordinates (column, row) as WKT; the CSV's geometry."""
LAYER = "label_issues"
"""The GeoPackage layer ``landseg audit`` writes (another single layer is read too)."""
FORMATS = (".gpkg", ".csv")


@dataclass
class Exclusions:
    """Polygons per image key; ``crs`` None means pixel coordinates."""

    source: Path
    polygons: dict[str, list] = field(default_factory=dict)
    crs: CRS | None = None
    matched_images: int = 0
    excluded_pixels: int = 0

    @classmethod
    def read(cls, path: str | Path) -> Exclusions:
        path = Path(path)
        if path.suffix.lower() not in FORMATS:
            raise ConfigError(f"data.exclude must be a {' or '.join(FORMATS)} file of `landseg audit` regions", path)
        if not path.is_file():
            raise ConfigError("data.exclude: file does not exist", path)
        return _read_geopackage(path) if path.suffix.lower() == ".gpkg" else _read_csv(path)

    def lookup(self, image: Path) -> list:
        """The polygons of ``image``: rows whose key is the end of its path."""
        parts = Path(image).parts
        found: list = []
        for n in range(1, len(parts) + 1):
            found += self.polygons.get("/".join(parts[-n:]), [])
        return found

    def apply(self, image: Path, mask: np.ndarray, transform: Affine, crs: CRS | None) -> np.ndarray:
        """``mask`` with the pixels of ``image``'s regions set to ``IGNORE_INDEX`` (a copy when any change)."""
        polygons = self.lookup(image)
        if not polygons:
            return mask
        if self.crs is None:
            transform = Affine.identity()
        elif crs is None:
            raise DataError(
                f"is not georeferenced but {self.source.name} gives its regions in map coordinates; "
                "exclude them with the audit's regions.csv",
                image,
            )
        elif crs != self.crs:
            import rasterio.warp
            import shapely.geometry

            moved = rasterio.warp.transform_geom(self.crs, crs, [shapely.geometry.mapping(p) for p in polygons])
            polygons = [shapely.geometry.shape(g) for g in moved]
        inside = features.geometry_mask(polygons, out_shape=mask.shape, transform=transform, invert=True)
        self.matched_images += 1
        dropped = inside & (mask != IGNORE_INDEX)
        self.excluded_pixels += int(dropped.sum())
        return np.where(inside, np.uint8(IGNORE_INDEX), mask).astype(mask.dtype)


def _keyed(source: Path, keys, geometries) -> dict[str, list]:
    polygons: dict[str, list] = {}
    for key, geometry in zip(keys, geometries, strict=False):
        if geometry is None or geometry.is_empty:
            continue
        polygons.setdefault(str(key).strip().replace("\\", "/").lstrip("/"), []).append(geometry)
    return polygons


def _read_csv(path: Path) -> Exclusions:
    import shapely

    limit = csv.field_size_limit()
    try:
        # A large region's outline is one long WKT field, past the csv module's 128 KiB default; no field
        # can be longer than the file that holds it.
        csv.field_size_limit(max(limit, path.stat().st_size))
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"data.exclude: cannot read the CSV ({exc})", path) from None
    finally:
        csv.field_size_limit(limit)
    if rows and not {IMAGE_COLUMN, PIXEL_GEOMETRY_COLUMN} <= set(rows[0]):
        raise ConfigError(
            f"data.exclude: the CSV needs columns {IMAGE_COLUMN!r} and {PIXEL_GEOMETRY_COLUMN!r} "
            "(the regions.csv of `landseg audit`)",
            path,
        )
    try:
        geometries = [shapely.from_wkt(row[PIXEL_GEOMETRY_COLUMN]) for row in rows]
    except shapely.errors.GEOSException as exc:
        raise ConfigError(f"data.exclude: a {PIXEL_GEOMETRY_COLUMN} is not WKT ({exc})", path) from None
    return Exclusions(path, _keyed(path, [row[IMAGE_COLUMN] for row in rows], geometries), crs=None)


def _read_geopackage(path: Path) -> Exclusions:
    import pyogrio
    import pyogrio.raw
    import shapely

    try:
        layers = [name for name, _ in pyogrio.list_layers(path)]
        layer = LAYER if LAYER in layers else (layers[0] if len(layers) == 1 else None)
        if layer is None:
            raise ConfigError(f"data.exclude: no layer {LAYER!r} among {layers}", path)
        meta, _, geometry, values = pyogrio.raw.read(path, layer=layer)
    except pyogrio.errors.DataSourceError as exc:
        raise ConfigError(f"data.exclude: not a readable GeoPackage ({exc})", path) from None
    fields = list(meta["fields"])
    if IMAGE_COLUMN not in fields:
        raise ConfigError(
            f"data.exclude: layer {layer!r} has no {IMAGE_COLUMN!r} column naming each region's image", path
        )
    crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else None
    if crs is None:
        raise ConfigError("data.exclude: the GeoPackage has no CRS; use the audit's regions.csv instead", path)
    geometries = shapely.from_wkb(geometry) if geometry is not None else []
    return Exclusions(path, _keyed(path, values[fields.index(IMAGE_COLUMN)], geometries), crs=crs)
