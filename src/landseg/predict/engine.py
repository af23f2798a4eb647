"""One scene, any size, to finished output files: the streaming prediction engine.

``predict_scene`` streams blended probabilities (``streaming.py``) into scratch rasters, applies the
minimum mapping unit, turns them into COGs, and adds the optional preview, areas and polygons. Every
file appears under its final name only once complete; the run record ``{stem}_prediction.json`` is
written last, so a scene whose record and outputs all exist is finished and is skipped on a rerun.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from landseg import __version__
from landseg.classes import IGNORE_INDEX
from landseg.errors import DataError, OutputError
from landseg.io.georef import Georeference
from landseg.io.locks import exclusive_lock, lock_path
from landseg.io.raster import open_raster, read_error_message
from landseg.io.write import atomic_output
from landseg.maps.areas import (
    PixelAreas,
    area_table,
    areas_note,
    nominal_pixel_area_m2,
    tally_classes,
    write_area_csv,
    write_area_json,
)
from landseg.maps.cleanup import remove_small_regions_raster
from landseg.maps.cog import (
    PROBABILITY_STEPS,
    copy_to_cog,
    encode_probabilities,
    open_scratch,
    remove_stale_temporaries,
    scratch_path,
    write_window,
)
from landseg.maps.polygons import VECTOR_FORMATS, write_polygons
from landseg.predict.clouds import CloudTally, choose_cloud_source, cloud_colormap, mask_layers, stream_cloud_classes
from landseg.predict.core import lay_out, stream
from landseg.predict.ensemble import Ensemble
from landseg.predict.options import DEFAULT_OPTIONS, PredictOptions
from landseg.predict.outputs import write_preview
from landseg.predict.streaming import Chunk
from landseg.uncertainty import DESCRIPTIONS as UNCERTAINTY_DESCRIPTIONS
from landseg.uncertainty import uncertainty

DISK_MARGIN_BYTES = 16 * 1024 * 1024
"""Room for the preview, areas, polygons and run record beside the rasters."""


def output_paths(out_dir: Path, stem: str, options: PredictOptions) -> dict[str, Path]:
    """Every file a scene's prediction leaves, by kind; ``record`` is written last."""
    paths = {"classes": out_dir / f"{stem}_classes.tif"}
    if options.probabilities:
        paths["probabilities"] = out_dir / f"{stem}_probabilities.tif"
    if options.confidence:
        paths["confidence"] = out_dir / f"{stem}_confidence.tif"
    if options.uncertainty is not None:
        paths["uncertainty"] = out_dir / f"{stem}_uncertainty.tif"
    if options.cloud_output:
        paths["cloud"] = out_dir / f"{stem}_cloud.tif"
    if options.preview:
        paths["color"] = out_dir / f"{stem}_color.png"
    if options.areas:
        paths["areas"] = out_dir / f"{stem}_areas.csv"
        paths["areas_json"] = out_dir / f"{stem}_areas.json"
    if options.polygons:
        paths["polygons"] = out_dir / f"{stem}_polygons{VECTOR_FORMATS[options.polygons]}"
    paths["record"] = out_dir / f"{stem}_prediction.json"
    return paths


def is_finished(paths: dict[str, Path]) -> bool:
    return all(path.exists() for path in paths.values())


@dataclass
class SceneResult:
    source: Path
    paths: dict[str, Path]
    height: int
    width: int
    tiles: int
    seconds: float
    skipped: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    clouds: dict | None = None
    """The cloud mask's counts and fractions (``predict.clouds.CloudTally``), or None without a mask."""


@contextmanager
def gdal_environment(options: PredictOptions) -> Iterator[None]:
    """GDAL's block cache bounded; decompression on all cores. (A plain photo's missing grid is not warned
    about where its rasters are opened, ``io.georef.open_without_grid_warning``, not for a whole run.)"""
    with rasterio.Env(GDAL_CACHEMAX=options.gdal_cache_mb, GDAL_NUM_THREADS="ALL_CPUS"):
        yield


