"""The one inference core: pixels of a scene to blended class probabilities.

Every path that turns pixels into classes comes through here: ``landseg predict`` (``engine.py``),
``landseg evaluate`` (which scores the files ``engine.predict_scene`` writes), training validation and
anything else holding an image in memory (``predict_array``), ``landseg serve`` and the Dask block
tasks. The steps, in order, are always the same:

1. ``lay_out``: the ensemble's bands matched in the raster (by name, else by index), the no-data value,
   a sample of the input checked against the pixels each model was trained on (dtype, value range,
   resolution), the tile side at the model's input scale, the tile grid over the scene mirrored by a
   margin on every side, and the blend weights;
2. ``stream``: the grid read and predicted block by block, row by row (``streaming.py``): raw tiles are
   normalized, resampled to the model's scale, run through every member (torch or ONNX Runtime) with
   its test-time augmentations, averaged, and blended into finished ``Chunk`` s.

A file is an open rasterio dataset; an in-memory ``(C, H, W)`` array is wrapped in ``ArrayRaster``,
which reads like one, so both take exactly the same tiles.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from landseg.errors import ConfigError, DataError
from landseg.io.pixel_stats import PixelStats, input_mismatch, resolution_warning, sample_input
from landseg.io.sentinel2 import LEVEL_TAG
from landseg.predict.blocks import ColumnBlock, TileGrid, column_blocks, scene_grid
from landseg.predict.ensemble import BandPlan, Ensemble
from landseg.predict.options import DEFAULT_OPTIONS, PredictOptions
from landseg.predict.streaming import Chunk, stream_probabilities
from landseg.predict.tiling import blend_weights
from landseg.zoo import get_zoo_model


class ArrayRaster:
    """A ``(bands, height, width)`` array that answers the few calls the core makes of a rasterio dataset."""

    def __init__(self, data: np.ndarray, nodata: float | None = None, descriptions: Sequence[str | None] | None = None):
        if data.ndim != 3:
            raise ConfigError(f"image must be (bands, height, width), got shape {data.shape}")
        self.data = data
        self.count, self.height, self.width = data.shape
        self.nodata = nodata
        self.descriptions = tuple(descriptions) if descriptions is not None else (None,) * self.count
        self.dtypes = (str(data.dtype),) * self.count

    def read(self, indexes: Sequence[int], window: Window) -> np.ndarray:
        rows, cols = window.toslices()
        return self.data[[i - 1 for i in indexes], rows, cols]


@dataclass(frozen=True)
class Layout:
    """How one scene is cut and read for one ensemble under one set of options."""

    bands: BandPlan
    grid: TileGrid
    weights: np.ndarray
    """``(tile, tile)`` blend weights."""
    nodata: float | None

    def blocks(self, block_width: int) -> list[ColumnBlock]:
        return column_blocks(self.grid, block_width)

    def tiles(self, block_width: int) -> int:
        """Tiles predicted, counting those that straddle a block border once per block."""
        return sum(len(self.grid.rows) * len(block.tile_cols) for block in self.blocks(block_width))


def lay_out(dataset, ensemble: Ensemble, options: PredictOptions, source: str | Path) -> Layout:
    """Bands, no-data, tile grid and blend weights of ``dataset`` (a rasterio dataset or ``ArrayRaster``)."""
    options.check()  # before the input check reads any pixel
    bands = ensemble.plan(dataset.count, dataset.descriptions, source, options.bands, options.input_value_scale)
    nodata = options.nodata if options.nodata is not None else dataset.nodata
    check_input(dataset, ensemble, bands, nodata, options, source)
    tile = ensemble.source_tile(options.tile)
    grid = scene_grid(dataset.height, dataset.width, tile, options.overlap)
    return Layout(bands, grid, blend_weights(tile, options.blend), nodata)


def check_input(
    dataset, ensemble: Ensemble, bands: BandPlan, nodata: float | None, options: PredictOptions, source: str | Path
) -> None:
    """Refuse pixels in other units than the training pixels of any member (unless allowed): another
    scale or encoding, never a narrow range (``io.pixel_stats.input_mismatch``); warn of another resolution."""
    for member, positions in zip(ensemble.members, bands.positions, strict=False):
        if member.card.model.get("zoo"):
            _check_zoo_input(dataset, member, [bands.read[i] for i in positions], nodata, bands, options, source)
        if member.card.input_stats is None:
            continue
        training = PixelStats.from_dict(member.card.input_stats)
        given = sample_input(dataset, [bands.read[i] for i in positions], nodata, bands.value_scale)
        mismatch = input_mismatch(training, given, bands.value_scale)
        if mismatch and not options.allow_input_mismatch:
            raise DataError(
                f"{mismatch.problem} ({member.path.name}); rescale it with --input-scale-values (e.g. "
                f"{mismatch.factor:g}) or predict anyway with --allow-input-mismatch",
                source,
            )
        warning = resolution_warning(training, given)
        if warning:
            warnings.warn(f"{source}: {warning} ({member.path.name})", InputResolutionWarning, stacklevel=2)


def _check_zoo_input(
    dataset, member, read: list[int], nodata: float | None, bands: BandPlan, options: PredictOptions, source: str | Path
) -> None:
    """A zoo model states its sensor and product level instead of training statistics: check those."""
    entry = get_zoo_model(member.card.model["zoo"])
    given = sample_input(dataset, read, nodata, bands.value_scale)
    tags = dataset.tags() if hasattr(dataset, "tags") else {}
    problem = entry.input_problem(tags.get(LEVEL_TAG), max(given.high), given.dtype)
    if problem and not options.allow_input_mismatch:
        raise DataError(f"{problem}; predict anyway with --allow-input-mismatch", source)
    if given.resolution_m is not None and not 0.5 <= given.resolution_m / entry.resolution_m <= 2:
        warnings.warn(
            f"{source}: has {given.resolution_m:g} m pixels, {member.name} reads {entry.resolution_m:g} m: "
            "resample the input, or expect a worse map",
            InputResolutionWarning,
            stacklevel=3,
        )


class InputResolutionWarning(UserWarning):
    """The input's pixels are more than twice as large or small as the training pixels."""


