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
  Measured so are the cells of a lattice, every ``LATTICE_STEP``-th row and column of the grid; the pixels
  between are interpolated bilinearly (a few parts in a billion on 10 m UTM pixels). The lattice belongs
  to the grid, not to the window read, so a pixel has one area whether it is read in strips, blocks or
  the whole map, and totals agree however a map is read.
- ``approximate``: rasters placed by ground control points or RPCs; pixel corners are placed on the
  ground by GDAL's GCP (polynomial) or RPC transformer (at the RPCs' height offset, no terrain model).
- ``None``: no CRS, or one that gives no ground size: there are no areas in m².

UTM on purpose gives the ellipsoidal area, not the nominal one: a 10 m UTM pixel on the central
meridian covers 100 / 0.9996² = 100.08 m² of ellipsoid, and 0.1 % less than nominal near a zone's edge.
Returning the nominal area would make the same field differ by up to 0.2 % between a UTM map and its
lon/lat or equal-area copy; returning the true area makes ``predict``, ``change`` and ``assess`` agree
whatever grid their maps are on.

Areas are computed for one window at a time, so a map of any size is measured in blocks; grids whose
areas depend only on the row cache each row's value. The tables ``predict`` and ``serve`` write (pixels,
share, m², ha per class) are built here from a class raster read block by block (``tally_classes``).
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

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

from landseg.classes import IGNORE_INDEX, ClassSchema
from landseg.io.georef import Georeference, open_without_grid_warning
from landseg.io.write import atomic_output

