"""Blended class probabilities of a whole scene, streamed block by block from a raster on disk.

Inside a column block (``blocks.py``) tiles are taken row by row. A rolling band of ``tile`` rows holds
the weighted probability sums; once every tile of a tile row has been added, the rows above the next
tile row can receive nothing more, so they are divided by their weight sums, handed out as a ``Chunk``,
and the band rolls down. The input is read the same way: each tile row reads only the rows the
previous one did not. Tiles are batched across tile-row borders; results are added in tile order.
The network runs one batch ahead on a worker thread, so reading, blending and writing overlap with it.

Peak memory is a few ``bands x tile x block_width`` and ``classes x tile x block_width`` buffers plus
two batches, whatever the scene size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from landseg.io.raster import _valid_mask as valid_pixels
from landseg.predict.blocks import ColumnBlock, TileGrid, column_blocks, read_reflected
from landseg.predict.ensemble import BandPlan, Ensemble


@dataclass
class Chunk:
    """Finished probabilities for scene rows ``[rows[0], rows[1])`` and columns ``[cols[0], cols[1])``."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    probabilities: np.ndarray
    """``(K, h, w)`` float32, summing to one over classes."""
    valid: np.ndarray | None
    """``(h, w)`` bool, False where the input is no-data; None when every pixel is valid."""

    def classes(self, nodata: int) -> np.ndarray:
        """``(h, w)`` uint8 class indices, ``nodata`` where the input is no-data."""
        index = most_likely_class(self.probabilities)
        if self.valid is not None:
            index[~self.valid] = nodata
        return index


def most_likely_class(probabilities: np.ndarray) -> np.ndarray:
    """``probabilities.argmax(axis=0)`` as uint8 (ties to the lower class, as argmax); schemas hold at most
    254 classes.

    A class at a time: numpy's argmax over the first axis of a ``(K, h, w)`` array strides across memory;
    this is 1.34x faster on a 5 x 256 x 8448 chunk (BENCHMARKS.md §3)."""
    if probabilities.shape[0] > 255:
        raise ValueError(f"{probabilities.shape[0]} classes do not fit uint8 class indices")
    best = probabilities[0].copy()
    index = np.zeros(best.shape, dtype=np.uint8)
    better = np.empty(best.shape, dtype=bool)
    for k in range(1, probabilities.shape[0]):
        np.greater(probabilities[k], best, out=better)
        np.copyto(index, k, where=better)
        np.maximum(best, probabilities[k], out=best)
    return index


class RollingBlend:
    """Weighted probability sums over ``tile`` rows of a block, rolling down as rows finish."""

    def __init__(self, num_classes: int, weights: np.ndarray, top: int, left: int, width: int):
        tile = weights.shape[0]
        self.weights = weights
        self.top = top
        self.left = left
        self.sums = np.zeros((num_classes, tile, width), dtype=np.float32)
        self.weight_sums = np.zeros((tile, width), dtype=np.float32)

    def add(self, row: int, col: int, probabilities: np.ndarray) -> None:
        """Add a ``(K, tile, tile)`` tile at scene position ``(row, col)``; consumes ``probabilities``."""
        tile = self.weights.shape[0]
        if row != self.top:
            raise RuntimeError(f"tile at row {row} added while the band starts at row {self.top}")
        c = col - self.left
        np.multiply(probabilities, self.weights, out=probabilities)
        self.sums[:, :, c : c + tile] += probabilities
        self.weight_sums[:, c : c + tile] += self.weights

    def release(self, until: int) -> np.ndarray:
        """Blended ``(K, until - top, width)`` probabilities of the finished rows; the band rolls down."""
        done = until - self.top
        tile = self.weight_sums.shape[0]
        if not 0 < done <= tile:
            raise RuntimeError(f"cannot release {done} rows of a {tile}-row band")
        finished = self.sums[:, :done] / self.weight_sums[:done]
        self.sums[:, : tile - done] = self.sums[:, done:]
        self.sums[:, tile - done :] = 0.0
        self.weight_sums[: tile - done] = self.weight_sums[done:]
        self.weight_sums[tile - done :] = 0.0
        self.top = until
        return finished


@dataclass
class _Tile:
    row: int
    col: int
    pixels: np.ndarray | None
    """None once taken into a batch, so the tile no longer holds the memory while it waits."""
    probabilities: np.ndarray | None = None

    def take_pixels(self) -> np.ndarray:
        if self.pixels is None:
            raise RuntimeError(f"the pixels of tile ({self.row}, {self.col}) were already taken")
        pixels, self.pixels = self.pixels, None
        return pixels