def stream(
    dataset,
    ensemble: Ensemble,
    layout: Layout,
    options: PredictOptions,
    blocks: Sequence[ColumnBlock] | None = None,
    on_tiles: Callable[[int], None] | None = None,
) -> Iterator[Chunk]:
    """Finished chunks of the scene, block by block; ``blocks`` limits the run to some (a Dask task's)."""
    return stream_probabilities(
        dataset,
        ensemble,
        layout.bands,
        layout.grid,
        layout.weights,
        options.batch_size,
        options.block_width,
        layout.nodata,
        on_tiles,
        blocks,
    )


@dataclass
class ArrayPrediction:
    probabilities: np.ndarray
    """``(K, H, W)`` float32 blended probabilities."""
    valid: np.ndarray | None
    """``(H, W)`` bool, False where the input is no-data; None when every pixel is valid."""


def predict_array(
    image: np.ndarray,
    ensemble: Ensemble,
    options: PredictOptions = DEFAULT_OPTIONS,
    nodata: float | None = None,
    descriptions: Sequence[str | None] | None = None,
    source: str | Path = "<in-memory image>",
) -> ArrayPrediction:
    """Probabilities of a ``(C, H, W)`` image in its raw units, exactly as a file of these pixels gets them."""
    raster = ArrayRaster(image, nodata, descriptions)
    layout = lay_out(raster, ensemble, options, source)
    probabilities = np.empty((ensemble.num_classes, raster.height, raster.width), dtype=np.float32)
    valid = None
    for chunk in stream(raster, ensemble, layout, options):
        rows, cols = slice(*chunk.rows), slice(*chunk.cols)
        probabilities[:, rows, cols] = chunk.probabilities
        if chunk.valid is not None:
            if valid is None:
                valid = np.ones((raster.height, raster.width), dtype=bool)
            valid[rows, cols] = chunk.valid
    return ArrayPrediction(probabilities, valid)