PLANAR, GEODESIC, SCALE_FACTOR, APPROXIMATE = "planar", "geodesic", "scale-factor", "approximate"
SQUARE_METRES_PER_HECTARE = 10_000.0
AREA_COLUMNS = ("class", "pixels", "share", "area_m2", "area_ha")
# Projection methods that preserve area everywhere (PROJ's names), so the nominal area is the ground area.
EQUAL_AREA_METHODS = ("equal area", "equal earth", "mollweide", "sinusoidal", "homolosine", "eckert iv")
# On grids measured pixel by pixel, pixels take their areas bilinearly between exact cells this many pixels
# apart: pixel areas change over distances of the Earth's radius, while
# projecting every pixel's corners costs a hot path (predict's area table, change's blocks) about 0.4 µs a
# pixel. Measured (with the lattice then anchored per window, not re-timed since it is anchored to the grid) on
# two 2048² windows of a 10 m UTM 32N grid: at most 4.4e-9 relative difference per pixel from projecting every
# corner, in 0.03-0.04 CPU s instead of 1.5-1.8.
LATTICE_STEP = 64

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
    """Areas of a window's pixels; on a grid measured ``by_row``, of a one-column window."""
    _cells: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    """Areas of pixel-sized cells centred anywhere (fractional rows, cols); None on grids measured by row."""
    by_row: bool = False
    """Areas depend only on the row: rows are computed once and cached."""
    _rows: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def window(self, window: Window) -> np.ndarray:
        top, left = int(window.row_off), int(window.col_off)
        height, width = int(window.height), int(window.width)
        if not self.by_row:
            return self._compute(Window(left, top, width, height))
        return np.repeat(self.row_areas(top, height)[:, None], width, axis=1)

    def centred_at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Areas of pixel-sized cells centred at pixel coordinates (``ys``, ``xs``: rows and columns from the
        grid's top-left corner, fractions allowed; a pixel's own centre is (row + 0.5, col + 0.5))."""
        ys, xs = np.asarray(ys, dtype=np.float64), np.asarray(xs, dtype=np.float64)
        if self._cells is not None:
            return self._cells(ys, xs)
        # By row: between the two nearest rows' centres, linearly.
        below = np.floor(ys - 0.5).astype(np.int64)
        weight = ys - 0.5 - below
        unique = np.unique(np.concatenate([below, below + 1]))
        known = dict(zip(unique.tolist(), (self.row_areas(int(row), 1)[0] for row in unique), strict=True))
        lower = np.array([known[row] for row in below.tolist()])
        upper = np.array([known[row] for row in (below + 1).tolist()])
        return lower + weight * (upper - lower) if ys.size else np.zeros(0)

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
        if georef.gcps and georef.gcps_crs is not None and georef.area_grid()[0] is not None:
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
        return _corner_areas(GEODESIC, _affine_corners(transform), crs)
    if not crs.is_projected:
        return None
    if _equal_area(crs):
        area = nominal_pixel_area_m2(crs, transform)
        return PixelAreas(PLANAR, lambda window: np.full((int(window.height), int(window.width)), area), by_row=True)
    if north_up and _follows_graticule(crs, transform):
        return PixelAreas(SCALE_FACTOR, _graticule_rows(crs, transform), by_row=True)
    return _corner_areas(SCALE_FACTOR, _affine_corners(transform), crs)


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


def _corner_areas(method: str, place: CornerPlacer, crs: pyproj.CRS) -> PixelAreas:
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

    def project(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = place(rows.ravel(), cols.ravel())
        east, north = to_equal_area.transform(x, y)
        return np.asarray(east).reshape(rows.shape), np.asarray(north).reshape(rows.shape)

    def cell_areas(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        # Each cell's corners as a 2 x 2 block, half a pixel either side of its centre.
        corner_rows = ys[:, None, None] + np.array([[-0.5, -0.5], [0.5, 0.5]])
        corner_cols = xs[:, None, None] + np.array([[-0.5, 0.5], [-0.5, 0.5]])
        east, north = project(corner_rows, corner_cols)
        return _quadrilateral_areas(east, north)[:, 0, 0]

    def window_areas(window: Window) -> np.ndarray:
        return _interpolated(
            cell_areas, int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        )

    return PixelAreas(method, window_areas, partial(_interpolated_cells, cell_areas))


def _interpolated(
    cell_areas: Callable[[np.ndarray, np.ndarray], np.ndarray], top: int, left: int, height: int, width: int
) -> np.ndarray:
    """A window's pixel areas, bilinear between the exact cells of the grid's lattice around it."""
    rows = _lattice(top, height)
    cols = _lattice(left, width)
    ys, xs = np.meshgrid(rows, cols, indexing="ij")
    exact = cell_areas(ys.ravel(), xs.ravel()).reshape(len(rows), len(cols))
    return (
        _linear_weights(top + 0.5 + np.arange(height), rows)
        @ exact
        @ _linear_weights(left + 0.5 + np.arange(width), cols).T
    )


def _interpolated_cells(
    cell_areas: Callable[[np.ndarray, np.ndarray], np.ndarray], ys: np.ndarray, xs: np.ndarray
) -> np.ndarray:
    """Areas of cells centred at (``ys``, ``xs``), bilinear between the lattice's four cells around each."""
    row_below = np.floor((ys - 0.5) / LATTICE_STEP) * LATTICE_STEP + 0.5
    col_below = np.floor((xs - 0.5) / LATTICE_STEP) * LATTICE_STEP + 0.5
    down, right = (ys - row_below) / LATTICE_STEP, (xs - col_below) / LATTICE_STEP
    corners = [cell_areas(row_below + dy, col_below + dx) for dy in (0, LATTICE_STEP) for dx in (0, LATTICE_STEP)]
    top = (1 - right) * corners[0] + right * corners[1]
    bottom = (1 - right) * corners[2] + right * corners[3]
    return (1 - down) * top + down * bottom


