"""``landseg prepare tile|stats|all --dask/--workers``: many scenes prepared in parallel on a Dask cluster.

The stages of ``data/prepare/run.py``, with the per-scene work as Dask tasks and everything that
combines scenes done exactly:

- tile: each scene is aligned (``run.align_scene``), its class totals counted (for the top-k filter)
  and its chips cut and written (``tiling.cut_scene``) by a task; the class totals are summed, the
  per-scene filter reports concatenated in scene order, so ``chips.csv``, ``filters.json`` and the
  chips are those of the sequential run;
- the chip scaling statistics (``tiling.scale``) and ``stats``: band moments are computed per scene
  (or per batch of chips) on the workers and merged with ``merge_moments``: integer bands keep exact
  integer sums (the mean and std are then identical to the sequential ones, not averages of averages),
  float bands are merged with Chan's parallel formula. Percentile histograms are summed bin by bin.
- split: cheap, done by the client.

Files must be visible to every worker under the same paths (a shared file system).
"""

from __future__ import annotations

from functools import partial, reduce
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio
from distributed import Client, as_completed

from landseg.classes import ClassSchema, get_schema
from landseg.data.prepare.config import PrepareConfig, save_prepare_config
from landseg.data.prepare.filters import ChipFilter, FilterReport
from landseg.data.prepare.index import ChipRecord
from landseg.data.prepare.rasters import Scaling, Unreadable, Unusable
from landseg.data.prepare.run import (
    GDAL_CACHE_MB, RawScene, TileResult, _check_png, _claim_output, align_scene, chip_scaling, chip_writer,
    note_scene_without_chips, raw_scenes, split, stats_chips, write_stats, write_tile_outputs,
)
from landseg.data.prepare.stats import (
    BandMoments, BandStatistics, RasterMoments, band_histograms, histogram_bins, percentiles_from_histograms,
    raster_moments,
)
from landseg.data.prepare.tiling import ChipWriter, SceneSource, cut_scene, scene_class_totals
from landseg.errors import ConfigError, DataError

Progress = Callable[[str, int], None]
CHIPS_PER_TASK = 256
"""Chips whose band moments one task computes for ``stats``: enough to outweigh a task's overhead."""


# -- exact merging of band moments -----------------------------------------------------------------
def merge_moments(first: BandMoments, second: BandMoments) -> BandMoments:
    """The moments of both pixel sets together, as if one ``BandMoments`` had seen them all."""
    if first.bands != second.bands:
        raise ValueError(f"cannot merge moments of {first.bands} and {second.bands} bands")
    if second.count == 0:
        return first
    if first.count == 0:
        return second
    merged = BandMoments(first.bands)
    merged.count = first.count + second.count
    merged.minimum = np.minimum(first.minimum, second.minimum)
    merged.maximum = np.maximum(first.maximum, second.maximum)
    if first._sum and second._sum:  # integer data: exact integer sums
        merged._sum = [a + b for a, b in zip(first._sum, second._sum)]
        merged._sum_sq = [a + b for a, b in zip(first._sum_sq, second._sum_sq)]
        return merged
    merged.exact = False
    mean_a, m2_a = _float_moments(first)
    mean_b, m2_b = _float_moments(second)
    delta = mean_b - mean_a
    merged._mean = mean_a + delta * (second.count / merged.count)
    merged._m2 = m2_a + m2_b + delta**2 * (first.count * second.count / merged.count)
    return merged


def _float_moments(moments: BandMoments) -> tuple[np.ndarray, np.ndarray]:
    if moments._sum:
        return np.array(moments.mean), np.array(moments.std) ** 2 * moments.count
    return moments._mean, moments._m2  # type: ignore[return-value]


def _moments_task(paths: Sequence[Path], bands, nodata: float | None) -> RasterMoments:
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return raster_moments(paths, bands, nodata)


def _histograms_task(paths: Sequence[Path], bands, nodata: float | None, **layout) -> list[np.ndarray]:
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return band_histograms(paths, bands, nodata, **layout)


def band_statistics_on_cluster(client: Client, groups: Sequence[Sequence[Path]], bands=None,
                               nodata: float | None = None) -> BandStatistics:
    """``stats.band_statistics`` over every raster of ``groups``, one task per group, merged exactly."""
    parts = client.gather(client.map(_moments_task, [list(g) for g in groups], bands=bands, nodata=nodata,
                                     pure=False))
    total = reduce(merge_moments, (part.moments for part in parts))
    last = parts[-1]
    return RasterMoments(total, last.bands, last.names, last.dtype).statistics()


def band_percentiles_on_cluster(client: Client, paths: Sequence[Path], bands, nodata, low: float,
                                high: float) -> tuple[list[float], list[float]]:
    """``stats.band_percentiles``: moments for the value range, then one histogram task per scene, summed."""
    layout = histogram_bins(band_statistics_on_cluster(client, [[p] for p in paths], bands, nodata))
    parts = client.gather(client.map(_histograms_task, [[p] for p in paths], bands=bands, nodata=nodata,
                                     **layout._asdict(), pure=False))
    histograms = [sum(part[i] for part in parts) for i in range(len(layout.bins))]
    return percentiles_from_histograms(histograms, layout, low, high)


# -- tile ------------------------------------------------------------------------------------------
def _align_task(scene: RawScene, config: PrepareConfig, schema: ClassSchema) -> SceneSource | tuple[str, str]:
    """The aligned scene, or ``(path, problem)`` of a scene to quarantine."""
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            return align_scene(scene, config, schema)
    except (Unreadable, Unusable) as exc:
        return str(exc.path or scene.image), exc.problem


def _totals_task(scene: SceneSource, size: int, step: int, classes: int) -> np.ndarray:
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return scene_class_totals(scene, size, step, classes)


