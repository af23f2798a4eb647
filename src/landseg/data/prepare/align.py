"""Put a label raster on an image's grid (or an image on a label's grid), window by window.

Resolution, extent and CRS may all differ. Each output window is filled by ``rasterio.warp.reproject``
from just the part of the source that covers it, so memory is bounded by the window size whatever the
scene size. Labels are decoded to class indices through the schema *before* resampling, so ``mode``
votes over classes (two source codes of one class count together) and label no-data votes as "no
label": an output pixel becomes ignore when "no label" is its most common source value, and pixels
outside the label's extent are ignore.

Pre-chipped pairs without georeferencing (a 400 px image with a 200 px label) are matched on a
``pixel`` grid: both rasters are taken to cover the same extent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine, from_origin
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from landseg.classes import IGNORE_INDEX, ClassSchema, UnknownPolicy
from landseg.data.prepare.rasters import Unusable, block_windows, read_window
from landseg.io.raster import open_raster
from landseg.io.write import atomic_output

GridKind = Literal["auto", "geo", "pixel"]
LabelMethod = Literal["mode", "nearest"]
# Stands in for "same extent, no coordinates" when two rasters are matched by pixel position.
PIXEL_GRID_CRS = CRS.from_epsg(3857)
OUTPUT_BLOCK = 256


@dataclass(frozen=True)
class Grid:
    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, src: rasterio.DatasetReader) -> Grid:
        return cls(src.crs, src.transform, src.width, src.height)

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and not self.transform.is_identity

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return window_bounds(Window(0, 0, self.width, self.height), self.transform)

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def matches(self, other: Grid) -> bool:
        """Same CRS, shape and pixel grid (to a millionth of a pixel)."""
        if (self.width, self.height) != (other.width, other.height) or self.crs != other.crs:
            return False
        tolerance = 1e-6 * max(abs(self.transform.a), abs(self.transform.e), 1e-12)
        return all(abs(a - b) <= tolerance for a, b in zip(self.transform[:6], other.transform[:6], strict=False))


def paired_grids(target: Grid, source: Grid, kind: GridKind, names: tuple[Path, Path]) -> tuple[Grid, Grid]:
    """Target and source grids in one coordinate system: their own, or a shared pixel space."""
    if kind == "auto":
        if target.georeferenced != source.georeferenced:
            plain = names[0] if not target.georeferenced else names[1]
            raise Unusable(
                "is not georeferenced but its partner is; set align.grid: pixel to match the two by pixel position",
                plain,
            )
        kind = "geo" if target.georeferenced else "pixel"
    if kind == "geo":
        for grid, name in zip((target, source), names, strict=False):
            if not grid.georeferenced:
                raise Unusable("has no georeferencing; use align.grid: pixel", name)
        _check_overlap(target, source, names)
        return target, source
    rx, ry = target.width / source.width, target.height / source.height
    if abs(rx - ry) > 0.01 * max(rx, ry):
        raise Unusable(
            f"is {source.width}x{source.height} for a {target.width}x{target.height} partner: the two do not "
            "cover the same extent at one scale, so they cannot be matched by pixel position",
            names[1],
        )
    target_pixels = Grid(PIXEL_GRID_CRS, from_origin(0, target.height, 1, 1), target.width, target.height)
    source_pixels = Grid(PIXEL_GRID_CRS, from_origin(0, target.height, rx, ry), source.width, source.height)
    return target_pixels, source_pixels


def _check_overlap(target: Grid, source: Grid, names: tuple[Path, Path]) -> None:
    """Refuse a pair whose extents do not meet: every pixel would end up without a label."""
    left, bottom, right, top = source.bounds
    if source.crs != target.crs:
        left, bottom, right, top = transform_bounds(source.crs, target.crs, left, bottom, right, top, densify_pts=21)
    t_left, t_bottom, t_right, t_top = target.bounds
    if left >= t_right or right <= t_left or bottom >= t_top or top <= t_bottom:
        raise Unusable(
            f"does not overlap {names[0].name}: its extent ({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}) lies "
            f"outside ({t_left:.6g}, {t_bottom:.6g}, {t_right:.6g}, {t_top:.6g}) in {target.crs}",
            names[1],
        )


class LabelDecoder:
    """Raw label values to ``uint8`` class indices; schema ignore codes and label no-data become ignore.

    8- and 16-bit labels go through a lookup table built once from the schema, so decoding a window is
    one indexing operation; other dtypes fall back to ``ClassSchema.decode_codes`` per window.
    """

    def __init__(self, schema: ClassSchema, dtype: str, nodata: float | None, unknown: UnknownPolicy, source: str):
        self.schema, self.nodata, self.unknown, self.source = schema, nodata, unknown, source
        self.dtype = np.dtype(dtype)
        self.lut: np.ndarray | None = None
        self.unknown_lut: np.ndarray | None = None
        self.offset = 0
        if self.dtype.kind in "ui" and self.dtype.itemsize <= 2:
            info = np.iinfo(self.dtype)
            values = np.arange(info.min, info.max + 1, dtype=np.int64)
            self.offset = -int(info.min)
            self.lut = schema.decode_codes(values, unknown="ignore")
            known = {c.code for c in schema.classes if c.code is not None} | set(schema.ignore_codes)
            if nodata is not None and not math.isnan(nodata) and float(nodata).is_integer():
                known.add(int(nodata))
                if info.min <= nodata <= info.max:
                    self.lut[int(nodata) + self.offset] = IGNORE_INDEX
            self.unknown_lut = ~np.isin(values, np.array(sorted(known), dtype=np.int64))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.lut is not None and self.unknown_lut is not None:
            index = raw.astype(np.int64) + self.offset if self.offset else raw
            if self.unknown == "error" and self.unknown_lut[index].any():
                self.schema.decode_codes(raw[self.unknown_lut[index]], unknown="error", source=self.source)
            return self.lut[index]
        missing = np.zeros(raw.shape, dtype=bool)
        if self.nodata is not None:
            missing = np.isnan(raw) if math.isnan(self.nodata) else raw == self.nodata
        # Any class code will do: missing pixels are set to ignore after decoding. Without codes,
        # decode_codes refuses the schema, saying why.
        stand_in = next((c.code for c in self.schema.classes if c.code is not None), 0)
        decoded = self.schema.decode_codes(np.where(missing, stand_in, raw), unknown=self.unknown, source=self.source)
        decoded[missing] = IGNORE_INDEX
        return decoded


def index_decoder(schema: ClassSchema):
    """Decoder of an index raster written by ``align_labels``: indices stay, anything else is ignore.

    A partial, not a closure: scenes travel to executor processes, and pickle refuses closures."""
    return partial(_decode_indices, classes=schema.num_classes)


def _decode_indices(raw: np.ndarray, classes: int) -> np.ndarray:
    return np.where(raw < classes, raw, IGNORE_INDEX).astype(np.uint8)


@dataclass(frozen=True)
class AlignResult:
    path: Path
    windows: int
    source_pixels: int
    """Source pixels read (per band), for throughput figures."""
    source_bytes: int


def source_window(target: Grid, window: Window, source: Grid, margin: int) -> Window | None:
    """The part of ``source`` that covers ``window`` of ``target``, plus ``margin`` pixels; None if none."""
    bounds = window_bounds(window, target.transform)
    if target.crs != source.crs:
        bounds = transform_bounds(target.crs, source.crs, *bounds, densify_pts=21)
    raw = from_bounds(*bounds, transform=source.transform)
    col0 = math.floor(raw.col_off + 1e-6) - margin
    row0 = math.floor(raw.row_off + 1e-6) - margin
    col1 = math.ceil(raw.col_off + raw.width - 1e-6) + margin
    row1 = math.ceil(raw.row_off + raw.height - 1e-6) + margin
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, source.width), min(row1, source.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def window_side(target: Grid, source: Grid, block: int, max_source_pixels: int) -> int:
    """Output window side: ``block``, shrunk so the source window stays under ``max_source_pixels``."""
    left, bottom, right, top = target.bounds
    if target.crs != source.crs:
        left, bottom, right, top = transform_bounds(target.crs, source.crs, left, bottom, right, top)
    source_per_target = max(
        (right - left) / abs(source.transform.a) / target.width,
        (top - bottom) / abs(source.transform.e) / target.height,
        1e-9,
    )
    side = min(block, int(math.sqrt(max_source_pixels) / source_per_target))
    step = OUTPUT_BLOCK if side >= OUTPUT_BLOCK else 16
    return max(16, side // step * step)


def index_profile(grid: Grid, block: int) -> dict:
    tile = min(OUTPUT_BLOCK, max(16, block // 16 * 16))
    return dict(
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="uint8",
        nodata=IGNORE_INDEX,
        crs=grid.crs,
        transform=grid.transform,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress="deflate",
        photometric="palette",
    )


def align_labels(
    image_path: str | Path,
    label_path: str | Path,
    out_path: str | Path,
    schema: ClassSchema,
    *,
    method: LabelMethod = "mode",
    label_nodata: float | None = None,
    unknown: UnknownPolicy = "error",
    grid: GridKind = "auto",
    block: int = 512,
    max_source_pixels: int = 16_000_000,
    threads: int = 1,
) -> AlignResult:
    """Labels of ``label_path`` as a ``uint8`` class-index GeoTIFF on the grid of ``image_path``."""
    image_path, label_path, out_path = Path(image_path), Path(label_path), Path(out_path)
    with open_raster(image_path) as image:
        image_grid = Grid.of(image)
    with open_raster(label_path) as label:
        if label.count != 1:
            raise Unusable(f"label raster has {label.count} bands; expected 1 band of class codes", label_path)
        nodata = label_nodata if label_nodata is not None else label.nodata
        decoder = LabelDecoder(schema, label.dtypes[0], nodata, unknown, str(label_path))
        target, source = paired_grids(image_grid, Grid.of(label), grid, (image_path, label_path))
        side = window_side(target, source, block, max_source_pixels)
        # Class K is "no label" while warping: an ordinary value that votes, unlike GDAL no-data.
        no_label = schema.num_classes
        margin = 0 if target.crs == source.crs else 2
        resampling = Resampling.mode if method == "mode" else Resampling.nearest
        windows = pixels = 0
        profile = index_profile(image_grid, side)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(out_path) as temporary, rasterio.open(temporary, "w", **profile) as dst:
            for window in block_windows(target.width, target.height, side):
                out = np.full((int(window.height), int(window.width)), IGNORE_INDEX, dtype=np.uint8)
                read = source_window(target, window, source, margin)
                if read is not None:
                    decoded = decoder(read_window(label, [1], read, None)[0][0])
                    decoded[decoded == IGNORE_INDEX] = no_label
                    reproject(
                        decoded,
                        out,
                        src_transform=source.window_transform(read),
                        src_crs=source.crs,
                        dst_transform=target.window_transform(window),
                        dst_crs=target.crs,
                        dst_nodata=IGNORE_INDEX,
                        resampling=resampling,
                        num_threads=threads,
                    )
                    out[out == no_label] = IGNORE_INDEX
                    pixels += int(read.width * read.height)
                dst.write(out, 1, window=window)
                windows += 1
            dst.write_colormap(1, schema.colormap())
            dst.set_band_description(1, "class")
    itemsize = np.dtype(decoder.dtype).itemsize
    return AlignResult(out_path, windows, pixels, pixels * itemsize)


def resample_image(
    image_path: str | Path,
    label_path: str | Path,
    out_path: str | Path,
    *,
    method: Literal["average", "bilinear", "cubic", "nearest"] = "average",
    nodata: float | None = None,
    grid: GridKind = "auto",
    block: int = 512,
    max_source_pixels: int = 16_000_000,
    threads: int = 1,
) -> AlignResult:
    """``image_path`` resampled onto the grid of ``label_path`` (all bands, same dtype), window by window."""
    image_path, label_path, out_path = Path(image_path), Path(label_path), Path(out_path)
    with open_raster(label_path) as label:
        label_grid = Grid.of(label)
    with open_raster(image_path) as image:
        no_value = nodata if nodata is not None else image.nodata
        target, source = paired_grids(label_grid, Grid.of(image), grid, (label_path, image_path))
        side = window_side(target, source, block, max_source_pixels // max(image.count, 1))
        margin = 0 if target.crs == source.crs and method in ("average", "nearest") else 2
        profile = dict(
            driver="GTiff",
            width=label_grid.width,
            height=label_grid.height,
            count=image.count,
            dtype=image.dtypes[0],
            nodata=no_value,
            crs=label_grid.crs,
            transform=label_grid.transform,
            tiled=True,
            blockxsize=OUTPUT_BLOCK,
            blockysize=OUTPUT_BLOCK,
            compress="deflate",
        )
        windows = pixels = 0
        bands = list(range(1, image.count + 1))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(out_path) as temporary, rasterio.open(temporary, "w", **profile) as dst:
            for window in block_windows(target.width, target.height, side):
                out = np.full(
                    (image.count, int(window.height), int(window.width)),
                    no_value if no_value is not None else 0,
                    dtype=image.dtypes[0],
                )
                read = source_window(target, window, source, margin)
                if read is not None:
                    reproject(
                        read_window(image, bands, read, no_value)[0],
                        out,
                        src_transform=source.window_transform(read),
                        src_crs=source.crs,
                        dst_transform=target.window_transform(window),
                        dst_crs=target.crs,
                        src_nodata=no_value,
                        dst_nodata=no_value,
                        resampling=Resampling[method],
                        num_threads=threads,
                    )
                    pixels += int(read.width * read.height)
                dst.write(out, window=window)
                windows += 1
            dst.descriptions = image.descriptions
    return AlignResult(out_path, windows, pixels, pixels * image.count * np.dtype(image.dtypes[0]).itemsize)
