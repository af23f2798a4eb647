"""Sample points in and out: a GeoPackage (for QGIS) and a CSV of the drawn points, and any point layer
GDAL reads back with its reference labels, reprojected onto the map's CRS."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyproj import CRS, Transformer

from landseg.errors import DataError
from landseg.io.write import atomic_output

LAYER = "points"
REFERENCE_FIELD = "reference"


@dataclass
class SamplePoints:
    """Drawn points, one entry per point, in drawing order (their ``id``)."""

    rows: np.ndarray
    cols: np.ndarray
    x: np.ndarray
    y: np.ndarray
    stratum: np.ndarray
    stratum_name: list[str]
    map_value: np.ndarray
    map_class: list[str]
    inclusion_probability: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self, references: Sequence | None = None) -> dict[str, np.ndarray]:
        """The attribute table; ``reference`` holds ``references`` (one per point) or is left empty for
        the labeller."""
        if references is not None and len(references) != len(self):
            raise ValueError(f"{len(references)} reference labels for {len(self)} points")
        labels = [None] * len(self) if references is None else [str(label) for label in references]
        return {
            "id": np.arange(1, len(self) + 1, dtype=np.int64),
            "stratum": self.stratum.astype(np.int64),
            "stratum_name": np.array(self.stratum_name, dtype=object),
            "map_value": self.map_value.astype(np.int64),
            "map_class": np.array(self.map_class, dtype=object),
            "inclusion_probability": self.inclusion_probability.astype(np.float64),
            "row": self.rows.astype(np.int64),
            "col": self.cols.astype(np.int64),
            "x": self.x.astype(np.float64),
            "y": self.y.astype(np.float64),
            REFERENCE_FIELD: np.array(labels, dtype=object),
        }


def write_points_gpkg(
    path: Path, points: SamplePoints, crs_wkt: str | None, references: Sequence | None = None
) -> Path:
    columns = points.columns(references)
    geometry = shapely.to_wkb(shapely.points(points.x, points.y))
    with atomic_output(path) as temporary:
        pyogrio.raw.write(
            temporary,
            geometry,
            list(columns.values()),
            list(columns),
            layer=LAYER,
            driver="GPKG",
            geometry_type="Point",
            crs=crs_wkt,
        )
    return path


def write_points_csv(path: Path, points: SamplePoints) -> Path:
    columns = points.columns()
    with atomic_output(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(len(points)):
            writer.writerow(["" if values[i] is None else values[i] for values in columns.values()])
    return path


@dataclass
class LabelledPoints:
    """Points read back for assessment, in the map's CRS."""

    x: np.ndarray
    y: np.ndarray
    reference: list
    ids: np.ndarray
    source_crs: str | None
    reprojected: bool


def read_labelled_points(path: str | Path, reference_field: str, map_crs) -> LabelledPoints:
    """Point features and their ``reference_field``; other CRSs reprojected onto ``map_crs``."""
    path = Path(path)
    if not path.exists():
        raise DataError("file does not exist", path)
    try:
        meta, _, geometry, values = pyogrio.raw.read(path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise DataError(f"not a readable vector layer ({str(exc).splitlines()[0]})", path) from None
    fields = [str(name) for name in meta["fields"]]
    if reference_field not in fields:
        raise DataError(
            f"has no field {reference_field!r} (its fields: {', '.join(fields) or 'none'}); "
            "give the field that holds the reference labels with --reference-field",
            path,
        )
    shapes = shapely.from_wkb(geometry)
    kinds = shapely.get_type_id(shapes)
    if np.any(kinds != shapely.GeometryType.POINT):
        bad = int(np.count_nonzero(kinds != shapely.GeometryType.POINT))
        raise DataError(f"{bad} features are not points; the sample must be points (pixel centres)", path)
    x, y = shapely.get_x(shapes), shapely.get_y(shapes)
    ids = values[fields.index("id")] if "id" in fields else np.arange(1, len(x) + 1)
    source = meta.get("crs")
    points_crs = None if source is None else CRS.from_user_input(source)
    target_crs = None if map_crs is None else CRS.from_user_input(map_crs.to_wkt())
    reprojected = points_crs is not None and target_crs is not None and points_crs != target_crs
    if reprojected:
        x, y = Transformer.from_crs(points_crs, target_crs, always_xy=True).transform(x, y)
    return LabelledPoints(
        np.asarray(x, dtype=np.float64),
        np.asarray(y, dtype=np.float64),
        list(values[fields.index(reference_field)]),
        np.asarray(ids),
        source,
        reprojected,
    )


def blank(value) -> bool:
    return (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )
