"""``landseg change`` without the command line: check both dates, stream the comparison, write it all.

``compare_maps`` checks everything it can before writing anything (schemas, bands, the class map, the
overlap, the confidence rasters' grids), then streams BEFORE's overlap window by window: each block of
both dates becomes class indices, adds to the transition counter and is written as from-to codes into
the change raster's scratch file. Then come the COG, the tables, the polygons, the pictures and the
report. A map value its schema lacks stops the run in the block where it is found, and the scratch goes
away with it. ``predict_pair`` first turns two images into class maps with confidence through the
prediction engine (``predict.engine.predict_scene``), with ``ChangeOptions.prediction``: the
``PredictOptions`` of ``landseg predict``, not a second set of tile, overlap or blend options.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from rich.console import Console

from landseg import __version__
from landseg.change.grid import Overlap, find_overlap, on_before_grid, read_band
from landseg.change.inputs import (
    ClassMap,
    ConfidenceRaster,
    open_class_map,
    open_confidence,
    reconcile,
)
from landseg.change.matrix import TransitionCounter, summarize, threshold_steps
from landseg.change.outputs import open_change_scratch, write_change_polygons, write_tables
from landseg.errors import ConfigError, LandsegError
from landseg.io.raster import open_raster
from landseg.maps.areas import area_method, pixel_areas
from landseg.maps.cog import copy_to_cog, scratch_path, write_window
from landseg.maps.polygons import VECTOR_FORMATS, check_polygon_format
from landseg.predict.choices import Engine
from landseg.predict.options import PredictOptions
from landseg.predict.progress import counting_bar, set_total

DEFAULT_BLOCK = 2048
IN_FLIGHT = 4
"""Rows of blocks submitted ahead of the one being written, when an executor runs them."""
CURVE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
PREDICTION = PredictOptions(confidence=True, areas=False)
"""How ``--checkpoint`` predicts the two images: ``landseg predict``'s defaults, with the confidence
raster that ``--min-confidence`` reads and without the area tables that ``change`` computes itself."""


@dataclass(frozen=True)
class ChangeOptions:
    block: int = DEFAULT_BLOCK
    """Side of the square windows streamed at once; bounds memory."""
    min_confidence: float | None = None
    polygons: str | None = "gpkg"
    min_polygon_pixels: int = 1
    """Smallest change polygon kept, in pixels; smaller ones stay in the map and the tables."""
    pictures: bool = True
    gdal_cache_mb: int = 256
    prediction: PredictOptions = PREDICTION
    """Used only when the dates are images to predict first (``predict_pair``)."""

    def check(self) -> None:
        self.prediction.check()
        if self.block < 16:
            raise ConfigError(f"--block must be at least 16 pixels, got {self.block}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"--min-confidence must be in 0..1, got {self.min_confidence}")
        check_polygon_format(self.polygons)
        if self.min_polygon_pixels < 1:
            raise ConfigError(f"--min-polygon-pixels must be at least 1 pixel, got {self.min_polygon_pixels}")


DEFAULT_CHANGE_OPTIONS = ChangeOptions()


@dataclass
class ChangeResult:
    paths: dict[str, Path]
    summary: dict
    facts: dict
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)


def compare_maps(
    before: str | Path,
    after: str | Path,
    out_dir: str | Path,
    *,
    schema: str | Path | None = None,
    after_schema: str | Path | None = None,
    class_map: str | Path | None = None,
    before_confidence: str | Path | None = None,
    after_confidence: str | Path | None = None,
    options: ChangeOptions = DEFAULT_CHANGE_OPTIONS,
    console: Console | None = None,
    executor=None,
) -> ChangeResult:
    """Compare class map ``after`` with ``before`` on BEFORE's grid; write every output into ``out_dir``.

    ``executor`` (a Dask ``Client`` or a ``concurrent.futures`` executor: anything with ``submit``)
    compares the rows of blocks as separate tasks; their partial matrices are summed here and their
    from-to codes written here, in order."""
    started = time.perf_counter()
    options.check()
    before, after, out_dir = Path(before), Path(after), Path(out_dir)
    old, new = open_class_map(before, schema), open_class_map(after, after_schema or schema)
    reconcile(old, new, class_map)
    confidences: list[ConfidenceRaster] = []
    if (before_confidence is None) != (after_confidence is None):
        raise ConfigError("give confidence rasters for both dates (--before-confidence and --after-confidence)")
    if before_confidence is not None and after_confidence is not None:
        confidences = [open_confidence(before_confidence, before), open_confidence(after_confidence, after)]
    elif options.min_confidence is not None:
        raise ConfigError(
            "--min-confidence needs the confidence of both dates: give images with --checkpoint, or "
            "--before-confidence and --after-confidence"
        )
    schema_used = new.schema
    names = schema_used.names
    min_steps = None if options.min_confidence is None else threshold_steps(options.min_confidence)
    console = console or Console(stderr=True)
    stages: dict[str, float] = {}
    with rasterio.Env(GDAL_CACHEMAX=options.gdal_cache_mb), ExitStack() as stack:
        with open_raster(before) as old_ds, open_raster(after) as new_ds:
            overlap = find_overlap(old_ds, new_ds)
        with_area = area_method(overlap.crs, overlap.transform) is not None
        plan = ComparisonPlan(old, new, tuple(confidences), overlap, min_steps, with_area, options.gdal_cache_mb)
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"change": out_dir / "change.tif"}
        scratch = scratch_path(paths["change"], "raw")
        stack.callback(scratch.unlink, missing_ok=True)
        tags = {"landseg_version": __version__, "before": before.name, "after": after.name}
        writer = open_change_scratch(scratch, overlap, schema_used, tags)
        stack.callback(writer.close)
        counter = TransitionCounter(len(names), with_area)
        block_rows = overlap.block_rows(options.block)
        try:
            with counting_bar(console, "blocks") as bar:
                task = bar.add_task("comparing", total=sum(len(row) for row in block_rows))
                for blocks, (row_counter, codes) in zip(
                    block_rows, _run_block_rows(plan, block_rows, executor), strict=False
                ):
                    counter.merge(row_counter)
                    for block, block_codes in zip(blocks, codes, strict=False):
                        write_window(
                            writer,
                            block_codes,
                            (block.row_off, block.row_off + block.height),
                            (block.col_off, block.col_off + block.width),
                        )
                    bar.advance(task, len(blocks))
        except LandsegError:
            writer.close()
            scratch.unlink(missing_ok=True)
            if created and not any(out_dir.iterdir()):
                out_dir.rmdir()
            raise
        stages["compare"] = time.perf_counter() - started
        writer.close()
        mark = time.perf_counter()
        copy_to_cog(scratch, paths["change"], "MODE")
        if options.polygons:
            paths["polygons"] = write_change_polygons(
                scratch,
                out_dir / f"change_polygons{VECTOR_FORMATS[options.polygons]}",
                schema_used,
                options.min_polygon_pixels,
            )
        stages["cog_polygons"] = time.perf_counter() - mark
    summary = summarize(counter, names, with_area, CURVE_THRESHOLDS if confidences else ())
    facts = {
        "before": str(before),
        "after": str(after),
        "schema": schema_used.name,
        "class_map": None if class_map is None else str(class_map),
        "crs": None if overlap.crs is None else overlap.crs.to_string(),
        "transform": list(overlap.transform)[:6],
        "overlap_width": overlap.width,
        "overlap_height": overlap.height,
        "overlap_offset": [int(overlap.window.col_off), int(overlap.window.row_off)],
        "resampled": overlap.resampled,
        "min_confidence": options.min_confidence,
        "min_polygon_pixels": options.min_polygon_pixels,
        "change_codes": f"from * {len(names)} + to; 255 no-data",
        "landseg_version": __version__,
    }
    mark = time.perf_counter()
    paths.update(write_tables(out_dir, summary, facts))
    if options.pictures:
        from landseg.change.report import (
            plot_change_map,
            plot_confidence_curve,
            plot_gains_losses,
            plot_transitions,
            write_change_report,
        )

        figures = [
            (
                "Change map (unchanged grey, changes in the colour of the class they became)",
                plot_change_map(paths["change"], summary, schema_used, out_dir / "change_map.png"),
            ),
            ("Transition matrix", plot_transitions(summary, schema_used, out_dir / "transitions.png")),
            ("Gains and losses", plot_gains_losses(summary, schema_used, out_dir / "gains_losses.png")),
        ]
        if confidences:
            figures.append(
                (
                    "Changed area vs confidence",
                    plot_confidence_curve(summary, out_dir / "confidence_curve.png", options.min_confidence),
                )
            )
        for _, figure in figures:
            paths[figure.stem] = figure
        paths["report"] = write_change_report(out_dir, summary, facts, figures)
    stages["outputs"] = time.perf_counter() - mark
    return ChangeResult(paths, summary, facts, time.perf_counter() - started, stages)


@dataclass(frozen=True)
class ComparisonPlan:
    """Everything a task needs to compare blocks on its own (plain, picklable values)."""

    before: ClassMap
    after: ClassMap
    confidences: tuple[ConfidenceRaster, ...]
    overlap: Overlap
    min_steps: int | None
    with_area: bool
    gdal_cache_mb: int


def compare_blocks(plan: ComparisonPlan, blocks: list[Window]) -> tuple[TransitionCounter, list[np.ndarray]]:
    """Blocks of the overlap counted into a fresh counter, with their from-to codes."""
    counter = TransitionCounter(plan.after.schema.num_classes, plan.with_area)
    overlap, codes = plan.overlap, []
    with rasterio.Env(GDAL_CACHEMAX=plan.gdal_cache_mb), ExitStack() as stack:
        old_ds = stack.enter_context(open_raster(plan.before.path))
        new_view = stack.enter_context(
            on_before_grid(stack.enter_context(open_raster(plan.after.path)), old_ds, overlap)
        )
        views = []
        if plan.confidences:
            views = [
                stack.enter_context(open_raster(plan.confidences[0].path)),
                stack.enter_context(
                    on_before_grid(stack.enter_context(open_raster(plan.confidences[1].path)), old_ds, overlap)
                ),
            ]
        for block in blocks:
            window = overlap.in_before(block)
            index_old = plan.before.to_index(*read_band(old_ds, window))
            index_new = plan.after.to_index(*read_band(new_view, window))
            lowest = None
            if views:
                lowest = np.minimum(
                    *(c.to_steps(*read_band(v, window)) for c, v in zip(plan.confidences, views, strict=False))
                )
            areas = pixel_areas(overlap.crs, overlap.transform, block) if plan.with_area else None
            codes.append(counter.add(index_old, index_new, areas, lowest, plan.min_steps))
    return counter, codes


def _run_block_rows(plan: ComparisonPlan, block_rows: list[list[Window]], executor) -> Iterator[tuple]:
    """``compare_blocks`` of each row of blocks, in order: here, or as executor tasks with a few in flight."""
    if executor is None:
        for blocks in block_rows:
            yield compare_blocks(plan, blocks)
        return
    pending: deque = deque()
    for blocks in block_rows:
        pending.append(executor.submit(compare_blocks, plan, blocks))
        if len(pending) >= IN_FLIGHT:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def predict_pair(
    images: Sequence[str | Path],
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    engine: Engine = "auto",
    device: str = "cpu",
    console: Console | None = None,
    options: PredictOptions = PREDICTION,
) -> list[tuple[Path, Path]]:
    """BEFORE and AFTER images to class COGs and confidence COGs in ``out_dir`` (stems before, after)."""
    from landseg.predict.engine import predict_scene
    from landseg.predict.ensemble import load_ensemble

    options = replace(options, confidence=True)
    options.check()
    console = console or Console(stderr=True)
    ensemble = load_ensemble(checkpoints, engine=engine, device=device, tile=options.tile)
    results = []
    with counting_bar(console, "tiles") as bar:
        for stem, image in zip(("before", "after"), images, strict=False):
            task = bar.add_task(f"predicting {stem}", total=None)
            result = predict_scene(
                image,
                ensemble,
                out_dir,
                options,
                stem=stem,
                on_start=partial(set_total, bar, task),
                on_tiles=partial(bar.advance, task),
            )
            results.append((result.paths["classes"], result.paths["confidence"]))
    return results
