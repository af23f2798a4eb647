"""The true ground area of pixels, for any grid: one function that every area in landseg comes from.

An area here is always the area on the CRS's ellipsoid of the ground a pixel covers, in m², so that the
same place gives the same hectares whichever grid its map is on (Earth Engine's ``pixelArea`` means the
same). How it is computed depends on the grid, and ``area_method`` names it:

- ``planar``: an equal-area projection (Albers, Lambert azimuthal or cylindrical equal-area, Equal Earth,
  Mollweide, sinusoidal): the nominal pixel area, converted from the CRS's linear unit, is the ground area.
- ``geodesic``: a geographic (lon/lat) grid. On a north-up grid a pixel is a quadrangle of meridians and
  parallels, which a cylindrical equal-area projection on the same ellipsoid (PROJ, through pyproj) maps
  to a rectangle of the same area, so its area is exact and the same for every pixel of a row.
- ``scale-factor``: a projected CRS whose scale varies over the map (UTM and every other conformal
  projection, Web Mercator). Web Mercator and other cylindrical grids that are north-up follow the
  graticule, so they are handled exactly like a geographic grid, row by row; on other grids each
  pixel's corners are projected to a Lambert azimuthal equal-area projection and the quadrilateral's area
  is taken there (the pixel's edges bend slightly in that projection: the error is of the order of the
  squared ratio of pixel size to the Earth's radius, far below a part in a million for any real pixel).
- ``approximate``: rasters placed by ground control points or RPCs; pixel corners are placed on the
  ground by GDAL's GCP (polynomial) or RPC transformer (at the RPCs' height offset, no terrain model).
- ``None``: no CRS, or one that gives no ground size: there are no areas in m².

UTM on purpose gives the ellipsoidal area, not the nominal one: a 10 m UTM pixel on the central
meridian covers 100 / 0.9996² = 100.08 m² of ellipsoid, and 0.1 % less than nominal near a zone's edge.
Returning the nominal area would make the same field differ by up to 0.2 % between a UTM map and its
lon/lat or equal-area copy; returning the true area makes ``predict``, ``change`` and ``assess`` agree
whatever grid their maps are on.

Areas are computed for one window at a time, so a map of any size is measured in blocks; grids whose
areas depend only on the row cache each row's value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyproj
import rasterio
from affine import Affine
from pyproj.crs import ProjectedCRS
from pyproj.crs.coordinate_operation import (
    LambertAzimuthalEqualAreaConversion,
    LambertCylindricalEqualAreaConversion,
)
from rasterio.crs import CRS
from rasterio.windows import Window

PLANAR, GEODESIC, SCALE_FACTOR, APPROXIMATE = "planar", "geodesic", "scale-factor", "approximate"
SQUARE_METRES_PER_HECTARE = 10_000.0
# Projection methods that preserve area everywhere (PROJ's names), so the nominal area is the ground area.
EQUAL_AREA_METHODS = ("equal area", "equal earth", "mollweide", "sinusoidal", "homolosine", "eckert iv")
# Rows of pixel corners projected at once: bounds the memory of a tall window on a distorted grid.
STRIP_ROWS = 256

# (rows, cols) of pixel corners -> (x, y) in the raster's ground CRS
CornerPlacer = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def area_method(crs, transform: Affine | None) -> str | None:
    """How ``pixel_areas`` measures this grid: ``planar``, ``geodesic``, ``scale-factor``, or None (no areas)."""
    grid = grid_areas(crs, transform)
    return None if grid is None else grid.method


def pixel_areas(crs, transform: Affine, window: Window) -> np.ndarray:
    """The ground area in m² of each pixel of ``window``: a ``(height, width)`` float64 array.

    ``ValueError`` when the grid has no ground size (no CRS, or no affine transform): check
    ``area_method`` first.
    """
    grid = grid_areas(crs, transform)
    if grid is None:
        raise ValueError(f"a grid with CRS {crs} and transform {transform} has no ground area in m²")
    return grid.window(window)


def class_areas_m2(classes: np.ndarray, areas: np.ndarray, num_classes: int) -> np.ndarray:
    """Sum of ``areas`` per class index of ``classes`` (same shape); indices ≥ ``num_classes`` (the
    ignore index, no-data) are left out. A float64 array of ``num_classes`` m²."""
    classes = np.asarray(classes).ravel()
    areas = np.asarray(areas, dtype=np.float64).ravel()
    if classes.shape != areas.shape:
        raise ValueError(f"classes and areas differ in size: {classes.size} against {areas.size}")
    counted = (classes >= 0) & (classes < num_classes)
    return np.bincount(classes[counted].astype(np.intp), weights=areas[counted], minlength=num_classes)[:num_classes]


def nominal_pixel_area_m2(crs, transform: Affine | None) -> float | None:
    """A pixel's area in the grid's own units converted to m² (its map area, not its ground area); None
    unless the CRS is projected. Kept for reports that state the grid's resolution."""
    if crs is None or transform is None:
        return None
    crs = _pyproj_crs(crs)
    if not crs.is_projected:
        return None
    return abs(transform.determinant) * _metres_per_unit(crs) ** 2


