"""Cutting a scene into chips: layout, per-chip statistics, filtering and writing, window by window.

Chips are ``size`` pixels square every ``stride`` pixels; the last row and column sit flush with the
scene's edge (the same layout as sliding-window prediction), so chips cover the scene exactly and no
chip reads past it. A scene smaller than a chip gives one chip of the whole scene. Each chip is read
from the open scene (image and label on one grid), its label decoded to class indices with image
no-data made ignore, then counted, filtered and, if kept, written as a georeferenced GeoTIFF (or PNG).
Where ``filters.max_cloud_fraction`` is on, the chip's window of the scene's cloud mask is read beside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from landseg.classes import IGNORE_INDEX, ClassSchema, LandClass
from landseg.data.prepare.align import Grid
from landseg.data.prepare.filters import ChipFilter, FilterReport, cloud_share, is_blank, missing_cloud_masks
from landseg.data.prepare.index import ChipRecord
from landseg.data.prepare.rasters import (
    UINT8_NODATA,
    Scaling,
    Unreadable,
    UnreadableWindow,
    open_readable,
    read_window,
    resolve_bands,
    scene_nodata,
    window_text,
)
from landseg.errors import ConfigError, DataError
from landseg.io.georef import warped_onto
from landseg.io.write import atomic_output, write_index_geotiff, write_index_png, write_rgb_png

LabelDecode = Callable[[np.ndarray], np.ndarray]


def chip_origins(length: int, size: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride`` pixels, the last flush with the end.

    The rule of ``landseg.predict.tiling.tile_origins``; not imported from there because importing
    ``landseg.predict`` loads torch, which would dominate the memory and start-up of a preparation run.
    """
    last = length - size
    if last <= 0:
        return [0]
    return [*list(range(0, last, stride)), last]


def chip_windows(width: int, height: int, size: int, stride: int) -> list[Window]:
    """Chip windows row by row; together they cover every pixel, neighbours share ``size - stride``."""
    if size < 1 or stride < 1:
        raise ConfigError(f"tiling.size and tiling.stride must be positive, got {size} and {stride}")
    if stride > size:
        raise ConfigError(f"tiling.stride ({stride}) larger than tiling.size ({size}) would leave gaps")
    rows, cols = chip_origins(height, size, stride), chip_origins(width, size, stride)
    return [Window(c, r, min(size, width - c), min(size, height - r)) for r in rows for c in cols]


@dataclass(frozen=True)
class SceneSource:
    """An image and a label raster on the same grid, and how to decode the label's values."""

    name: str
    image: Path
    label: Path
    decode: LabelDecode
    source_image: Path
    source_label: Path
    cloud_mask: Path | None = None
    """The scene's cloud mask raster (``filters.max_cloud_fraction``), on the source image's grid or georeferenced."""


CLOUD_MASK_OUTSIDE = 255
"""No-data of a warped cloud mask whose file declares none: the cloud model's no-data value."""


@contextmanager
def cloud_mask_on_grid(mask: rasterio.DatasetReader, image: rasterio.DatasetReader) -> Iterator:
    """``mask`` as a raster on ``image``'s grid, for window reads: itself where it is on that grid, else
    warped onto it by nearest neighbour (a 20 m mask of a 10 m image, or an image resampled onto its
    label's grid); pixels outside the mask's extent are no-data and count neither way."""
    if Grid.of(mask).matches(Grid.of(image)):
        yield mask
        return
    if not (Grid.of(mask).georeferenced and Grid.of(image).georeferenced):
        raise DataError(
            f"cloud mask is {mask.width}x{mask.height} and not on its image's {image.width}x{image.height} grid; "
            "without georeferencing it cannot be put there: write it on the image's grid",
            mask.name,
        )
    nodata = mask.nodata if mask.nodata is not None else CLOUD_MASK_OUTSIDE
    with warped_onto(mask, image, nodata=nodata) as warped:
        yield warped