class SceneOutputs:
    """A scene's scratch rasters (classes, optional probabilities and confidence) and how they become
    its finished files; shared by ``predict_scene`` and the Dask assembly task, so both write the same.

    Scratch files are removed when ``cleanup`` closes, whether the scene finished or failed."""

    def __init__(
        self, paths: dict[str, Path], dataset, ensemble: Ensemble, options: PredictOptions, cleanup: ExitStack
    ):
        self.paths, self.options, self.cleanup = paths, options, cleanup
        self.schema = ensemble.schema
        self.height, self.width = dataset.height, dataset.width
        # Geotransform, GCPs and RPCs, whichever the input has, go into every raster output.
        self.georef = Georeference.of(dataset)
        check_free_disk(
            paths["classes"].parent, output_bytes(self.height, self.width, self.schema.num_classes, options)
        )
        self.tags = {
            "landseg_version": __version__,
            "models": ",".join(m.path.name for m in ensemble.members),
            "landseg_schema": json.dumps(self.schema.to_dict()),
        }  # values are class indices
        colormap = self.schema.colormap()
        self.cloud_mask: rasterio.io.DatasetWriter | None = None
        self.scratches = {"classes": self.new_scratch("classes", 1, descriptions=["class"], colormap=colormap)}
        if options.probabilities:
            self.scratches["probabilities"] = self.new_scratch(
                "probabilities", self.schema.num_classes, descriptions=self.schema.names, scale=1 / PROBABILITY_STEPS
            )
        if options.confidence:
            self.scratches["confidence"] = self.new_scratch(
                "confidence", 1, descriptions=["confidence"], scale=1 / PROBABILITY_STEPS
            )
        if options.uncertainty is not None:
            self.scratches["uncertainty"] = self.new_scratch(
                "uncertainty",
                1,
                descriptions=[UNCERTAINTY_DESCRIPTIONS[options.uncertainty]],
                scale=1 / PROBABILITY_STEPS,
            )

    def new_scratch(self, kind: str, count: int, **kwargs) -> rasterio.io.DatasetWriter:
        path = scratch_path(self.paths.get(kind, self.paths["classes"]), "raw" if kind in self.paths else kind)
        self.cleanup.callback(path.unlink, missing_ok=True)
        created = open_scratch(path, self.height, self.width, count, self.georef, tags=self.tags, **kwargs)
        self.cleanup.callback(created.close)
        return created

    def mask_clouds(self, dataset, ensemble: Ensemble, source: Path, stages: dict[str, float]) -> dict | None:
        """The scene's cloud and shadow mask (``predict.clouds``) streamed into a scratch raster, and every
        pixel under it made no-data in the scratch outputs; its counts for the run record, or None."""
        cloud = choose_cloud_source(dataset, ensemble, self.options.cloud_mask, source)
        if cloud is None:
            if self.options.cloud_output:
                raise DataError(
                    "gets no cloud mask (it is no Sentinel-2 product, has no bands named B2 ... B12 and no "
                    "Sentinel-2 model reads it): choose --cloud-mask model or scl, or leave out --outputs cloud",
                    source,
                )
            return None
        mark = time.perf_counter()
        self.cloud_mask = self.new_scratch("cloud", 1, descriptions=["cloud mask"], colormap=cloud_colormap())
        tally = CloudTally()
        for rows, cols, classes in stream_cloud_classes(dataset, cloud, self.options, source):
            write_window(self.cloud_mask, classes, rows, cols)
            tally += CloudTally.of(classes)
        if tally.valid and not tally.clear:
            raise DataError(
                f"every pixel is under cloud or shadow ({cloud.describe()}): there is nothing to map; choose "
                "another date, or map it anyway with --cloud-mask none",
                source,
            )
        mask_layers(self.cloud_mask, list(self.scratches.values()))
        stages["cloud_mask"] = time.perf_counter() - mark
        return tally.to_dict(cloud)

    def finish(self, source: Path, stages: dict[str, float]) -> None:
        """Minimum mapping unit, COGs, areas, preview and polygons; their times go into ``stages``."""
        schema, options, paths = self.schema, self.options, self.paths
        for written in self.scratches.values():
            written.close()
        if self.cloud_mask is not None:
            self.cloud_mask.close()
            if "cloud" in paths:
                copy_to_cog(Path(self.cloud_mask.name), paths["cloud"], "MODE")
        final_classes = Path(self.scratches["classes"].name)
        if options.min_area > 1:
            mark = time.perf_counter()
            other = self.new_scratch("classes", 1, descriptions=["class"], colormap=schema.colormap())
            other.close()
            final_classes = remove_small_regions_raster(
                final_classes, Path(other.name), schema.num_classes, options.min_area
            )
            stages["min_area"] = time.perf_counter() - mark
        mark = time.perf_counter()
        # Ground areas on the geotransform, or approximate ones through the GCPs or RPCs; none for a photo.
        areas = PixelAreas.of(self.georef)
        tally = tally_classes(final_classes, schema.num_classes, areas) if options.areas else None
        copy_to_cog(final_classes, paths["classes"], "MODE")
        for kind in ("probabilities", "confidence", "uncertainty"):
            if kind in self.scratches:
                copy_to_cog(Path(self.scratches[kind].name), paths[kind], "AVERAGE")
        stages["cog"] = time.perf_counter() - mark
        mark = time.perf_counter()
        if tally is not None:
            transform, crs = self.georef.area_grid()
            rows = area_table(tally, schema)
            note = areas_note(areas, self.georef)
            write_area_csv(paths["areas"], rows, note=note)
            write_area_json(
                paths["areas_json"],
                rows,
                {
                    "source": str(source),
                    "height": self.height,
                    "width": self.width,
                    "crs": None if crs is None else crs.to_string(),
                    "area_method": None if areas is None else areas.method,
                    "pixel_area_m2": nominal_pixel_area_m2(crs, transform),
                    **({"approximate": True} if areas is not None and areas.method == "approximate" else {}),
                    **({"note": note} if note else {}),
                },
            )
        if options.preview:
            write_preview(paths["classes"], schema, paths["color"])
        if options.polygons:
            write_polygons(final_classes, paths["polygons"], schema, options.simplify)
        stages["extras"] = time.perf_counter() - mark