@dataclass
class PixelAreas:
    """Ground areas of the pixels of one grid, window by window (see the module's docstring)."""

    method: str
    _compute: Callable[[Window], np.ndarray]
    by_row: bool = False
    """Areas depend only on the row: ``_compute`` is given one-column windows and its rows are cached."""
    _rows: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def window(self, window: Window) -> np.ndarray:
        top, left = int(window.row_off), int(window.col_off)
        height, width = int(window.height), int(window.width)
        if not self.by_row:
            return self._compute(Window(left, top, width, height))
        return np.repeat(self.row_areas(top, height)[:, None], width, axis=1)

    def row_areas(self, top: int, height: int) -> np.ndarray:
        """Area of one pixel of each of ``height`` rows from ``top`` (grids whose areas vary by row only)."""
        with self._lock:
            missing = [row for row in range(top, top + height) if row not in self._rows]
            if missing:
                start, stop = min(missing), max(missing) + 1
                values = self._compute(Window(0, start, 1, stop - start))[:, 0]
                self._rows.update(zip(range(start, stop), values.tolist(), strict=True))
            return np.array([self._rows[row] for row in range(top, top + height)], dtype=np.float64)

    @classmethod
    def of(cls, georef) -> PixelAreas | None:
        """The areas of a raster placed as ``georef`` (``landseg.io.georef.Georeference``) says: its
        geotransform, else its GCPs or RPCs (approximate); None when it has no ground size."""
        if georef.transform is not None:
            return grid_areas(georef.crs, georef.transform)
        if georef.gcps and georef.gcps_crs is not None:
            return _transformer_areas(rasterio.transform.GCPTransformer(list(georef.gcps)), georef.gcps_crs)
        if georef.rpcs is not None:
            # GDAL's RPC transformer gives WGS 84 longitude and latitude.
            return _transformer_areas(rasterio.transform.RPCTransformer(georef.rpcs), CRS.from_epsg(4326))
        return None


def grid_areas(crs, transform: Affine | None) -> PixelAreas | None:
    """The ``PixelAreas`` of an affine grid, shared by every caller measuring the same grid."""
    if crs is None or transform is None or transform.determinant == 0:
        return None
    return _cached_grid_areas(CRS.from_user_input(crs).to_wkt(), tuple(transform)[:6])


@lru_cache(maxsize=32)
def _cached_grid_areas(wkt: str, coefficients: tuple[float, ...]) -> PixelAreas | None:
    crs = pyproj.CRS.from_wkt(wkt)
    transform = Affine(*coefficients)
    north_up = transform.b == 0 and transform.d == 0
    if crs.is_geographic:
        if north_up:
            return PixelAreas(GEODESIC, _graticule_rows(crs, transform), by_row=True)
        return PixelAreas(GEODESIC, _corner_areas(_affine_corners(transform), crs))
    if not crs.is_projected:
        return None
    if _equal_area(crs):
        area = nominal_pixel_area_m2(crs, transform)
        return PixelAreas(PLANAR, lambda window: np.full((int(window.height), int(window.width)), area))
    if north_up and _follows_graticule(crs, transform):
        return PixelAreas(SCALE_FACTOR, _graticule_rows(crs, transform), by_row=True)
    return PixelAreas(SCALE_FACTOR, _corner_areas(_affine_corners(transform), crs))


def _pyproj_crs(crs) -> pyproj.CRS:
    return pyproj.CRS.from_wkt(crs.to_wkt()) if isinstance(crs, CRS) else pyproj.CRS.from_user_input(crs)


def _metres_per_unit(crs: pyproj.CRS) -> float:
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else None
    if not factor:
        raise ValueError(f"CRS {crs.name!r} names no linear unit")
    return float(factor)


def _equal_area(crs: pyproj.CRS) -> bool:
    operation = crs.coordinate_operation
    name = (operation.method_name if operation is not None else "").lower()
    return any(method in name for method in EQUAL_AREA_METHODS)