@dataclass(frozen=True)
class ChipWriter:
    out_dir: Path
    schema: ClassSchema
    format: Literal["tif", "png"] = "tif"
    dtype: Literal["source", "float32", "uint8"] = "source"
    scaling: Scaling | None = None
    compress: str = "deflate"

    def convert(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.dtype == "source":
            return data
        scaling = self.scaling or Scaling.identity(data.shape[0])
        return scaling.to_float(data, valid) if self.dtype == "float32" else scaling.to_uint8(data, valid)

    def write(
        self, chip: str, data: np.ndarray, mask: np.ndarray, crs, transform, descriptions, nodata
    ) -> tuple[str, str]:
        """Write image and mask; return their paths relative to ``out_dir``."""
        image_rel, mask_rel = f"images/{chip}.{self.format}", f"masks/{chip}.{self.format}"
        image_path, mask_path = self.out_dir / image_rel, self.out_dir / mask_rel
        if self.format == "png":
            if data.shape[0] != 3 or data.dtype != np.uint8:
                raise ConfigError(
                    f"tiling.format png needs 3-band uint8 chips, not {data.shape[0]}-band {data.dtype}; "
                    "select 3 bands and scale to uint8, or write tif"
                )
            write_rgb_png(image_path, np.ascontiguousarray(np.moveaxis(data, 0, -1)))
            write_index_png(mask_path, mask, self.schema)
            return image_rel, mask_rel
        if self.dtype == "float32":
            nodata = float("nan")
        elif self.dtype == "uint8":
            nodata = UINT8_NODATA
        compress = None if self.compress == "none" else self.compress
        profile = dict(
            driver="GTiff",
            width=data.shape[2],
            height=data.shape[1],
            count=data.shape[0],
            dtype=str(data.dtype),
            crs=crs,
            transform=transform,
            nodata=nodata,
            compress=compress,
            photometric="RGB" if data.shape[0] == 3 and data.dtype == np.uint8 else "MINISBLACK",
        )
        if compress is not None:
            profile["predictor"] = 3 if np.issubdtype(data.dtype, np.floating) else 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with atomic_output(image_path) as temporary, rasterio.open(temporary, "w", **profile) as dst:
                dst.write(data)
                dst.descriptions = tuple(descriptions)
            write_index_geotiff(mask_path, mask, crs, transform, self.schema)
        return image_rel, mask_rel


def chip_mask_schema(schema: ClassSchema) -> ClassSchema:
    """The schema of written chip masks: the same classes and colours, code = class index, 255 = ignore.

    Chip masks hold class indices (whatever codes the source labels used), so a training config on the
    chips uses this schema; ``tile`` saves it as ``schema.yaml`` in the output folder.
    """
    return ClassSchema(
        name=schema.name,
        description=f"Chip masks of {schema.name}: class indices, {IGNORE_INDEX} = ignore.",
        classes=tuple(LandClass(c.name, c.color, i, None) for i, c in enumerate(schema.classes)),
        ignore_codes=(IGNORE_INDEX,),
    )


def chip_name(scene: str, window: Window) -> str:
    return f"{scene}_r{int(window.row_off):05d}_c{int(window.col_off):05d}"


def scene_class_totals(scene: SceneSource, size: int, stride: int, classes: int) -> np.ndarray:
    """Pixels per class over the chips of a scene (labels only, image no-data not masked), for ranking."""
    totals = np.zeros(classes, dtype=np.int64)
    try:
        label = open_readable(scene.label)
    except Unreadable:
        return totals
    with label:
        for window in chip_windows(label.width, label.height, size, stride):
            try:
                mask = scene.decode(read_window(label, [1], window, None)[0][0])
            except UnreadableWindow:
                continue  # reported when the chip itself is cut
            totals += np.bincount(mask[mask != IGNORE_INDEX], minlength=classes)[:classes]
    return totals


def cut_scene(
    scene: SceneSource,
    *,
    bands,
    nodata: float | None,
    size: int,
    stride: int,
    chip_filter: ChipFilter,
    writer: ChipWriter,
    report: FilterReport,
    on_chip: Callable[[], None] | None = None,
) -> list[ChipRecord]:
    """Every chip of ``scene``, filtered, kept ones written; a file that cannot be opened is quarantined."""
    if chip_filter.needs_cloud_masks and scene.cloud_mask is None:
        raise missing_cloud_masks([scene.name])
    records: list[ChipRecord] = []
    with ExitStack() as files:
        try:
            image = files.enter_context(open_readable(scene.image))
            label = files.enter_context(open_readable(scene.label))
            clouds = files.enter_context(open_readable(scene.cloud_mask)) if chip_filter.needs_cloud_masks else None
        except Unreadable as exc:
            report.quarantine(exc.path or scene.image, exc.problem)
            return []
        if (image.width, image.height) != (label.width, label.height):
            raise DataError(
                f"label is {label.width}x{label.height}, image {image.width}x{image.height}: align them first",
                scene.label,
            )
        if clouds is not None:
            clouds = files.enter_context(cloud_mask_on_grid(clouds, image))
        chosen = resolve_bands(image, bands)
        no_value = scene_nodata(image, nodata)
        descriptions = [image.descriptions[b - 1] or f"band {b}" for b in chosen]
        crs = image.crs if not image.transform.is_identity else None
        for window in chip_windows(image.width, image.height, size, stride):
            record = _cut_chip(
                scene, image, label, clouds, window, chosen, no_value, crs, descriptions, chip_filter, writer, report
            )
            records.append(record)
            if on_chip is not None:
                on_chip()
    return records


def _cut_chip(
    scene: SceneSource,
    image,
    label,
    clouds,
    window: Window,
    bands: list[int],
    nodata,
    crs,
    descriptions,
    chip_filter: ChipFilter,
    writer: ChipWriter,
    report: FilterReport,
) -> ChipRecord:
    name = chip_name(scene.name, window)
    classes = writer.schema.num_classes
    record = ChipRecord(
        chip=name,
        scene=scene.name,
        source_image=str(scene.source_image),
        source_label=str(scene.source_label),
        col_off=int(window.col_off),
        row_off=int(window.row_off),
        width=int(window.width),
        height=int(window.height),
        crs=crs.to_string() if crs else "",
        **dict(zip(("left", "bottom", "right", "top"), window_bounds(window, image.transform), strict=False)),
        valid_fraction=0.0,
        ignored=0,
        status="",
        reason="",
        image="",
        mask="",
        counts=np.zeros(classes, dtype=np.int64),
    )
    try:
        raw = read_window(label, [1], window, None)[0][0]
        mask = scene.decode(raw)  # unknown codes raise: a schema problem, not a corrupt file
        data = valid = None
        cloudy = 0.0
        if (mask != IGNORE_INDEX).any() or not chip_filter.drop_unlabelled:
            data, valid = read_window(image, bands, window, nodata)
            if clouds is not None:
                cloud_pixels = read_window(clouds, [1], window, None)[0][0]
                cloudy = cloud_share(cloud_pixels, valid, chip_filter.cloud_values, clouds.nodata)
    except UnreadableWindow as exc:
        record.status, record.reason = "quarantined", exc.problem
        report.quarantine(exc.path or scene.image, exc.problem, chip=name, window=window_text(window))
        return record
    if valid is not None:
        mask = np.where(valid, mask, IGNORE_INDEX).astype(np.uint8)
    labelled = mask != IGNORE_INDEX
    record.counts = np.bincount(mask[labelled], minlength=classes)[:classes].astype(np.int64)
    record.valid_fraction = float(labelled.mean())
    record.ignored = int(mask.size - labelled.sum())
    blank = data is not None and valid is not None and is_blank(data, valid)
    rule = chip_filter.rejection(record.counts, record.valid_fraction, blank, cloudy)
    if rule is not None:
        record.status, record.reason = "dropped", rule
        report.drop(name, rule)
        return record
    # The image goes unread only for chips without labels, and the filter drops those.
    assert data is not None and valid is not None
    record.status = "kept"
    record.image, record.mask = writer.write(
        name, writer.convert(data, valid), mask, crs, image.window_transform(window), descriptions, nodata
    )
    report.keep()
    return record
