"""The worker side of ``landseg predict --dask/--workers``: scenes and their column blocks as Dask tasks.

Each scene goes through three kinds of task (submitted by ``distributed.predict``):

1. ``plan_scene``: open the raster, check its bands against the models, lay out the tile grid and its
   column blocks exactly as the single-process engine does (``predict/blocks.py``);
2. ``predict_block``, one per column block: stream the block's blended probabilities
   (``predict/streaming.py``) and write its class indices (and probability / confidence bands) to a
   compressed ``block-NNNN.tif`` in the scene's hidden work folder ``{out}/.{stem}.blocks-{digest}``;
3. ``assemble_scene``: copy the blocks into the engine's scratch rasters and finish them exactly as
   ``predict_scene`` does (minimum mapping unit, COG, areas, preview, polygons, run record).

Every class index comes from the same tiles, batches and blending as in one process, so the COG is
the same. A block file is written under a temporary name and renamed when complete; a block whose file
exists is done, so a task rerun after its worker died (Dask reschedules it) or a whole job rerun after
a crash redoes only the missing blocks, and no block is ever half-written or assembled twice. Task keys
are derived from the scene, the models and the options, so the same block never runs twice at once.
The models are loaded once per worker by ``cluster.EnsemblePlugin``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from landseg.distributed.cluster import EnsembleSource, worker_ensemble
from landseg.errors import DataError
from landseg.io.georef import open_without_grid_warning
from landseg.io.raster import open_raster, read_error_message
from landseg.io.safety import read_json_limited
from landseg.io.write import atomic_output
from landseg.maps.cog import remove_stale_temporaries
from landseg.predict.blocks import ColumnBlock, TileGrid
from landseg.predict.core import lay_out, stream
from landseg.predict.engine import (
    SceneOutputs,
    SceneResult,
    check_free_disk,
    chunk_layers,
    gdal_environment,
    is_finished,
    output_bytes,
    output_paths,
    write_run_record,
)
from landseg.predict.models import model_file
from landseg.predict.options import PredictOptions

PROGRESS_TOPIC = "landseg-predict-tiles"
PROGRESS_INTERVAL_S = 0.5
"""A block reports its tiles to the client at most this often."""
COPY_ROWS = 1024
"""Rows of a block copied at a time during assembly: memory stays bounded by the block's width."""


@dataclass(frozen=True)
class ScenePlan:
    source: Path
    stem: str
    work: Path
    """Hidden folder of the block files, removed once the scene is assembled."""
    grid: TileGrid
    blocks: tuple[ColumnBlock, ...]
    digest: str

    def block_path(self, index: int) -> Path:
        return self.work / f"block-{index:04d}.tif"

    def block_tiles(self, index: int) -> int:
        return len(self.grid.rows) * len(self.blocks[index].tile_cols)

    def block_key(self, index: int) -> str:
        return f"landseg-block-{self.stem}-{self.digest}-{index}"


@dataclass(frozen=True)
class BlockResult:
    index: int
    path: Path
    tiles: int
    seconds: float
    reused: bool = False
    """Found complete from an earlier attempt or run: nothing was predicted."""


def work_digest(source: Path, out_dir: Path, source_models: EnsembleSource, options: PredictOptions) -> str:
    """Identifies the work: the input file as it is now, where it goes, the models as they are now, and
    every option. Task keys carry it, so equal keys always mean equal work."""

    def fingerprint(path: str | Path) -> list:
        stat = Path(path).stat()
        return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]

    recipe = {
        "source": fingerprint(source),
        "out": str(Path(out_dir).resolve()),
        "models": [[c, *fingerprint(model_file(c))] for c in source_models.checkpoints],
        "loading": {**asdict(source_models), "checkpoints": None, "threads": None},
        "options": asdict(options),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- tasks (run on workers) ------------------------------------------------------------------------
def plan_scene(
    source: Path, work: Path, stem: str, digest: str, models: EnsembleSource, options: PredictOptions
) -> ScenePlan:
    """The scene's grid and column blocks; refuses a raster without the models' bands before any block runs."""
    ensemble = worker_ensemble(models)
    with gdal_environment(options), open_raster(source) as dataset:
        layout = lay_out(dataset, ensemble, options, source)
    # Before any block is predicted; assembly checks again once the block files take their room.
    check_free_disk(work.parent, output_bytes(layout.grid.height, layout.grid.width, ensemble.num_classes, options))
    return ScenePlan(source, stem, work, layout.grid, tuple(layout.blocks(options.block_width)), digest)


def block_band_count(num_classes: int, options: PredictOptions) -> int:
    """Bands of a block file: the scene's raster layers stacked (``PredictOptions.raster_layers``)."""
    return sum(options.raster_layers(num_classes).values())


def predict_block(plan: ScenePlan, index: int, models: EnsembleSource, options: PredictOptions) -> BlockResult:
    """Predict column block ``index`` of the scene into its block file, unless that file is complete."""
    path = plan.block_path(index)
    if path.exists():
        return BlockResult(index, path, plan.block_tiles(index), 0.0, reused=True)
    started = time.perf_counter()
    ensemble = worker_ensemble(models)
    block = plan.blocks[index]
    plan.work.mkdir(parents=True, exist_ok=True)
    report = _TileReporter(plan.block_key(index))
    with gdal_environment(options), open_raster(plan.source) as dataset, atomic_output(path) as temporary:
        layout = lay_out(dataset, ensemble, options, plan.source)
        count = block_band_count(ensemble.num_classes, options)
        with open_block_file(temporary, layout.grid.height, block.stop - block.start, count) as written:
            try:
                for chunk in stream(dataset, ensemble, layout, options, blocks=[block], on_tiles=report):
                    window = Window(
                        chunk.cols[0] - block.start,
                        chunk.rows[0],
                        chunk.cols[1] - chunk.cols[0],
                        chunk.rows[1] - chunk.rows[0],
                    )
                    written.write(np.concatenate(list(chunk_layers(chunk, options).values())), window=window)
            except RasterioError as exc:
                raise DataError(
                    f"cannot read pixels, file is truncated or corrupt ({read_error_message(exc)})", plan.source
                ) from None
    report.flush()
    return BlockResult(index, path, plan.block_tiles(index), time.perf_counter() - started)


def open_block_file(path: Path, height: int, width: int, count: int) -> rasterio.io.DatasetWriter:
    """A block's uint8 bands as a compressed GeoTIFF of one-row strips: the block's chunks arrive top to
    bottom in whole rows, so every strip is compressed and written exactly once."""
    return open_without_grid_warning(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype="uint8",
        tiled=False,
        blockysize=1,
        compress="deflate",
        zlevel=1,
        interleave="pixel",
        BIGTIFF="IF_SAFER",
    )


class _TileReporter:
    """Tells the client, through Dask's event log, how many tiles of a block are done; throttled."""

    def __init__(self, block_key: str):
        from distributed import get_worker

        self.worker = get_worker()
        self.block_key = block_key
        self.pending = 0
        self.sent_at = time.monotonic()

    def __call__(self, tiles: int) -> None:
        self.pending += tiles
        if time.monotonic() - self.sent_at >= PROGRESS_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.worker.log_event(PROGRESS_TOPIC, {"block": self.block_key, "tiles": self.pending})
        self.pending, self.sent_at = 0, time.monotonic()


def assemble_scene(
    plan: ScenePlan, out_dir: Path, models: EnsembleSource, options: PredictOptions, blocks: Sequence[BlockResult]
) -> SceneResult:
    """The scene's outputs from its block files, finished as ``engine.predict_scene`` finishes them."""
    paths = output_paths(out_dir, plan.stem, options)
    if is_finished(paths) and not all(b.path.exists() for b in blocks):
        # An earlier attempt finished the scene and died while deleting its block files.
        shutil.rmtree(plan.work, ignore_errors=True)
        record = read_json_limited(paths["record"])
        return SceneResult(
            plan.source,
            paths,
            record["height"],
            record["width"],
            record["tiles_predicted"],
            record["seconds"],
            stages=record["stages"],
        )
    started = time.perf_counter()
    ensemble = worker_ensemble(models)
    stages = {"predict": sum(b.seconds for b in blocks)}
    with gdal_environment(options), open_raster(plan.source) as dataset, ExitStack() as cleanup:
        outputs = SceneOutputs(paths, dataset, ensemble, options, cleanup)
        mark = time.perf_counter()
        _copy_blocks(plan, blocks, outputs.scratches, options.raster_layers(ensemble.schema.num_classes))
        stages["assemble"] = time.perf_counter() - mark
        clouds = outputs.mask_clouds(dataset, ensemble, plan.source, stages)
        outputs.finish(plan.source, stages)
    tiles = sum(b.tiles for b in blocks)
    seconds = stages["predict"] + time.perf_counter() - started
    write_run_record(
        paths,
        plan.source,
        ensemble,
        options,
        {
            "height": plan.grid.height,
            "width": plan.grid.width,
            "tiles_predicted": tiles,
            "tiles_in_grid": plan.grid.tile_count,
            "seconds": round(seconds, 3),
            "stages": {k: round(v, 3) for k, v in stages.items()},
            "distributed": {"blocks": len(plan.blocks), "reused_blocks": sum(b.reused for b in blocks)},
            "georeferencing": outputs.georef.describe(),
            "cloud_mask": clouds,
        },
    )
    shutil.rmtree(plan.work, ignore_errors=True)
    remove_stale_temporaries(out_dir, plan.stem)
    return SceneResult(
        plan.source, paths, plan.grid.height, plan.grid.width, tiles, seconds, stages=stages, clouds=clouds
    )


def _copy_blocks(plan: ScenePlan, blocks: Sequence[BlockResult], scratches: dict, layers: dict[str, int]) -> None:
    if sorted(b.index for b in blocks) != list(range(len(plan.blocks))):
        raise RuntimeError(f"{plan.stem}: expected blocks 0..{len(plan.blocks) - 1}, got {[b.index for b in blocks]}")
    layout, after = {}, 0
    for kind, count in layers.items():
        layout[kind], after = slice(after, after + count), after + count
    for result in blocks:
        block = plan.blocks[result.index]
        with open_without_grid_warning(result.path) as source:
            for top in range(0, source.height, COPY_ROWS):
                height = min(COPY_ROWS, source.height - top)
                data = source.read(window=Window(0, top, source.width, height))
                target = Window(block.start, top, block.stop - block.start, height)
                for kind, bands in layout.items():
                    scratches[kind].write(data[bands], window=target)
