"""``landseg sample`` without the command line: a probability sample of a map's pixels, streamed.

Two passes over the map in strips of rows, so memory follows the strip and the sample, never the map:

1. count the pixels (and ground area) of every stratum, strip by strip;
2. draw: for each stratum, ``n_h`` distinct ranks among its ``N_h`` pixels (uniform without
   replacement, from the seed), sorted; then walk the strips again and turn each rank into the pixel
   that holds it (the rank-th pixel of the stratum in raster order). The per-strip counts of pass 1
   say which strips hold a stratum's next rank, so only those are searched.

A systematic sample is a square grid of pixels, ``d`` apart with a random start, keeping those that
hold valid values. Strata are the map's values (default), or the values of another raster on the same
grid (``strata``); simple random and systematic samples have one stratum, every valid pixel.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from landseg.assess.design import ALL_PIXELS, METHODS, SampleDesign, Stratum
from landseg.assess.estimators import (
    ALLOCATIONS,
    allocate,
    sample_size_for_overall_accuracy,
    sample_size_for_users_accuracy,
)
from landseg.assess.points import SamplePoints, write_points_csv, write_points_gpkg
from landseg.assess.rasters import (
    ClassRaster,
    ValueCounts,
    bounded_block_cache,
    check_strata_grid,
    count_values,
    open_class_raster,
    open_if_given,
)
from landseg.errors import ConfigError, DataError
from landseg.io.raster import open_raster


@dataclass(frozen=True)
class SampleOptions:
    method: str = "stratified"
    size: int | None = None
    """Total points; None with ``target_se`` computes it (Olofsson eq. 13), else ``DEFAULT_SIZE``."""
    allocation: str = "olofsson"
    minimum: int = 50
    """Points per rare stratum under the ``olofsson`` allocation."""
    target_se: float | None = None
    expected_users: dict[str, float] = field(default_factory=dict)
    """Anticipated user's accuracy per stratum (name or value); others take ``default_user``."""
    default_user: float = 0.8
    seed: int = 0

    def check(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(f"--allocation must be one of {', '.join(ALLOCATIONS)}, got {self.allocation!r}")
        if self.size is not None and self.size < 2:
            raise ConfigError(f"--size must be at least 2 points, got {self.size}")
        if self.size is not None and self.target_se is not None:
            raise ConfigError("give either --size or --target-se, not both")
        if self.target_se is not None and not 0 < self.target_se < 0.5:
            raise ConfigError(f"--target-se must be between 0 and 0.5, got {self.target_se}")
        if self.minimum < 2:
            raise ConfigError(f"--min-per-stratum must be at least 2, got {self.minimum}")
        for name, value in {**self.expected_users, "default": self.default_user}.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"anticipated user's accuracy of {name} must be in 0..1, got {value}")


DEFAULT_SIZE = 500


@dataclass
class SampleResult:
    paths: dict[str, Path]
    design: SampleDesign
    points: SamplePoints
    seconds: float

    def labelled(self, references: Sequence, out: str | Path) -> Path:
        """The drawn points with their reference labels (class names or codes, one per point in drawing
        order) as a GeoPackage for ``assess``; for labels that come from code rather than from QGIS."""
        return write_points_gpkg(Path(out), self.points, self.design.map.get("crs"), references)


