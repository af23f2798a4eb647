"""``landseg assess`` without the command line: a map, its labelled sample points and the design they
were drawn under, to the error matrix in area proportions, accuracies and class areas with intervals.

Everything is checked before anything is written: the points (outside the map or on no-data: counted
and reported, never used), their reference labels (blank or unknown ones listed with counts), and the
design against the map (the strata's pixel counts and areas, recounted in one streamed pass, must be
the ones recorded when drawing). Without a design the points are not known to be a probability sample:
only the sample's own confusion matrix (counts) is written, and no accuracy or area is estimated.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landseg import __version__
from landseg.assess.design import ALL_PIXELS, SampleDesign, read_design
from landseg.assess.estimators import AccuracyEstimates, stratified_estimates
from landseg.assess.points import LabelledPoints, blank, read_labelled_points
from landseg.assess.rasters import (
    ClassRaster,
    ValueCounts,
    bounded_block_cache,
    check_strata_grid,
    count_values,
    open_class_raster,
)
from landseg.assess.sample import design_path_for, read_at
from landseg.errors import DataError
from landseg.maps.areas import SQUARE_METRES_PER_HECTARE

NO_DESIGN = (
    "no sampling design was given, so these points are not known to be a probability sample: without "
    "each point's inclusion probability no accuracy or area of the map can be estimated from them. "
    "This is only the sample's own confusion matrix (counts). Give --design (written by landseg sample "
    "beside the points) to estimate accuracies and areas."
)
AREA_TOLERANCE = 1e-6
"""Relative difference between recorded and recounted stratum areas that still counts as the same."""


@dataclass
class AssessResult:
    paths: dict[str, Path]
    summary: dict
    estimates: AccuracyEstimates | None
    seconds: float


@dataclass
class _Located:
    """The points that fall on valid map pixels, and what happened to the others."""

    rows: np.ndarray
    cols: np.ndarray
    map_values: np.ndarray
    references: list
    ids: np.ndarray
    outside: int
    on_nodata: int


@bounded_block_cache()
def assess_map(
    map_path: str | Path,
    points_path: str | Path,
    reference_field: str,
    out_dir: str | Path,
    *,
    design_path: str | Path | None = None,
    schema: str | Path | None = None,
    pictures: bool = True,
) -> AssessResult:
    """Assess ``map_path`` with the labelled points; write every output into ``out_dir``.

    GDAL's block cache is bounded while it runs, so memory stays flat in map size."""
    started = time.perf_counter()
    maps = open_class_raster(map_path, schema)
    points_path = Path(points_path)
    if design_path is None and design_path_for(points_path).exists():
        design_path = design_path_for(points_path)
    design = None if design_path is None else read_design(design_path)
    points = read_labelled_points(points_path, reference_field, maps.crs)
    located = _locate(maps, points)
    if not len(located.rows):
        raise DataError(
            f"none of its {len(points.x)} points falls on a valid pixel of {maps.path.name} "
            f"({located.outside} outside the map, {located.on_nodata} on no-data)",
            points_path,
        )
    references = _reference_values(maps, located, reference_field, points_path)
    facts = {
        "map": str(maps.path),
        "points": str(points_path),
        "reference_field": reference_field,
        "design": None if design_path is None else str(design_path),
        "points_read": len(points.x),
        "points_used": len(located.rows),
        "points_outside_map": located.outside,
        "points_on_nodata": located.on_nodata,
        "points_crs": points.source_crs,
        "points_reprojected": points.reprojected,
        "landseg_version": __version__,
    }
    out_dir = Path(out_dir)
    if design is None:
        from landseg.assess.report import write_sample_only

        summary, paths = write_sample_only(out_dir, maps, located.map_values, references, facts, NO_DESIGN)
        return AssessResult(paths, summary, None, time.perf_counter() - started)
    estimates, summary = _estimate(maps, design, located, references, facts, design_path)
    from landseg.assess.report import write_outputs

    paths = write_outputs(out_dir, maps, estimates, summary, pictures)
    return AssessResult(paths, summary, estimates, time.perf_counter() - started)