def predict_scene(
    source: str | Path,
    ensemble: Ensemble,
    out_dir: str | Path,
    options: PredictOptions = DEFAULT_OPTIONS,
    stem: str | None = None,
    on_start: Callable[[int], None] | None = None,
    on_tiles: Callable[[int], None] | None = None,
    skip_finished: bool = False,
    on_wait: Callable[[], None] | None = None,
) -> SceneResult:
    """Predict ``source`` into ``out_dir``; ``on_start(tiles)`` and ``on_tiles(n)`` report progress.

    One process at a time writes a scene's outputs (``io.locks``: a run cleaning up its temporaries would
    otherwise delete another's mid-write); ``on_wait`` is called if another holds them. With
    ``skip_finished``, outputs found complete once the lock is held are kept (``SceneResult.skipped``)."""
    options.check()
    source, out_dir = Path(source), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or source.stem
    paths = output_paths(out_dir, stem, options)
    with exclusive_lock(lock_path(out_dir, stem), on_wait=on_wait):
        if skip_finished and is_finished(paths):
            return SceneResult(source, paths, 0, 0, 0, 0.0, skipped=True)
        return _write_scene(source, ensemble, out_dir, options, stem, paths, on_start, on_tiles)


def _write_scene(
    source: Path,
    ensemble: Ensemble,
    out_dir: Path,
    options: PredictOptions,
    stem: str,
    paths: dict[str, Path],
    on_start: Callable[[int], None] | None,
    on_tiles: Callable[[int], None] | None,
) -> SceneResult:
    started = time.perf_counter()
    stages: dict[str, float] = {}
    with gdal_environment(options), open_raster(source) as dataset, ExitStack() as cleanup:
        layout = lay_out(dataset, ensemble, options, source)
        tiles = layout.tiles(options.block_width)
        outputs = SceneOutputs(paths, dataset, ensemble, options, cleanup)
        if on_start is not None:
            on_start(tiles)
        try:
            write_chunks(stream(dataset, ensemble, layout, options, on_tiles=on_tiles), outputs.scratches, options)
        except RasterioError as exc:
            raise DataError(
                f"cannot read pixels, file is truncated or corrupt ({read_error_message(exc)})", source
            ) from None
        stages["predict"] = time.perf_counter() - started
        clouds = outputs.mask_clouds(dataset, ensemble, source, stages)
        outputs.finish(source, stages)
        shape = (dataset.height, dataset.width)
    seconds = time.perf_counter() - started
    write_run_record(
        paths,
        source,
        ensemble,
        options,
        {
            "height": shape[0],
            "width": shape[1],
            "tiles_predicted": tiles,
            "tiles_in_grid": layout.grid.tile_count,
            "seconds": round(seconds, 3),
            "stages": {k: round(v, 3) for k, v in stages.items()},
            "georeferencing": outputs.georef.describe(),
            "cloud_mask": clouds,
        },
    )
    remove_stale_temporaries(out_dir, stem)
    return SceneResult(source, paths, shape[0], shape[1], tiles, seconds, stages=stages, clouds=clouds)


