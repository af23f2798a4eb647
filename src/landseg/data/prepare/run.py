"""``landseg prepare all``: raw scenes to chips, chip index, filter report, split files and statistics.

Stages, each rerunnable on its own from the output folder:

1. align: a label not on its image's grid is resampled onto it (or the image onto the label's grid)
   into ``aligned/``; a label already on the grid is decoded on the fly;
2. tile: chips into ``images/`` and ``masks/`` (masks hold class indices, 255 = ignore; their schema
   is ``schema.yaml``), every candidate in ``chips.csv``, ``filters.json``; with
   ``filters.max_cloud_fraction.source: model``, the cloud model's masks into ``cloud_masks/`` first;
3. split: ``splits/<name>.txt`` and ``splits/splits.json``;
4. stats: ``stats.json`` (band mean/std in the form of ``data.normalization``, class frequencies before
   and after filtering and oversampling) and ``class_frequencies.png``.

``tile``, ``stats`` and ``prepare_all`` take ``executor`` (see ``execution.py``): without one, every
task runs here, one after another; with one, each scene's alignment, class totals and chips, and the
band moments of each scene or batch of chips, are its tasks. Whatever combines scenes (filter reports,
class totals, band moments) is done here in scene order, so both give the same files.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import yaml

from landseg.classes import ClassSchema, get_schema
from landseg.data.catalog import find_pairs
from landseg.data.prepare.align import Grid, LabelDecoder, align_labels, index_decoder, resample_image
from landseg.data.prepare.config import PrepareConfig, save_prepare_config
from landseg.data.prepare.execution import (
    GDAL_CACHE_MB,  # noqa: F401 - where benchmarks/ import it from
    batches,
    bounded_gdal,
    map_in_order,
)
from landseg.data.prepare.filters import ChipFilter, FilterReport, missing_cloud_masks
from landseg.data.prepare.index import ChipRecord, find_index, index_path, read_index, write_index
from landseg.data.prepare.rasters import Scaling, Unreadable, Unusable, open_readable, resolve_bands
from landseg.data.prepare.split import SplitResult, read_split_lists, split_chips, write_splits
from landseg.data.prepare.stats import (
    BandStatistics,
    band_percentiles,
    class_frequencies,
    frequencies_payload,
    merged_statistics,
    plot_class_frequencies,
    write_stats_json,
)
from landseg.data.prepare.tiling import (
    ChipWriter,
    SceneSource,
    chip_mask_schema,
    chip_windows,
    cut_scene,
    scene_class_totals,
)
from landseg.data.vector_labels import is_vector_file, vector_labels_for, write_label_raster
from landseg.errors import ConfigError, DataError
from landseg.io.raster import open_raster
from landseg.io.write import atomic_output

CHIPS_PER_TASK = 256
"""Chips whose band moments one executor task computes for ``stats``: enough to outweigh a task's overhead."""
CHIP_SCHEMA_NAME = "schema.yaml"
"""Schema of the chip masks (class indices), for the training config's ``data.schema``."""
CLOUD_MASKS_FOLDER = "cloud_masks"
"""Where ``filters.max_cloud_fraction.source: model`` has the cloud model write each image's mask."""
OWNED_OUTPUTS = (
    "aligned",
    CLOUD_MASKS_FOLDER,
    "images",
    "masks",
    "splits",
    "chips.csv",
    "chips.parquet",
    "filters.json",
    "stats.json",
    "class_frequencies.png",
    CHIP_SCHEMA_NAME,
)
"""What a run writes in its output folder (besides ``prepare.yaml``), and what ``--overwrite`` replaces."""
Progress = Callable[[str, int], None]
CloudMasker = Callable[[Sequence[Path], Path], dict[Path, Path]]
"""Writes each image's cloud mask into a folder and returns image -> mask:
``landseg.predict.clouds.write_cloud_masks``, handed in by the layers above (``data`` may not import
``predict``, and a preparation without the cloud rule must not load PyTorch)."""


@dataclass(frozen=True)
class RawScene:
    name: str
    image: Path
    label: Path
    cloud_mask: Path | None = None


@dataclass
class TileResult:
    records: list[ChipRecord]
    report: FilterReport
    index: Path
    report_path: Path