def _locate(maps: ClassRaster, points: LabelledPoints) -> _Located:
    cols_f, rows_f = ~maps.transform * (points.x, points.y)
    rows, cols = np.floor(rows_f).astype(np.int64), np.floor(cols_f).astype(np.int64)
    inside = (rows >= 0) & (rows < maps.height) & (cols >= 0) & (cols < maps.width)
    values = np.full(len(rows), -1, dtype=np.int64)
    values[inside] = read_at(maps, rows[inside], cols[inside])
    used = values >= 0
    return _Located(
        rows[used],
        cols[used],
        values[used],
        [r for r, keep in zip(points.reference, used.tolist(), strict=True) if keep],
        points.ids[used],
        outside=int((~inside).sum()),
        on_nodata=int((inside & ~used).sum()),
    )


def _reference_values(maps: ClassRaster, located: _Located, field: str, path: Path) -> np.ndarray:
    """The map value each reference label means; ``DataError`` listing blank and unknown labels."""
    blanks = [int(i) for i, label in zip(located.ids.tolist(), located.references, strict=True) if blank(label)]
    if blanks:
        shown = ", ".join(map(str, blanks[:10])) + (" ..." if len(blanks) > 10 else "")
        raise DataError(f"{len(blanks)} points have no value in field {field!r} (ids {shown}); label every point", path)
    values = [maps.value_of(label) for label in located.references]
    unknown = Counter(str(label) for label, value in zip(located.references, values, strict=True) if value is None)
    if unknown:
        listed = ", ".join(f"{label!r} ({n} points)" for label, n in unknown.most_common())
        known = ", ".join(sorted(set(maps.names.values()))[:20]) if maps.names else "the map's integer values"
        raise DataError(
            f"field {field!r} holds reference values the map's classes lack: {listed} (known: {known})", path
        )
    return np.array(values, dtype=np.int64)


def _estimate(
    maps: ClassRaster,
    design: SampleDesign,
    located: _Located,
    references: np.ndarray,
    facts: dict,
    design_path,
) -> tuple[AccuracyEstimates, dict]:
    strata = None
    if design.method == "stratified" and design.strata_source != "map":
        strata = open_class_raster(design.strata_source, role="strata raster")
        check_strata_grid(maps, strata)
    _check_grid(maps, design, design_path)
    map_counts, strata_counts = count_values(maps, strata)
    if design.method != "stratified":
        strata_counts = map_counts.merged(ALL_PIXELS)
    _check_strata(design, strata_counts, maps, strata, design_path)
    if design.method != "stratified":
        point_strata = np.full(len(located.rows), ALL_PIXELS)
    elif strata is None:
        point_strata = located.map_values
    else:
        point_strata = read_at(strata, located.rows, located.cols)
    with_area = strata_counts.area_m2 is not None
    sizes = {s.value: (strata_counts.area_m2[s.value] if with_area else s.pixels) for s in design.strata}  # type: ignore[index]
    pixels = {s.value: float(s.pixels) for s in design.strata}
    weights = _area_weights(maps, located, point_strata, sizes, pixels) if with_area else None
    classes = sorted({v for v, n in map_counts.pixels.items() if n > 0} | set(references.tolist()))
    estimates = stratified_estimates(
        point_strata,
        located.map_values,
        references,
        sizes,
        classes=classes,
        stratum_pixels=pixels,
        point_weights=weights,
    )
    summary = _summary(maps, design, estimates, map_counts, with_area, facts)
    return estimates, summary


def _check_grid(maps: ClassRaster, design: SampleDesign, design_path) -> None:
    recorded = design.map
    if not recorded or "transform" not in recorded:
        return
    same = [recorded.get("width"), recorded.get("height")] == [maps.width, maps.height] and np.allclose(
        recorded["transform"], list(maps.transform)[:6], rtol=0, atol=1e-9 * max(1.0, abs(maps.transform.a))
    )
    if not same:
        raise DataError(
            f"the design was drawn on another grid ({recorded.get('width')} x {recorded.get('height')} px, "
            f"transform {recorded.get('transform')}) than {maps.path.name} ({maps.width} x {maps.height} px, "
            f"transform {list(maps.transform)[:6]})",
            design_path,
        )


