"""Several dates of one place made into one map over their clear pixels (``landseg predict --composite``).

Each date is predicted as any scene is (``engine.predict_scene``): its clouds and shadows masked
(``--cloud-mask``, ``auto`` by default), its class probabilities kept. Then, strip by strip of the
composite's grid (the first input's, or ``--grid``), every date's probabilities are warped onto the grid
(GDAL's warper, nearest neighbour, read window by window) and combined over the dates whose pixel is
clear:

- ``mode``: the class most dates chose; a tie goes to the tied class of highest mean probability. Its
  confidence is the share of the clear dates that chose it;
- ``mean-probability``: the class of highest mean probability; its confidence is that mean.

The composite's class map, confidence and count of clear observations are COGs beside the dates'
own outputs (in ``dates/``); pixels that no date saw clear are no-data. Areas, preview and polygons are
made as for a single scene.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rich.console import Console

from landseg.errors import ConfigError, DataError
from landseg.io.georef import warped_onto
from landseg.io.raster import open_raster
from landseg.io.sentinel2 import LEVEL_TAG
from landseg.maps.cog import NODATA_BYTE, PROBABILITY_STEPS, copy_to_cog, write_window
from landseg.predict.choices import Engine, Precision, TTAMode
from landseg.predict.options import PredictOptions

COMPOSITES = ("mode", "mean-probability")
STEM = "composite"
STRIP_ROWS = 256
MAX_COUNT = 254
"""Clear observations are counted in a byte; more than this many dates read as 254."""


@dataclass
class CompositeResult:
    paths: dict[str, Path]
    dates: list[Path]
    skipped: list[Path]
    """Dates left out because every pixel was under cloud or shadow."""
    clear_fraction: float
    """Share of the grid's pixels with at least one clear observation."""


def run_composite(
    inputs: Sequence[str | Path],
    models: Sequence[str | Path],
    out_dir: str | Path,
    method: str,
    options: PredictOptions | None = None,
    grid: str | Path | None = None,
    engine: Engine = "auto",
    tta: TTAMode | None = None,
    precision: Precision = "auto",
    device: str = "cpu",
    overwrite: bool = False,
    console: Console | None = None,
) -> CompositeResult:
    """Predict every date of ``inputs`` and combine them by ``method`` into ``out_dir/composite_*``."""
    from landseg.predict.engine import predict_scene
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.inputs import find_inputs

    if method not in COMPOSITES:
        raise ConfigError(f"unknown --composite {method!r}; choose one of {', '.join(COMPOSITES)}")
    options = options or PredictOptions()
    options.check()
    out_dir = Path(out_dir)
    console = console or Console(stderr=True)
    dates = find_inputs(inputs, out_dir)
    if len(dates) < 2:
        raise ConfigError(f"--composite combines several dates of one place; got {len(dates)} input")
    reference = Path(grid) if grid is not None else dates[0]
    check_dates(dates, reference)
    ensemble = load_ensemble(models, engine=engine, tta=tta, device=device, precision=precision, tile=options.tile)
    per_date = replace(options.class_map_only(), probabilities=True, cloud_output=options.cloud_output, min_area=0)
    kept, skipped = [], []
    for date in dates:
        try:
            result = predict_scene(date, ensemble, out_dir / "dates", per_date, skip_finished=not overwrite)
        except DataError as exc:
            if "every pixel is under cloud or shadow" not in exc.problem:
                raise
            console.print(f"[yellow]{date.name}: every pixel under cloud or shadow, left out of the composite[/]")
            skipped.append(date)
            continue
        clouds = "" if result.clouds is None else f" ({100 * result.clouds['masked_fraction']:.1f} % cloud or shadow)"
        console.print(f"{date.name}: predicted{clouds}")
        kept.append(result.paths["probabilities"])
    if not kept:
        raise DataError("no date has a clear pixel: nothing to composite; add other dates", dates[0])
    return combine(kept, dates, skipped, reference, method, ensemble, options, out_dir)


