"""A map (or stratification raster) as ``sample`` and ``assess`` read it: its class names, its valid
pixels, and one streamed pass that counts each value's pixels and ground area.

A raster's values get names from, in this order: landseg's class COG tag (``landseg_schema``: values
are class indices), the legend of a ``landseg change`` map (``landseg_change_legend``: values are from-to
codes) or of a binned raster (``landseg_legend``, ``maps.bins``), a schema given by the user (values are its codes; its ignore codes are no-data), or nothing
(each value is its own name). No-data, masked pixels and ignored codes are outside the population: they
are never counted and never drawn.

Rasters are read in full-width strips of rows, so memory follows the strip, not the map, and pixels are
visited in raster order whatever the strip height (the sample drawn from a seed does not depend on it).
Ground areas come from the project's one area function, ``landseg.maps.areas``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from landseg.classes import ClassSchema, get_schema
from landseg.errors import ConfigError, DataError
from landseg.io.raster import open_raster
from landseg.maps.areas import area_method, grid_areas, pixel_areas
from landseg.maps.bins import LEGEND_TAG

SCHEMA_TAG = "landseg_schema"
CHANGE_LEGEND_TAG = "landseg_change_legend"
STRIP_PIXELS = 1 << 20
"""Pixels read at once (a 16384-wide map: 64 rows); bounds memory."""
GDAL_CACHE_MB = 64
"""GDAL's block cache while streaming: its default (5 % of RAM) would keep a whole map's blocks."""


@contextmanager
def bounded_block_cache() -> Iterator[None]:
    """GDAL's block cache capped at ``GDAL_CACHE_MB`` for a streamed pass; also a decorator
    (``@bounded_block_cache()``) that keeps the decorated function's signature."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        yield