@dataclass
class _RowEnd:
    until: int
    """Scene rows above this are finished once every earlier tile is added."""
    valid: np.ndarray | None


def _block_items(
    dataset, read: list[int], grid: TileGrid, block: ColumnBlock, nodata: float | None
) -> Iterator[_Tile | _RowEnd]:
    """The block's tiles in row order, each tile row followed by the rows it finishes."""
    tile = grid.tile
    left, right = block.read_start, block.read_stop(tile)
    pixels: np.ndarray | None = None
    top: int | None = None
    for i, row in enumerate(grid.rows):
        if pixels is None or top is None or row >= top + tile:
            pixels = read_reflected(dataset, read, (row, row + tile), (left, right))
        else:
            fresh = read_reflected(dataset, read, (top + tile, row + tile), (left, right))
            pixels = np.concatenate([pixels[:, row - top :], fresh], axis=1)
        top = row
        for col in block.tile_cols:
            yield _Tile(row, col, pixels[:, :, col - left : col - left + tile])
        until = grid.rows[i + 1] if i + 1 < len(grid.rows) else row + tile
        first, last = max(row, 0), min(until, grid.height)
        valid = None
        if first < last:
            window = pixels[:, first - row : last - row, block.start - left : block.stop - left]
            valid = valid_pixels(window, nodata)
        yield _RowEnd(until, valid)


def stream_probabilities(
    dataset,
    ensemble: Ensemble,
    plan: BandPlan,
    grid: TileGrid,
    weights: np.ndarray,
    batch_size: int = 2,
    block_width: int | None = None,
    nodata: float | None = None,
    on_tiles: Callable[[int], None] | None = None,
    blocks: Sequence[ColumnBlock] | None = None,
) -> Iterator[Chunk]:
    """Finished chunks of the scene in ``dataset`` (an open rasterio dataset), block by block.

    ``weights`` are the ``(tile, tile)`` blend weights; ``on_tiles(n)`` is told of every batch run.
    ``blocks`` limits the run to some of ``column_blocks(grid, block_width)`` (a worker's share).
    The network runs on a worker thread, one batch ahead: reading, blending and writing the previous
    batch's rows overlap with the forward pass instead of waiting for it.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if blocks is None:
        blocks = column_blocks(grid) if block_width is None else column_blocks(grid, block_width)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="landseg-forward") as forward:
        for block in blocks:
            yield from _stream_block(
                dataset, ensemble, plan, grid, block, weights, batch_size, nodata, on_tiles, forward
            )


def _stream_block(dataset, ensemble, plan, grid, block, weights, batch_size, nodata, on_tiles, forward):
    left = block.read_start
    blend = RollingBlend(ensemble.num_classes, weights, grid.rows[0], left, block.read_stop(grid.tile) - left)
    queue: deque[_Tile | _RowEnd] = deque()
    waiting: list[_Tile] = []
    in_flight: list[tuple[list[_Tile], Future]] = []

    def submit(tiles: list[_Tile]) -> None:
        batch = np.stack([t.take_pixels() for t in tiles])
        in_flight.append((tiles, forward.submit(ensemble.predict, batch, plan)))

    def collect() -> None:
        tiles, future = in_flight.pop(0)
        for tile_item, tile_probabilities in zip(tiles, future.result(), strict=False):
            tile_item.probabilities = tile_probabilities
        if on_tiles is not None:
            on_tiles(len(tiles))

    def drain() -> Iterator[Chunk]:
        while queue:
            item = queue[0]
            if isinstance(item, _Tile):
                if item.probabilities is None:  # its batch is still running
                    return
                queue.popleft()
                blend.add(item.row, item.col, item.probabilities)
                continue
            queue.popleft()
            top = blend.top
            finished = ensemble.calibrate(blend.release(item.until))
            first, last = max(top, 0), min(item.until, grid.height)
            if first < last:
                yield Chunk(
                    (first, last),
                    (block.start, block.stop),
                    finished[:, first - top : last - top, block.start - left : block.stop - left],
                    item.valid,
                )

    for item in _block_items(dataset, plan.read, grid, block, nodata):
        queue.append(item)
        if isinstance(item, _Tile):
            waiting.append(item)
            if len(waiting) == batch_size:
                submit(waiting)
                waiting = []
                if len(in_flight) > 1:
                    collect()
                    yield from drain()
    if waiting:
        submit(waiting)
    while in_flight:
        collect()
        yield from drain()