def check_dates(dates: Sequence[Path], reference: Path) -> None:
    """One-line errors for dates that cannot be combined: L1C and L2A products mixed, or a date that does
    not overlap the composite's grid."""
    levels: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_raster(reference) as grid:
            if grid.crs is None:
                raise DataError(
                    "has no coordinate reference system: a composite's grid must be georeferenced", reference
                )
            target_crs, target_bounds = grid.crs, grid.bounds
        for date in dates:
            with open_raster(date) as dataset:
                level = dataset.tags().get(LEVEL_TAG)
                if dataset.crs is None:
                    raise DataError("has no coordinate reference system: dates are matched by their coordinates", date)
                bounds = transform_bounds(dataset.crs, target_crs, *dataset.bounds)
            if level:
                levels.setdefault(level, date)
            if not _overlap(bounds, target_bounds):
                raise DataError(
                    f"does not overlap the composite's grid ({reference.name}): composite dates of one place, "
                    "or pass --grid covering them",
                    date,
                )
    if len(levels) > 1:
        (a, first), (b, second) = sorted(levels.items())
        raise ConfigError(
            f"the dates mix product levels: {first.name} is {a}, {second.name} is {b}; a model reads one level, so "
            f"composite dates of one level (download the {a} or the {b} product of every date)"
        )


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def combine(
    probabilities: Sequence[Path],
    dates: Sequence[Path],
    skipped: Sequence[Path],
    reference: Path,
    method: str,
    ensemble,
    options: PredictOptions,
    out_dir: Path,
) -> CompositeResult:
    """The dates' probability COGs combined on ``reference``'s grid into the composite's files."""
    from landseg.predict.engine import SceneOutputs, gdal_environment, output_paths, write_run_record

    started = time.perf_counter()
    layers = replace(options, probabilities=False, confidence=True, uncertainty=None, cloud_output=False)
    paths = output_paths(out_dir, STEM, layers)
    paths["count"] = out_dir / f"{STEM}_clear_count.tif"
    with gdal_environment(options), ExitStack() as stack:
        grid = stack.enter_context(open_raster(reference))
        outputs = SceneOutputs(paths, grid, ensemble, layers, stack)
        count_scratch = outputs.new_scratch("count", 1, descriptions=["clear observations"])
        sources = [
            stack.enter_context(warped_onto(stack.enter_context(rasterio.open(path)), grid, nodata=NODATA_BYTE))
            for path in probabilities
        ]
        seen = 0
        for top in range(0, grid.height, STRIP_ROWS):
            rows = (top, min(top + STRIP_ROWS, grid.height))
            window = Window(0, top, grid.width, rows[1] - top)
            stack_of_dates = np.stack([source.read(window=window) for source in sources])
            classes, confidence, count = combine_window(stack_of_dates, method)
            for scratch, layer in (
                (outputs.scratches["classes"], classes),
                (outputs.scratches["confidence"], confidence),
            ):
                write_window(scratch, layer, rows, (0, grid.width))
            write_window(count_scratch, np.minimum(count, MAX_COUNT).astype(np.uint8), rows, (0, grid.width))
            seen += int((count > 0).sum())
        count_scratch.close()
        stages: dict[str, float] = {"combine": time.perf_counter() - started}
        outputs.finish(reference, stages)
        copy_to_cog(Path(count_scratch.name), paths["count"], "MODE")
        height, width = grid.height, grid.width
    clear_fraction = seen / (height * width)
    write_run_record(
        paths,
        reference,
        ensemble,
        options,
        {
            "composite": {
                "method": method,
                "dates": [str(d) for d in dates],
                "left_out_cloudy": [str(d) for d in skipped],
                "grid": str(reference),
                "clear_fraction": round(clear_fraction, 6),
            },
            "height": height,
            "width": width,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    if seen == 0:
        raise DataError("no pixel of the grid is clear on any date: the composite is empty", reference)
    return CompositeResult(paths, list(dates), list(skipped), clear_fraction)


def combine_window(encoded: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dates, K, h, w)`` uint8 probabilities (255 no-data: cloud, shadow or outside the date) to the
    composite's class indices and uint8 confidence (255 no-data), and the count of clear dates."""
    clear = encoded[:, 0] != NODATA_BYTE
    count = clear.sum(axis=0)
    probabilities = np.where(clear[:, None], encoded.astype(np.float32) / PROBABILITY_STEPS, 0.0)
    mean = probabilities.sum(axis=0) / np.maximum(count, 1)
    if method == "mode":
        chosen = np.where(clear, encoded.argmax(axis=1), -1)
        votes = np.stack([(chosen == k).sum(axis=0) for k in range(encoded.shape[1])])
        # Mean probabilities lie in [0, 1]: added to the integer votes they only break ties.
        classes = (votes + mean * 0.5).argmax(axis=0)
        confidence = np.take_along_axis(votes, classes[None], axis=0)[0] / np.maximum(count, 1)
    else:
        classes = mean.argmax(axis=0)
        confidence = mean.max(axis=0)
    none = count == 0
    classes = np.where(none, NODATA_BYTE, classes).astype(np.uint8)
    confidence = np.where(none, NODATA_BYTE, np.rint(confidence * PROBABILITY_STEPS)).astype(np.uint8)
    return classes, confidence, count