def _check_strata(
    design: SampleDesign, counts: ValueCounts, maps: ClassRaster, strata: ClassRaster | None, design_path
) -> None:
    """Every stratum's pixels (and area) as recorded must be what the map holds now."""
    source = strata or maps
    problems = []
    for stratum in design.strata:
        found = counts.pixels.get(stratum.value, 0)
        area = None if counts.area_m2 is None else counts.area_m2.get(stratum.value, 0.0)
        if found != stratum.pixels:
            problems.append(
                f"stratum {source.name(stratum.value)!r}: {stratum.pixels:,} px in the design, {found:,} px in the map"
            )
        elif (
            stratum.area_m2 is not None
            and area is not None
            and abs(area - stratum.area_m2) > AREA_TOLERANCE * max(area, 1.0)
        ):
            problems.append(
                f"stratum {source.name(stratum.value)!r}: {stratum.area_m2:,.1f} m² in the design, {area:,.1f} m² in the map"
            )
    missing = sorted(set(counts.pixels) - {s.value for s in design.strata})
    problems += [
        f"stratum {source.name(v)!r}: {counts.pixels[v]:,} px in the map, absent from the design" for v in missing
    ]
    if problems:
        raise DataError(
            f"the design does not match {source.path.name}: "
            + "; ".join(problems[:8])
            + (" ..." if len(problems) > 8 else ""),
            design_path,
        )


def _area_weights(
    maps: ClassRaster, located: _Located, point_strata: np.ndarray, areas: dict, pixels: dict
) -> np.ndarray:
    """Each point's pixel area over its stratum's mean pixel area (all 1 on an equal-area grid)."""
    stratum_mean = np.array([areas[s] / pixels[s] for s in point_strata.tolist()])
    return maps.areas_at(located.rows, located.cols) / stratum_mean


def _summary(
    maps: ClassRaster,
    design: SampleDesign,
    estimates: AccuracyEstimates,
    map_counts: ValueCounts,
    with_area: bool,
    facts: dict,
) -> dict:
    unit, scale = ("ha", SQUARE_METRES_PER_HECTARE) if with_area else ("px", 1.0)
    areas = estimates.areas(scale)
    per_class = []
    for k, value in enumerate(estimates.classes):
        mapped = map_counts.area_m2.get(value, 0.0) / scale if with_area else float(map_counts.pixels.get(value, 0))  # type: ignore[union-attr]
        per_class.append(
            {
                "class": maps.name(value),
                "value": int(value),
                "users_accuracy": estimates.users[k].to_dict(),
                "producers_accuracy": estimates.producers[k].to_dict(),
                "area_proportion": estimates.proportions[k].to_dict(),
                f"estimated_area_{unit}": areas[k].to_dict(),
                f"mapped_area_{unit}": mapped,
                "mapped_pixels": int(map_counts.pixels.get(value, 0)),
                "sample_points_mapped": int(estimates.sample_counts[k].sum()),
                "sample_points_reference": int(estimates.sample_counts[:, k].sum()),
            }
        )
    return {
        **facts,
        "method": design.method,
        "strata_source": design.strata_source,
        "strata": [
            {"value": s.value, "name": s.name, "pixels": s.pixels, "area_m2": s.area_m2, "sample_size": s.sample_size}
            for s in design.strata
        ],
        "area_unit": unit,
        "area_method": maps.area_method(),
        f"total_area_{unit}": estimates.total_size / scale,
        "estimator": "Stehman (2014) stratified estimators with the finite population correction; 95 % intervals are estimate ± 1.96 SE",
        "classes": [maps.name(v) for v in estimates.classes],
        "overall_accuracy": estimates.overall.to_dict(),
        "per_class": per_class,
        "error_matrix": {
            "rows": "map class",
            "columns": "reference class",
            "proportions": estimates.error_matrix.tolist(),
            "se": estimates.error_matrix_se.tolist(),
            "sample_counts": estimates.sample_counts.tolist(),
        },
    }