def raw_scenes(config: PrepareConfig) -> list[RawScene]:
    scenes = [RawScene(s.name or s.image.stem, s.image, s.label, s.cloud_mask) for s in config.input.scenes]
    templates = config.input
    if templates.root is not None and templates.images is not None and templates.labels is not None:
        pairs = find_pairs(templates.root, templates.images, templates.labels)
        clouds = templates.cloud_masks
        # With a labels template, every pair found has its label.
        scenes += [
            RawScene(p.image.stem, p.image, p.mask, _templated_cloud_mask(templates.root, clouds, p.fields))
            for p in pairs
            if p.mask is not None
        ]
    names = [s.name for s in scenes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        # Their chips would overwrite each other: name every colliding image, not just the name.
        images = ", ".join(str(s.image) for s in scenes if s.name == repeated[0])
        raise ConfigError(f"scene names repeat: {repeated} ({repeated[0]!r}: {images}); give input.scenes[].name")
    return scenes


def _templated_cloud_mask(root: Path, template: str | None, fields: dict[str, str]) -> Path | None:
    """The ``input.cloud_masks`` path of an image's captured fields; a missing file is quarantined when read."""
    if template is None:
        return None
    try:
        return root / template.format(**fields)
    except KeyError as exc:
        raise ConfigError(
            f"input.cloud_masks template {template!r} uses {exc} which the image template does not capture"
        ) from None


def check_cloud_masks(scenes: list[RawScene], config: PrepareConfig, cloud_masker: CloudMasker | None) -> None:
    """Before anything is written: ``filters.max_cloud_fraction`` needs every scene's mask, or the model."""
    rule = config.filters.max_cloud_fraction
    if rule is None:
        return
    if rule.source == "model" and cloud_masker is None:
        raise ConfigError(
            "filters.max_cloud_fraction.source: model needs the cloud model, which `landseg prepare` supplies; "
            "from Python pass cloud_masker=landseg.predict.clouds.write_cloud_masks"
        )
    missing = [s.name for s in scenes if s.cloud_mask is None]
    if rule.source == "mask" and missing:
        raise missing_cloud_masks(missing)


def with_model_cloud_masks(
    scenes: list[RawScene], config: PrepareConfig, cloud_masker: CloudMasker | None
) -> list[RawScene]:
    """With ``source: model``, the scenes with the masks the cloud model wrote into ``out/cloud_masks``.
    Images that cannot be opened are left to the alignment, which quarantines them, so that a corrupt
    file does not stop the run here either."""
    rule = config.filters.max_cloud_fraction
    if rule is None or rule.source != "model" or cloud_masker is None:
        return scenes
    masks = cloud_masker([s.image for s in scenes if _opens(s.image)], config.out / CLOUD_MASKS_FOLDER)
    return [replace(s, cloud_mask=masks.get(s.image)) for s in scenes]


def _opens(path: Path) -> bool:
    try:
        open_readable(path).close()
    except Unreadable:
        return False
    return True


def align_scene(scene: RawScene, config: PrepareConfig, schema: ClassSchema) -> SceneSource:
    """The scene with image and label on one grid (resampled into ``out/aligned`` only when needed), and
    its cloud mask, which is read onto the image's grid as chips are cut."""
    return replace(_on_one_grid(scene, config, schema), cloud_mask=scene.cloud_mask)


def _on_one_grid(scene: RawScene, config: PrepareConfig, schema: ClassSchema) -> SceneSource:
    if is_vector_file(scene.label):
        return rasterize_scene(scene, config, schema)
    with open_readable(scene.image) as image, open_readable(scene.label) as label:
        same_grid = Grid.of(image).matches(Grid.of(label))
        label_dtype, label_nodata = label.dtypes[0], label.nodata
    options = config.align
    nodata = config.input.label_nodata if config.input.label_nodata is not None else label_nodata
    if same_grid:
        decoder = LabelDecoder(schema, label_dtype, nodata, config.input.unknown_labels, str(scene.label))
        return SceneSource(scene.name, scene.image, scene.label, decoder, scene.image, scene.label)
    folder = config.out / "aligned"
    if options.resample == "label":
        aligned = align_labels(
            scene.image,
            scene.label,
            folder / f"{scene.name}_label.tif",
            schema,
            method=options.method,
            label_nodata=config.input.label_nodata,
            unknown=config.input.unknown_labels,
            grid=options.grid,
            block=options.block,
            max_source_pixels=options.max_source_pixels,
            threads=options.threads,
        )
        return SceneSource(scene.name, scene.image, aligned.path, index_decoder(schema), scene.image, scene.label)
    resampled = resample_image(
        scene.image,
        scene.label,
        folder / f"{scene.name}_image.tif",
        method=options.image_method,
        nodata=config.input.nodata,
        grid=options.grid,
        block=options.block,
        max_source_pixels=options.max_source_pixels,
        threads=options.threads,
    )
    decoder = LabelDecoder(schema, label_dtype, nodata, config.input.unknown_labels, str(scene.label))
    return SceneSource(scene.name, resampled.path, scene.label, decoder, scene.image, scene.label)


def rasterize_scene(scene: RawScene, config: PrepareConfig, schema: ClassSchema) -> SceneSource:
    """A scene labelled by a vector file: its features burnt onto the image grid into ``out/aligned``."""
    rules = config.input.vector
    if rules is None:
        raise ConfigError(
            f"{scene.label.name} is a vector file; say which attribute holds the class in input.vector.attribute"
        )
    vectors = vector_labels_for([scene.label], rules, schema, config.input.unknown_labels)
    target = config.out / "aligned" / f"{scene.name}_label.tif"
    try:
        write_label_raster(scene.image, vectors, [scene.label], target, block=config.align.block)
    except DataError as exc:
        if isinstance(exc, Unreadable | Unusable):
            raise
        raise Unusable(exc.problem, exc.path) from None
    return SceneSource(scene.name, scene.image, target, index_decoder(schema), scene.image, scene.label)


def chip_scaling(config: PrepareConfig, scenes: list[SceneSource], executor: Executor | None = None) -> Scaling | None:
    """The chip value scaling of ``tiling.scale``, the scenes measured one task per scene on ``executor``."""
    scale = config.tiling.scale
    if scale.method == "none":
        return None
    paths = [s.image for s in scenes]
    with open_raster(paths[0]) as src:
        bands = len(resolve_bands(src, config.input.bands))
    if scale.method == "fixed":
        if scale.min is None or scale.max is None:
            raise ConfigError("tiling.scale.method fixed needs min and max")
        return Scaling.fixed(scale.min, scale.max, bands)
    if scale.method == "percentile":
        low, high = band_percentiles(
            paths, config.input.bands, config.input.nodata, scale.low, scale.high, executor=executor
        )
        return Scaling.fixed(low, high, bands)
    overall = merged_statistics(batches(paths, 1, executor), config.input.bands, config.input.nodata, executor=executor)
    return Scaling.mean_std(overall.mean, overall.std)


def tile(
    config: PrepareConfig,
    overwrite: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
    cloud_masker: CloudMasker | None = None,
) -> TileResult:
    """Align where needed, cut, filter and write chips; write the chip index and the filter report.
    ``cloud_masker`` (run here, before the scenes' tasks) writes the masks of ``max_cloud_fraction.source: model``."""
    schema = get_schema(config.schema_)
    raws = raw_scenes(config)
    check_cloud_masks(raws, config, cloud_masker)
    _claim_output(config.out, overwrite)
    save_prepare_config(config, config.out)
    report = FilterReport()
    with bounded_gdal():
        raws = with_model_cloud_masks(raws, config, cloud_masker)
        scenes = _align_scenes(config, raws, schema, report, executor, progress)
        chip_filter = _chip_filter(config, schema, scenes, report, executor)
        _check_png(config, scenes[0])
        writer = chip_writer(config, schema, chip_scaling(config, scenes, executor))
        records = _cut_scenes(config, scenes, chip_filter, writer, report, executor, progress)
    return write_tile_outputs(config, schema, records, report)


def _align_scenes(
    config: PrepareConfig,
    raws: list[RawScene],
    schema: ClassSchema,
    report: FilterReport,
    executor: Executor | None,
    progress: Progress | None,
) -> list[SceneSource]:
    """The scenes on one grid each; those that cannot be read or paired are quarantined."""
    aligned = map_in_order(
        executor,
        partial(_align_task, config=config, schema=schema),
        raws,
        (lambda _: progress("aligned", 1)) if progress else None,
    )
    scenes = []
    for outcome in aligned:
        if isinstance(outcome, SceneSource):
            scenes.append(outcome)
        else:
            report.quarantine(*outcome)
    if not scenes:
        raise DataError("no scene could be read; see the quarantine list", config.out / "filters.json")
    return scenes


def _align_task(scene: RawScene, config: PrepareConfig, schema: ClassSchema) -> SceneSource | tuple[str, str]:
    """The aligned scene, or ``(path, problem)`` to quarantine: plain values, as they may cross processes."""
    try:
        with bounded_gdal():
            return align_scene(scene, config, schema)
    except (Unreadable, Unusable) as exc:
        return str(exc.path or scene.image), exc.problem


def _chip_filter(
    config: PrepareConfig,
    schema: ClassSchema,
    scenes: list[SceneSource],
    report: FilterReport,
    executor: Executor | None,
) -> ChipFilter:
    """The filters of ``config``; ``top_k`` ranks the classes by pixel totals summed over every scene."""
    chip_filter = ChipFilter.from_config(config.filters, schema)
    if not chip_filter.needs_class_totals:
        return chip_filter
    count = partial(_totals_task, size=config.tiling.size, step=config.tiling.step, classes=schema.num_classes)
    totals = sum(map_in_order(executor, count, scenes), np.zeros(schema.num_classes, dtype=np.int64))
    chip_filter = chip_filter.with_class_totals(totals)
    report.frequent_classes = [schema.names[i] for i in chip_filter.frequent_classes]
    return chip_filter


def _totals_task(scene: SceneSource, size: int, step: int, classes: int) -> np.ndarray:
    with bounded_gdal():
        return scene_class_totals(scene, size, step, classes)


def _cut_scenes(
    config: PrepareConfig,
    scenes: list[SceneSource],
    chip_filter: ChipFilter,
    writer: ChipWriter,
    report: FilterReport,
    executor: Executor | None,
    progress: Progress | None,
) -> list[ChipRecord]:
    """Every scene's chip records, its report appended to ``report`` in scene order."""
    on_chip, on_scene = _chip_progress(progress, executor)
    cut = partial(_cut_task, config=config, chip_filter=chip_filter, writer=writer, on_chip=on_chip)
    records: list[ChipRecord] = []
    for scene, (scene_records, scene_report) in zip(
        scenes, map_in_order(executor, cut, scenes, on_scene), strict=False
    ):
        report.extend(scene_report)
        note_scene_without_chips(report, scene, scene_records)
        records += scene_records
    return records


def _cut_task(
    scene: SceneSource,
    config: PrepareConfig,
    chip_filter: ChipFilter,
    writer: ChipWriter,
    on_chip: Callable[[], None] | None = None,
) -> tuple[list[ChipRecord], FilterReport]:
    report = FilterReport()
    with bounded_gdal():
        records = cut_scene(
            scene,
            bands=config.input.bands,
            nodata=config.input.nodata,
            size=config.tiling.size,
            stride=config.tiling.step,
            chip_filter=chip_filter,
            writer=writer,
            report=report,
            on_chip=on_chip,
        )
    return records, report


def _chip_progress(progress: Progress | None, executor: Executor | None):
    """``(per chip, per scene)`` progress callbacks: an executor's task may run in another process, which
    cannot call back, so its chips are counted when its scene returns."""
    if progress is None:
        return None, None
    if executor is None:
        return (lambda: progress("chips", 1)), None
    return None, (lambda result: progress("chips", len(result[0])))


def chip_writer(config: PrepareConfig, schema: ClassSchema, scaling: Scaling | None) -> ChipWriter:
    """The writer of ``tiling``'s chips, with its ``images/`` and ``masks/`` folders made."""
    tiling = config.tiling
    for folder in ("images", "masks"):
        (config.out / folder).mkdir(exist_ok=True)
    return ChipWriter(config.out, schema, tiling.format, tiling.dtype, scaling, tiling.compress)


def note_scene_without_chips(report: FilterReport, scene: SceneSource, scene_records: list[ChipRecord]) -> None:
    """Reported, never fatal: Raster Vision crashes on a scene that loses every chip to a filter."""
    if scene_records and not any(r.status == "kept" for r in scene_records):
        reasons = Counter(r.reason if r.status == "dropped" else r.status for r in scene_records)
        report.scene_without_chips(scene.name, scene.source_image, dict(reasons))


def write_tile_outputs(
    config: PrepareConfig, schema: ClassSchema, records: list[ChipRecord], report: FilterReport
) -> TileResult:
    """The chip index, the chip masks' ``schema.yaml`` and ``filters.json`` of a finished cut."""
    out = config.out
    index = write_index(records, index_path(out, config.tiling.index), schema.names)
    with atomic_output(out / CHIP_SCHEMA_NAME) as temporary:
        temporary.write_text(yaml.safe_dump(chip_mask_schema(schema).to_dict(), sort_keys=False))
    return TileResult(records, report, index, report.write(out / "filters.json"))


def count_chips(config: PrepareConfig) -> int:
    """How many candidate chips ``tile`` will visit (for progress bars); unreadable scenes count 0."""
    total = 0
    for scene in raw_scenes(config):
        try:
            with open_raster(scene.image) as src:
                width, height = src.width, src.height
            if config.align.resample == "image":
                with open_raster(scene.label) as src:
                    width, height = src.width, src.height
        except DataError:
            continue
        total += len(chip_windows(width, height, config.tiling.size, config.tiling.step))
    return total


def split(config: PrepareConfig) -> SplitResult:
    """Split the kept chips of the output folder's index; write ``splits/``."""
    schema = get_schema(config.schema_)
    records, _ = read_index(find_index(config.out))
    if not any(r.kept for r in records):
        raise DataError(
            "no chips were kept, nothing to split; the filter report says why, loosen the filters",
            config.out / "filters.json",
        )
    result = split_chips(records, config.split, schema)
    write_splits(result, records, config.out)
    return result


@dataclass(frozen=True)
class StatsChips:
    """The chips ``stats`` measures (the images of one split, or every kept chip) and the index around them."""

    schema: ClassSchema
    records: list[ChipRecord]
    lists: dict[str, list[str]]
    split: str
    images: list[Path]


def stats_chips(config: PrepareConfig) -> StatsChips:
    """The chip index and split lists of the output folder, and the images of ``stats.split``."""
    schema = get_schema(config.schema_)
    out = config.out
    records, names = read_index(find_index(out))
    if names != schema.names:
        raise ConfigError(f"chip index classes {names} differ from schema {schema.names}", out)
    lists = read_split_lists(out, records) if (out / "splits").is_dir() else {}
    by_chip = {r.chip: r for r in records}
    split_name = config.stats.split
    if lists and split_name not in lists:
        raise ConfigError(f"stats.split {split_name!r} has no split file; splits: {sorted(lists)}", out / "splits")
    chosen = list(dict.fromkeys(lists[split_name])) if lists else [r.chip for r in records if r.kept]
    if not chosen:
        raise DataError(f"split {split_name!r} holds no chips", out)
    return StatsChips(
        schema, records, lists, split_name if lists else "all kept chips", [out / by_chip[c].image for c in chosen]
    )


def write_stats(config: PrepareConfig, chips: StatsChips, bands: BandStatistics) -> dict:
    """``stats.json`` (and the class frequency plot) from the chips' band statistics and the chip index."""
    schema, records = chips.schema, chips.records
    stages = class_frequencies({r.chip: r.counts for r in records}, {r.chip: r.status for r in records}, chips.lists)
    payload = {
        "chips": {"split": chips.split, "count": len(chips.images)},
        "bands": bands.to_dict(),
        "normalization": bands.normalization(),
        "classes": frequencies_payload(stages, schema),
    }
    write_stats_json(config.out / "stats.json", payload)
    if config.stats.plot:
        plot_class_frequencies(
            stages, schema, config.out / "class_frequencies.png", f"{config.name}: class shares by stage"
        )
    return payload


def stats(config: PrepareConfig, executor: Executor | None = None, chips_per_task: int = CHIPS_PER_TASK) -> dict:
    """Band statistics of one split's chips and class frequencies at every stage; ``stats.json`` + plot.
    On ``executor``, one task per ``chips_per_task`` chips, their band moments merged exactly."""
    chips = stats_chips(config)
    groups = batches(chips.images, chips_per_task, executor)
    return write_stats(config, chips, merged_statistics(groups, executor=executor))


def prepare_all(
    config: PrepareConfig,
    overwrite: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
    chips_per_task: int = CHIPS_PER_TASK,
    cloud_masker: CloudMasker | None = None,
) -> dict:
    """Every stage (split, being cheap, always here); returns a summary (also printed by the CLI)."""
    tiled = tile(config, overwrite=overwrite, progress=progress, executor=executor, cloud_masker=cloud_masker)
    splits = split(config)
    summary = stats(config, executor, chips_per_task)
    return {"tile": tiled, "split": splits, "stats": summary}


def _check_png(config: PrepareConfig, scene: SceneSource) -> None:
    """PNG holds 3-band 8-bit chips only: say so before cutting, not at the first chip."""
    if config.tiling.format != "png":
        return
    with open_raster(scene.image) as src:
        bands = resolve_bands(src, config.input.bands)
        dtype = (
            "uint8"
            if config.tiling.dtype == "uint8"
            else (src.dtypes[bands[0] - 1] if config.tiling.dtype == "source" else config.tiling.dtype)
        )
    if len(bands) != 3 or dtype != "uint8":
        raise ConfigError(
            f"tiling.format png needs 3-band uint8 chips, these would be {len(bands)}-band {dtype}; "
            "select 3 bands (input.bands) and scale to uint8 (tiling.dtype, tiling.scale), or write tif"
        )


def _claim_output(out: Path, overwrite: bool) -> None:
    """Refuse to mix chips of two runs: an earlier output is replaced only with ``overwrite``."""
    existing = [out / name for name in OWNED_OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise ConfigError("already holds prepared chips; pass --overwrite to replace them", out)
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