def _lattice(start: int, size: int) -> np.ndarray:
    """Centres of the lattice pixels (every ``LATTICE_STEP``-th row or column of the grid) from the last one
    at or before a span's first pixel to the first one at or after its last: the same nodes whatever window
    a pixel is read in, so its area does not depend on the window."""
    first = (start // LATTICE_STEP) * LATTICE_STEP
    last = -(-(start + size - 1) // LATTICE_STEP) * LATTICE_STEP
    return np.arange(first, last + 1, LATTICE_STEP, dtype=np.float64) + 0.5


def _linear_weights(positions: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The (positions, nodes) matrix that interpolates values at ``nodes`` linearly to ``positions``."""
    weights = np.zeros((len(positions), len(nodes)))
    if len(nodes) == 1:
        weights[:, 0] = 1.0
        return weights
    below = np.clip(np.searchsorted(nodes, positions, side="right") - 1, 0, len(nodes) - 2)
    fraction = (positions - nodes[below]) / (nodes[below + 1] - nodes[below])
    weights[np.arange(len(positions)), below] = 1.0 - fraction
    weights[np.arange(len(positions)), below + 1] = fraction
    return weights


def _quadrilateral_areas(east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Areas of the quadrilaterals between neighbouring corners: half the cross product of the diagonals."""
    diagonal_x = east[..., 1:, 1:] - east[..., :-1, :-1]
    diagonal_y = north[..., 1:, 1:] - north[..., :-1, :-1]
    other_x = east[..., 1:, :-1] - east[..., :-1, 1:]
    other_y = north[..., 1:, :-1] - north[..., :-1, 1:]
    return 0.5 * np.abs(diagonal_x * other_y - diagonal_y * other_x)


def _transformer_areas(transformer, crs) -> PixelAreas:
    """Approximate per-pixel areas of a raster placed by GCPs or RPCs, through GDAL's transformer."""

    def place(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = transformer.xy(rows, cols, offset="ul")
        return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)

    return _corner_areas(APPROXIMATE, place, _pyproj_crs(crs))


def areas_note(areas: PixelAreas | None, georef: Georeference) -> str | None:
    """Why a table's areas are approximate or missing; None when they are the grid's own."""
    if areas is not None and areas.method != APPROXIMATE:
        return None
    return georef.area_note()


@dataclass
class ClassTally:
    """Pixels and ground area per class index of a class map (indices past the schema kept, to be refused)."""

    pixels: np.ndarray
    area_m2: np.ndarray | None
    """None when the map has no ground size."""


def tally_classes(raster_path: str | Path, num_classes: int, areas: PixelAreas | None) -> ClassTally:
    """Pixels (and m² when ``areas`` is given) per class index of band 1, block by block, no-data skipped."""
    size = max(num_classes, IGNORE_INDEX + 1)
    pixels = np.zeros(size, dtype=np.int64)
    area_m2 = None if areas is None else np.zeros(size, dtype=np.float64)
    with open_without_grid_warning(raster_path) as source:
        for _, window in source.block_windows(1):
            index = source.read(1, window=window)
            pixels += np.bincount(index.ravel(), minlength=size)
            if area_m2 is not None and areas is not None:
                area_m2 += class_areas_m2(index, areas.window(window), size)
    pixels[IGNORE_INDEX] = 0
    if area_m2 is not None:
        area_m2[IGNORE_INDEX] = 0.0
    keep = max(num_classes, int(np.flatnonzero(pixels).max(initial=0)) + 1)
    return ClassTally(pixels[:keep], None if area_m2 is None else area_m2[:keep])


def area_table(tally: ClassTally, schema: ClassSchema) -> list[dict]:
    """One row per class: pixels, share of the valid pixels, ground area in m² and ha (None without one).

    ``ValueError`` when the map holds a class index the schema lacks."""
    pixels = np.asarray(tally.pixels)
    if pixels.size > schema.num_classes and pixels[schema.num_classes :].any():
        raise ValueError(
            f"class map holds index {int(np.flatnonzero(pixels)[-1])}, but schema {schema.name!r} has "
            f"{schema.num_classes} classes"
        )
    valid = int(pixels[: schema.num_classes].sum())
    rows = []
    for position, name in enumerate(schema.names):
        count = int(pixels[position]) if position < pixels.size else 0
        area = None if tally.area_m2 is None else float(tally.area_m2[position]) if position < pixels.size else 0.0
        rows.append(
            {
                "class": name,
                "pixels": count,
                "share": count / valid if valid else 0.0,
                "area_m2": area,
                "area_ha": None if area is None else area / SQUARE_METRES_PER_HECTARE,
            }
        )
    return rows


def class_areas(index: np.ndarray, schema: ClassSchema, transform: Affine | None, crs) -> list[dict]:
    """``area_table`` of a class map held in memory (``IGNORE_INDEX`` is no-data) on the given grid."""
    index = np.asarray(index)
    pixels = np.bincount(index[index != IGNORE_INDEX].ravel(), minlength=schema.num_classes)
    grid = grid_areas(crs, transform)
    area_m2 = None
    if grid is not None:
        area_m2 = class_areas_m2(index, grid.window(Window(0, 0, index.shape[1], index.shape[0])), pixels.size)
    return area_table(ClassTally(pixels, area_m2), schema)


def write_area_json(path: str | Path, rows: list[dict], extra: dict | None = None) -> Path:
    """The area rows as JSON, with ``extra`` (scene size, area method, CRS) beside them."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps({**(extra or {}), "classes": rows}, indent=2), encoding="utf-8")
    return path


def write_area_csv(path: str | Path, rows: list[dict], note: str | None = None) -> Path:
    """The area rows as CSV; ``note`` (areas approximate, or why there are none in m²) fills a last column."""
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