@bounded_block_cache()
def draw_sample(
    map_path: str | Path,
    out: str | Path,
    options: SampleOptions = SampleOptions(),
    *,
    strata_path: str | Path | None = None,
    schema: str | Path | None = None,
    image: str | Path | None = None,
) -> SampleResult:
    """Draw a sample of ``map_path``; write ``out`` (GeoPackage), its CSV and design JSON beside it.

    GDAL's block cache is bounded while it runs, so memory stays flat in map size."""
    started = time.perf_counter()
    options.check()
    out = Path(out)
    if out.suffix.lower() != ".gpkg":
        raise ConfigError(f"--out must be a GeoPackage (.gpkg), got {out.name}")
    maps = open_class_raster(map_path, schema)
    strata = None
    if strata_path is not None:
        if options.method != "stratified":
            raise ConfigError(f"--strata stratifies a sample; a {options.method} sample has none")
        strata = open_class_raster(strata_path, role="strata raster")
        check_strata_grid(maps, strata)
    map_counts, strata_counts = count_values(maps, strata)
    if not map_counts.pixels:
        raise DataError("has no valid pixels to sample (everything is no-data, masked or ignored)", maps.path)
    if options.method == "stratified":
        design = _stratified_design(maps, strata, strata_counts, options)
        points = _draw_stratified(maps, strata, strata_counts, design, np.random.default_rng(options.seed))
    else:
        design = _single_stratum_design(maps, map_counts, options)
        rng = np.random.default_rng(options.seed)
        if options.method == "simple":
            single = map_counts.merged(ALL_PIXELS)
            points = _draw_stratified(maps, None, single, design, rng, all_pixels=True)
        else:
            points = _draw_systematic(maps, design, rng)
            design.strata[0] = Stratum(
                ALL_PIXELS, design.strata[0].pixels, len(points), design.strata[0].area_m2, "all"
            )
            points.inclusion_probability[:] = design.strata[0].inclusion_probability
    design.map = {"path": str(maps.path), **maps.grid}
    design.area_method = maps.area_method()
    design.strata_source = "map" if strata is None else str(strata.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {
        "points": write_points_gpkg(out, points, maps.grid["crs"]),
        "csv": write_points_csv(out.with_suffix(".csv"), points),
        "design": design.write(design_path_for(out)),
    }
    if image is not None:
        from landseg.assess.sheet import write_labelling_sheet

        paths["sheet"] = write_labelling_sheet(out.with_suffix(".html"), image, points, maps)
    return SampleResult(paths, design, points, time.perf_counter() - started)


def design_path_for(points: str | Path) -> Path:
    """Where ``sample`` writes the design of a points file, and where ``assess`` looks for it."""
    points = Path(points)
    return points.with_name(f"{points.stem}.design.json")


def _stratum_name(maps: ClassRaster, strata: ClassRaster | None, value: int) -> str:
    return (strata or maps).name(value)


def _stratified_design(
    maps: ClassRaster, strata: ClassRaster | None, counts: ValueCounts, options: SampleOptions
) -> SampleDesign:
    values = sorted(counts.pixels)
    pixels = np.array([counts.pixels[v] for v in values], dtype=np.float64)
    names = [_stratum_name(maps, strata, v) for v in values]
    details: dict = {"seed": options.seed, "allocation": options.allocation}
    if options.target_se is not None:
        users = [_expected_user(options, name, value) for name, value in zip(names, values, strict=True)]
        total = sample_size_for_overall_accuracy(pixels / pixels.sum(), users, options.target_se)
        details.update(target_se_overall=options.target_se, expected_users=dict(zip(names, users, strict=True)))
        details["size_rule"] = "Olofsson et al. (2014) eq. 13"
    else:
        total = options.size or DEFAULT_SIZE
    details["requested_size"] = int(total)
    if options.allocation == "olofsson":
        details["min_per_stratum"] = options.minimum
    sizes = allocate(int(total), pixels, options.allocation, options.minimum)
    strata_rows = [
        Stratum(v, int(n_pixels), int(n), _area(counts, v), name)
        for v, n_pixels, n, name in zip(values, pixels, sizes, names, strict=True)
    ]
    return SampleDesign("stratified", strata_rows, details=details)


def _expected_user(options: SampleOptions, name: str, value: int) -> float:
    for key in (name, str(value)):
        if key in options.expected_users:
            return options.expected_users[key]
    return options.default_user


def _area(counts: ValueCounts, value: int) -> float | None:
    return None if counts.area_m2 is None else counts.area_m2[value]


def _single_stratum_design(maps: ClassRaster, counts: ValueCounts, options: SampleOptions) -> SampleDesign:
    total_pixels = sum(counts.pixels.values())
    details: dict = {"seed": options.seed}
    if options.target_se is not None:
        size = sample_size_for_users_accuracy(options.default_user, options.target_se)
        details.update(target_se_overall=options.target_se, expected_overall=options.default_user)
        details["size_rule"] = "p(1-p)/SE² + 1 with p the anticipated overall accuracy"
    else:
        size = options.size or DEFAULT_SIZE
    size = min(size, total_pixels)
    area = None if counts.area_m2 is None else sum(counts.area_m2.values())
    if options.method == "systematic":
        spacing = max(1, math.floor(math.sqrt(total_pixels / size)))
        details["spacing_px"] = spacing
    return SampleDesign(options.method, [Stratum(ALL_PIXELS, total_pixels, int(size), area, "all")], details=details)


def _draw_stratified(
    maps: ClassRaster,
    strata: ClassRaster | None,
    counts: ValueCounts,
    design: SampleDesign,
    rng: np.random.Generator,
    all_pixels: bool = False,
) -> SamplePoints:
    """Pass 2: the ranks of each stratum's chosen pixels, found strip by strip."""
    ranks = {
        s.value: np.sort(rng.choice(s.pixels, size=s.sample_size, replace=False))
        if s.sample_size
        else np.empty(0, np.int64)
        for s in design.strata
    }
    seen = dict.fromkeys(ranks, 0)
    found_rows, found_cols, found_strata, found_values = [], [], [], []
    with open_raster(maps.path) as map_ds, open_if_given(strata) as strata_ds:
        for window, strip_counts in zip(maps.strips(), counts.strips, strict=True):
            wanted = {}
            for value, count in strip_counts.items():
                chosen = ranks[value]
                low, high = np.searchsorted(chosen, [seen[value], seen[value] + count])
                if high > low:
                    wanted[value] = chosen[low:high] - seen[value]
                seen[value] += count
            if not wanted:
                continue
            values, valid = maps.read(map_ds, window)
            strata_values = values
            if strata is not None:
                strata_values, strata_valid = strata.read(strata_ds, window)
                valid &= strata_valid
            for value, offsets in wanted.items():
                where = valid if all_pixels else valid & (strata_values == value)
                flat = np.flatnonzero(where)[offsets]
                found_rows.append(flat // window.width + window.row_off)
                found_cols.append(flat % window.width)
                found_strata.append(np.full(len(flat), value))
                found_values.append(values.ravel()[flat])
    drawn = (_cat(found_rows), _cat(found_cols), _cat(found_strata), _cat(found_values))
    return _points(maps, strata, design, *drawn, all_pixels)


def _draw_systematic(maps: ClassRaster, design: SampleDesign, rng: np.random.Generator) -> SamplePoints:
    spacing = int(design.details["spacing_px"])
    row0, col0 = (int(v) for v in rng.integers(0, spacing, size=2))
    design.details["start_px"] = [row0, col0]
    found_rows, found_cols, found_values = [], [], []
    with open_raster(maps.path) as map_ds:
        for window in maps.strips():
            top, height = int(window.row_off), int(window.height)
            first = row0 + spacing * max(0, math.ceil((top - row0) / spacing))
            rows = np.arange(first, top + height, spacing)
            if not len(rows):
                continue
            values, valid = maps.read(map_ds, window)
            cols = np.arange(col0, maps.width, spacing)
            grid = np.ix_(rows - top, cols)
            r, c = np.nonzero(valid[grid])
            found_rows.append(rows[r])
            found_cols.append(cols[c])
            found_values.append(values[grid][r, c])
    rows_all, cols_all = _cat(found_rows), _cat(found_cols)
    strata = np.full(len(rows_all), ALL_PIXELS)
    return _points(maps, None, design, rows_all, cols_all, strata, _cat(found_values), True)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def _points(
    maps: ClassRaster,
    strata: ClassRaster | None,
    design: SampleDesign,
    rows: np.ndarray,
    cols: np.ndarray,
    stratum: np.ndarray,
    map_values: np.ndarray,
    all_pixels: bool,
) -> SamplePoints:
    """Points in raster order with their map values (as read while drawing) and centres."""
    order = np.lexsort((cols, rows))
    rows, cols, stratum, map_values = rows[order], cols[order], stratum[order], map_values[order]
    x, y = maps.transform * (cols + 0.5, rows + 0.5)
    probability = np.array([design.stratum(int(s)).inclusion_probability for s in stratum])  # type: ignore[union-attr]
    names = ["all" if all_pixels else _stratum_name(maps, strata, int(s)) for s in stratum]
    return SamplePoints(
        rows,
        cols,
        np.asarray(x, dtype=np.float64),
        np.asarray(y, dtype=np.float64),
        stratum,
        names,
        map_values,
        [maps.name(int(v)) for v in map_values],
        probability,
    )


def read_at(raster: ClassRaster, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of ``raster`` at pixels (rows, cols), one small read each; -1 where not valid.

    Reading point by point costs the same whatever the map's size (GDAL caches the blocks it reads)."""
    values = np.full(len(rows), -1, dtype=np.int64)
    with open_raster(raster.path) as dataset:
        for i, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            if 0 <= row < raster.height and 0 <= col < raster.width:
                value, valid = raster.read(dataset, Window(col, row, 1, 1))
                if valid[0, 0]:
                    values[i] = value[0, 0]
    return values