def _follows_graticule(crs: pyproj.CRS, transform: Affine) -> bool:
    """Rows run along parallels and columns along meridians (Mercator, plate carrée, cylindrical
    equal-area): then every pixel of a row is the same lon/lat quadrangle shifted in longitude.

    Checked at columns and rows 0, 1, 7 and 1000 of the grid: unequal steps, so that no symmetry of the
    projection about a meridian can make a curved parallel look straight."""
    to_lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    steps = np.array([0.0, 1.0, 7.0, 1000.0])
    lon_row, lat_row = to_lonlat.transform(transform.c + steps * transform.a, np.full(4, transform.f))
    lon_col, lat_col = to_lonlat.transform(np.full(4, transform.c), transform.f + steps * transform.e)
    values = np.concatenate([lon_row, lat_row, lon_col, lat_col])
    if not np.isfinite(values).all():
        return False
    return bool(np.ptp(lat_row) < 1e-10 and np.ptp(lon_col) < 1e-10)


def _graticule_rows(crs: pyproj.CRS, transform: Affine) -> Callable[[Window], np.ndarray]:
    """Row areas of a north-up grid whose pixels are lon/lat quadrangles: each pixel's corners projected
    to a cylindrical equal-area projection on the CRS's ellipsoid, where the quadrangle is a rectangle."""
    to_lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    origin_lon, _ = to_lonlat.transform(transform.c, transform.f)
    equal_area = ProjectedCRS(
        conversion=LambertCylindricalEqualAreaConversion(
            latitude_first_parallel=0.0, longitude_natural_origin=float(origin_lon)
        ),
        geodetic_crs=crs.geodetic_crs,
    )
    to_equal_area = pyproj.Transformer.from_crs(crs, equal_area, always_xy=True)

    def rows(window: Window) -> np.ndarray:
        top, height = int(window.row_off), int(window.height)
        edges = transform.f + transform.e * np.arange(top, top + height + 1, dtype=np.float64)
        # One pixel of the first column per row edge: its left and right corners.
        xs = np.concatenate([np.full(height + 1, transform.c), np.full(height + 1, transform.c + transform.a)])
        east, north = to_equal_area.transform(xs, np.concatenate([edges, edges]))
        width = np.abs(east[height + 1 :] - east[: height + 1])[:-1]
        return (width * np.abs(np.diff(north[: height + 1])))[:, None]

    return rows


def _affine_corners(transform: Affine) -> CornerPlacer:
    def place(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            transform.c + transform.a * cols + transform.b * rows,
            transform.f + transform.d * cols + transform.e * rows,
        )

    return place


def _corner_areas(place: CornerPlacer, crs: pyproj.CRS) -> Callable[[Window], np.ndarray]:
    """Per-pixel areas: each pixel's four corners placed on the ground and projected to a Lambert azimuthal
    equal-area projection centred on the grid's origin, where the quadrilateral's area is the ground area."""
    origin_x, origin_y = place(np.zeros(1), np.zeros(1))
    to_lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_lonlat.transform(origin_x, origin_y)
    equal_area = ProjectedCRS(
        conversion=LambertAzimuthalEqualAreaConversion(
            latitude_natural_origin=float(lat[0]), longitude_natural_origin=float(lon[0])
        ),
        geodetic_crs=crs.geodetic_crs,
    )
    to_equal_area = pyproj.Transformer.from_crs(crs, equal_area, always_xy=True)

    def areas(window: Window) -> np.ndarray:
        top, left = int(window.row_off), int(window.col_off)
        height, width = int(window.height), int(window.width)
        out = np.empty((height, width), dtype=np.float64)
        cols = np.arange(left, left + width + 1, dtype=np.float64)
        for start in range(0, height, STRIP_ROWS):
            stop = min(height, start + STRIP_ROWS)
            rows = np.arange(top + start, top + stop + 1, dtype=np.float64)
            grid_rows, grid_cols = np.meshgrid(rows, cols, indexing="ij")
            x, y = place(grid_rows.ravel(), grid_cols.ravel())
            east, north = to_equal_area.transform(x, y)
            east = np.asarray(east).reshape(grid_rows.shape)
            north = np.asarray(north).reshape(grid_rows.shape)
            out[start:stop] = _quadrilateral_areas(east, north)
        return out

    return areas


def _quadrilateral_areas(east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Areas of the quadrilaterals between neighbouring corners: half the cross product of the diagonals."""
    diagonal_x = east[1:, 1:] - east[:-1, :-1]
    diagonal_y = north[1:, 1:] - north[:-1, :-1]
    other_x = east[1:, :-1] - east[:-1, 1:]
    other_y = north[1:, :-1] - north[:-1, 1:]
    return 0.5 * np.abs(diagonal_x * other_y - diagonal_y * other_x)


def _transformer_areas(transformer, crs) -> PixelAreas:
    """Approximate per-pixel areas of a raster placed by GCPs or RPCs, through GDAL's transformer."""

    def place(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = transformer.xy(rows, cols, offset="ul")
        return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)

    return PixelAreas(APPROXIMATE, _corner_areas(place, _pyproj_crs(crs)))
