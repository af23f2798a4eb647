"""One GeoPackage layer of polygons with attributes, from features that may lie in different CRSs.

The audit's regions and the suggestions' windows both come from images that need not share a CRS; QGIS
wants one layer in one CRS. The first georeferenced image's CRS is the layer's (``first_crs``); features
in another are reprojected by GDAL (``rasterio.warp.transform_geom``). Written through ``pyogrio.raw.write`` to a
temporary name and renamed, like every landseg output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landseg.io.write import atomic_output


@dataclass(frozen=True)
class Feature:
    """A polygon (shapely) in ``crs`` (None: the image has no georeferencing) and its attributes."""

    geometry: Any
    crs: Any
    attributes: dict


def first_crs(crss: Iterable) -> Any:
    """The layer's CRS: the first that is not None (None when there is none)."""
    return next((crs for crs in crss if crs is not None), None)


def write_polygon_layer(path: Path, features: Sequence[Feature], fields: Sequence[str], layer: str, crs) -> Path:
    """``features`` as one polygon layer in ``crs`` of a GeoPackage at ``path`` (features in another CRS
    reprojected, those without one left out); ``fields`` name the attributes written, in order."""
    import pyogrio.raw
    import rasterio.warp
    import shapely
    import shapely.geometry

    kept = [feature for feature in features if feature.crs is not None]
    geometries = [
        feature.geometry
        if feature.crs == crs
        else shapely.geometry.shape(
            rasterio.warp.transform_geom(feature.crs, crs, shapely.geometry.mapping(feature.geometry))
        )
        for feature in kept
    ]
    with atomic_output(path) as temporary:
        pyogrio.raw.write(
            temporary,
            shapely.to_wkb(np.array(geometries, dtype=object)),
            [attribute_column([feature.attributes[name] for feature in kept]) for name in fields],
            list(fields),
            layer=layer,
            driver="GPKG",
            geometry_type="Polygon",
            crs=crs.to_wkt(),
        )
    return path


def attribute_column(values: Sequence) -> np.ndarray:
    """Text stays text; numbers are integers unless one is a float or missing (``""`` or None: NaN)."""
    present = [value for value in values if value not in ("", None)]
    if any(isinstance(value, str) for value in present):
        return np.array(values, dtype=object)
    if len(present) < len(values) or any(isinstance(value, float) for value in present):
        return np.array([np.nan if value in ("", None) else value for value in values], dtype=np.float64)
    return np.array(values, dtype=np.int64)