def output_bytes(height: int, width: int, num_classes: int, options: PredictOptions) -> int:
    """Disk bytes a scene's outputs may take at their peak: every raster's uncompressed scratch (a second
    class scratch for the minimum mapping unit) and its COG beside it, counted at the scratch's size
    (deflate and overviews, a third more, assumed to cancel at worst), plus a margin for the small files."""
    pixels = height * width
    bands = sum(options.raster_layers(num_classes).values())
    mask = 0 if options.cloud_mask == "none" else 1 + int(options.cloud_output)
    scratch = pixels * (bands + (1 if options.min_area > 1 else 0))
    return scratch + pixels * (bands + mask) + DISK_MARGIN_BYTES


def check_free_disk(folder: Path, needed: int) -> None:
    """``OutputError`` naming ``folder`` when its filesystem has fewer than ``needed`` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # a filesystem that cannot say: writing will tell (an OutputError naming the file)
        return
    if free < needed:
        raise OutputError(
            f"not enough free disk space for this scene's outputs: they need about "
            f"{_bytes(needed)} ({needed:,} bytes), the folder has {_bytes(free)} ({free:,} bytes) free",
            folder,
        )


def _bytes(count: int) -> str:
    """``1.2 GiB``: the size in the largest binary unit it reaches."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while power < len(units) - 1 and count >= 1024 ** (power + 1):
        power += 1
    return f"{count} bytes" if power == 0 else f"{count / 1024**power:.3g} {units[power]}"


def chunk_layers(chunk: Chunk, options: PredictOptions) -> dict[str, np.ndarray]:
    """A finished chunk as the uint8 ``(bands, h, w)`` layers of each raster output: class indices
    (no-data ``IGNORE_INDEX``), and the per-class probabilities, the confidence and the uncertainty when
    asked for, in the order of ``options.raster_layers``."""
    layers = {"classes": chunk.classes(IGNORE_INDEX)[None]}
    if options.probabilities:
        layers["probabilities"] = encode_probabilities(chunk.probabilities, chunk.valid)
    if options.confidence:
        layers["confidence"] = encode_probabilities(chunk.probabilities.max(axis=0), chunk.valid)[None]
    if options.uncertainty is not None:
        unsure = uncertainty(chunk.probabilities, options.uncertainty)
        layers["uncertainty"] = encode_probabilities(unsure, chunk.valid)[None]
    return layers


def write_chunks(
    chunks: Iterable[Chunk], scratches: dict[str, rasterio.io.DatasetWriter], options: PredictOptions
) -> None:
    for chunk in chunks:
        for kind, layer in chunk_layers(chunk, options).items():
            write_window(scratches[kind], layer, chunk.rows, chunk.cols)


def write_run_record(
    paths: dict[str, Path], source: Path, ensemble: Ensemble, options: PredictOptions, facts: dict
) -> None:
    """``{stem}_prediction.json``, last of a scene's files: what was predicted, how, and by which models."""
    record = {
        "source": str(source),
        "models": [str(m.path) for m in ensemble.members],
        "engines": [m.engine for m in ensemble.members],
        "precisions": [m.precision for m in ensemble.members],
        "int8_guards": [m.card.int8 if m.precision == "int8" else None for m in ensemble.members],
        "tta": ensemble.tta,
        "options": asdict(options),
        **facts,
        "outputs": {k: p.name for k, p in paths.items() if k != "record"},
        "landseg_version": __version__,
    }
    with atomic_output(paths["record"]) as temporary:
        temporary.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