def _cut_task(scene: SceneSource, config: PrepareConfig, chip_filter: ChipFilter,
              writer: ChipWriter) -> tuple[list[ChipRecord], FilterReport]:
    report = FilterReport()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        records = cut_scene(scene, bands=config.input.bands, nodata=config.input.nodata, size=config.tiling.size,
                            stride=config.tiling.step, chip_filter=chip_filter, writer=writer, report=report)
    return records, report


def _in_order(client: Client, futures: list, on_done: Callable[[object], None] | None = None) -> list:
    """Results of ``futures`` in submission order, ``on_done(result)`` called as each finishes."""
    position = {future.key: i for i, future in enumerate(futures)}
    results: list = [None] * len(futures)
    for future, result in as_completed(futures, with_results=True):
        results[position[future.key]] = result
        if on_done is not None:
            on_done(result)
    return results


def tile_on_cluster(config: PrepareConfig, client: Client, overwrite: bool = False,
                    progress: Progress | None = None) -> TileResult:
    """``run.tile`` with every scene's alignment, class totals and chips as Dask tasks."""
    schema = get_schema(config.schema_)
    out = config.out
    _claim_output(out, overwrite)
    save_prepare_config(config, out)
    report = FilterReport()
    scenes: list[SceneSource] = []
    raws = raw_scenes(config)
    aligned = _in_order(client, client.map(_align_task, raws, config=config, schema=schema, pure=False),
                        (lambda _: progress("aligned", 1)) if progress else None)
    for scene, outcome in zip(raws, aligned):
        if isinstance(outcome, SceneSource):
            scenes.append(outcome)
        else:
            report.quarantine(*outcome)
    if not scenes:
        raise DataError("no scene could be read; see the quarantine list", out / "filters.json")
    tiling = config.tiling
    chip_filter = ChipFilter.from_config(config.filters, schema)
    if chip_filter.needs_class_totals:
        parts = client.gather(client.map(_totals_task, scenes, size=tiling.size, step=tiling.step,
                                         classes=schema.num_classes, pure=False))
        chip_filter = chip_filter.with_class_totals(sum(parts, np.zeros(schema.num_classes, dtype=np.int64)))
        report.frequent_classes = [schema.names[i] for i in chip_filter.frequent_classes]
    _check_png(config, scenes[0])
    writer = chip_writer(config, schema, chip_scaling_on_cluster(client, config, scenes))
    cut = _in_order(client, client.map(_cut_task, scenes, config=config, chip_filter=chip_filter, writer=writer,
                                       pure=False),
                    (lambda result: progress("chips", len(result[0]))) if progress else None)
    records: list[ChipRecord] = []
    for scene, (scene_records, scene_report) in zip(scenes, cut):
        _merge_report(report, scene_report)
        note_scene_without_chips(report, scene, scene_records)
        records += scene_records
    return write_tile_outputs(config, schema, records, report)


def _merge_report(total: FilterReport, part: FilterReport) -> None:
    """Append one scene's report, as if the same ``FilterReport`` had gone on to that scene."""
    total.candidates += part.candidates
    total.kept += part.kept
    for rule, chips in part.dropped.items():
        total.dropped[rule].extend(chips)
    total.quarantined.extend(part.quarantined)
    total.scenes_without_chips.extend(part.scenes_without_chips)


def chip_scaling_on_cluster(client: Client, config: PrepareConfig, scenes: list[SceneSource]) -> Scaling | None:
    """``run.chip_scaling`` with its statistics computed one task per scene."""
    return chip_scaling(
        config, scenes,
        statistics=lambda paths, bands, nodata: band_statistics_on_cluster(client, [[p] for p in paths], bands, nodata),
        percentiles=partial(band_percentiles_on_cluster, client),
    )


# -- stats -----------------------------------------------------------------------------------------
def stats_on_cluster(config: PrepareConfig, client: Client, chips_per_task: int = CHIPS_PER_TASK) -> dict:
    """``run.stats`` with the band moments of the chips computed in batches on the workers, merged exactly."""
    chips = stats_chips(config)
    images = chips.images
    groups = [images[i : i + chips_per_task] for i in range(0, len(images), chips_per_task)]
    return write_stats(config, chips, band_statistics_on_cluster(client, groups))


def prepare_all_on_cluster(config: PrepareConfig, client: Client, overwrite: bool = False,
                           progress: Progress | None = None, chips_per_task: int = CHIPS_PER_TASK) -> dict:
    """``run.prepare_all`` on the cluster: tile and stats distributed, split on the client."""
    tiled = tile_on_cluster(config, client, overwrite=overwrite, progress=progress)
    splits = split(config)
    summary = stats_on_cluster(config, client, chips_per_task)
    return {"tile": tiled, "split": splits, "stats": summary}


def prepare_stage_on_cluster(stage: str, config: PrepareConfig, address: str | None = None,
                             workers: int | None = None, overwrite: bool = False,
                             progress: Progress | None = None):
    """``landseg prepare tile|stats|all --dask ADDRESS / --workers N``: the stage's result, as the
    sequential command returns it (``TileResult``, the stats payload, or ``prepare_all``'s summary)."""
    from landseg.distributed.cluster import dask_client

    if stage not in ("tile", "stats", "all"):
        raise ConfigError(f"no distributed preparation stage {stage!r}; choose tile, stats or all")
    with dask_client(address, workers) as client:
        if stage == "tile":
            return tile_on_cluster(config, client, overwrite=overwrite, progress=progress)
        if stage == "stats":
            return stats_on_cluster(config, client)
        return prepare_all_on_cluster(config, client, overwrite=overwrite, progress=progress)