@dataclass(frozen=True)
class ClassRaster:
    """A one-band integer raster and the names of its values."""

    path: Path
    names: dict[int, str]
    """Names of the values that mean a class; empty when the raster carries none (values name themselves)."""
    ignored: frozenset[int]
    schema: ClassSchema | None
    crs: rasterio.crs.CRS | None
    transform: rasterio.Affine
    width: int
    height: int

    def name(self, value: int) -> str:
        return self.names.get(int(value), str(int(value)))

    def value_of(self, label) -> int | None:
        """The raster value a reference label means: a class name, or the value itself."""
        if isinstance(label, str):
            text = label.strip()
            for value, name in self.names.items():
                if name == text:
                    return value
            try:
                label = int(text)
            except ValueError:
                return None
        if isinstance(label, (int, np.integer)) or (isinstance(label, float) and float(label).is_integer()):
            value = int(label)
            return value if not self.names or value in self.names else None
        return None

    @property
    def grid(self) -> dict:
        return {
            "crs": None if self.crs is None else self.crs.to_wkt(),
            "transform": list(self.transform)[:6],
            "width": self.width,
            "height": self.height,
        }

    def same_grid(self, other: ClassRaster) -> bool:
        return (
            self.crs == other.crs
            and self.transform.almost_equals(other.transform)
            and (self.width, self.height) == (other.width, other.height)
        )

    def strip_rows(self) -> int:
        return max(1, STRIP_PIXELS // max(1, self.width))

    def strips(self) -> Iterator[Window]:
        rows = self.strip_rows()
        for top in range(0, self.height, rows):
            yield Window(0, top, self.width, min(rows, self.height - top))

    def read(self, dataset, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Values (int64) and where they belong to the population (not no-data, masked or ignored)."""
        values = dataset.read(1, window=window).astype(np.int64, copy=False)
        valid = dataset.read_masks(1, window=window) != 0
        if self.ignored:
            valid &= ~np.isin(values, list(self.ignored))
        return values, valid

    def area_method(self) -> str | None:
        return None if self.crs is None else area_method(self.crs, self.transform)

    def pixel_areas(self, window: Window) -> np.ndarray | None:
        """Ground area (m²) of each pixel of ``window``; None for a grid without a ground size (no CRS)."""
        if self.area_method() is None:
            return None
        return pixel_areas(self.crs, self.transform, window)

    def areas_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Ground area (m²) of the pixels (rows, cols), all at once; only for a grid with a ground size."""
        grid = grid_areas(self.crs, self.transform)
        if grid is None:
            raise ValueError(f"{self.path.name} has no ground area in m² (no CRS)")
        return grid.centred_at(np.asarray(rows) + 0.5, np.asarray(cols) + 0.5)


def open_class_raster(path: str | Path, schema: str | Path | None = None, role: str = "map") -> ClassRaster:
    """Check that ``path`` is a one-band integer raster and find the names of its values."""
    path = Path(path)
    with open_raster(path) as source:
        if source.count != 1:
            raise DataError(f"has {source.count} bands; a {role} has one band of integer class values", path)
        if not np.issubdtype(np.dtype(source.dtypes[0]), np.integer):
            raise DataError(f"holds {source.dtypes[0]} values; a {role} holds integer class values", path)
        tags = source.tags()
        grid = dict(crs=source.crs, transform=source.transform, width=source.width, height=source.height)
    names: dict[int, str] = {}
    ignored: frozenset[int] = frozenset()
    found: ClassSchema | None = None
    if schema is not None:
        found = get_schema(schema)
        if not found.has_codes:
            raise ConfigError(f"schema {found.name!r} defines mask colours, not codes; a {role} needs codes")
        names = {int(c.code): c.name for c in found.classes if c.code is not None}
        ignored = frozenset(int(c) for c in found.ignore_codes)
    elif SCHEMA_TAG in tags:
        try:
            found = ClassSchema.from_dict(json.loads(tags[SCHEMA_TAG]), source=str(path))
        except ValueError as exc:
            raise DataError(f"its {SCHEMA_TAG} tag is not a class schema ({exc})", path) from None
        names = dict(enumerate(found.names))
    elif legend_tag := next((tag for tag in (CHANGE_LEGEND_TAG, LEGEND_TAG) if tag in tags), None):
        try:
            names = {int(code): str(name) for code, name in json.loads(tags[legend_tag]).items()}
        except (ValueError, AttributeError) as exc:
            raise DataError(f"its {legend_tag} tag is not a legend ({exc})", path) from None
    return ClassRaster(path, names, ignored, found, **grid)


@dataclass
class ValueCounts:
    """Pixels and ground area (m², None without a CRS) of each value, with per-strip pixel counts."""

    pixels: dict[int, int] = field(default_factory=dict)
    area_m2: dict[int, float] | None = field(default_factory=dict)
    strips: list[dict[int, int]] = field(default_factory=list)

    def add(self, values: np.ndarray, areas: np.ndarray | None) -> None:
        if values.size and values.min() >= 0 and values.max() < 65536:
            # Class and stratum values are small integers: counting beats sorting.
            histogram = np.bincount(values, minlength=1)
            found = np.flatnonzero(histogram)
            counts = histogram[found]
            sums = None if areas is None else np.bincount(values, weights=areas, minlength=1)[found]
        else:
            found, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
            sums = None if areas is None else np.bincount(inverse.ravel(), weights=areas, minlength=len(found))
        strip = dict(zip(found.tolist(), counts.tolist(), strict=True))
        self.strips.append(strip)
        for value, count in strip.items():
            self.pixels[value] = self.pixels.get(value, 0) + count
        if sums is None or self.area_m2 is None:
            self.area_m2 = None
            return
        for value, area in zip(found.tolist(), sums.tolist(), strict=True):
            self.area_m2[value] = self.area_m2.get(value, 0.0) + area

    def merged(self, value: int) -> ValueCounts:
        """Every value counted as the one value ``value`` (the single stratum of an unstratified sample)."""
        return ValueCounts(
            pixels={value: sum(self.pixels.values())},
            area_m2=None if self.area_m2 is None else {value: sum(self.area_m2.values())},
            strips=[{value: sum(strip.values())} for strip in self.strips],
        )


def count_values(maps: ClassRaster, strata: ClassRaster | None = None) -> tuple[ValueCounts, ValueCounts]:
    """One streamed pass: pixels and areas of each map value and of each stratum value.

    The population is where the map (and the strata raster, when given) hold valid values; with no
    strata raster the strata are the map's values, and both results are the same object."""
    map_counts = ValueCounts()
    strata_counts = map_counts if strata is None else ValueCounts()
    with open_raster(maps.path) as map_ds, open_if_given(strata) as strata_ds:
        for window in maps.strips():
            values, valid = maps.read(map_ds, window)
            if strata is not None:
                strata_values, strata_valid = strata.read(strata_ds, window)
                valid &= strata_valid
            areas = maps.pixel_areas(window)
            kept_areas = None if areas is None else areas[valid]
            map_counts.add(values[valid], kept_areas)
            if strata is not None:
                strata_counts.add(strata_values[valid], kept_areas)
    return map_counts, strata_counts


def open_if_given(raster: ClassRaster | None) -> AbstractContextManager:
    """``open_raster`` of a raster that may be absent: the context yields None then."""
    return nullcontext() if raster is None else open_raster(raster.path)


def check_strata_grid(maps: ClassRaster, strata: ClassRaster) -> None:
    if not maps.same_grid(strata):
        raise DataError(
            f"is not on the grid of the map {maps.path.name} (CRS, transform and size must be the same)",
            strata.path,
        )
