"""How a scene too large for memory is cut up: a padded tile grid, column blocks, reflected reads.

The scene is thought of as mirrored outwards by a ``margin`` on every side, so pixels at the image edge
sit well inside some tile instead of on a tile border; the tiles then cover that padded scene exactly
(``tiling.tile_origins``: the last tile of a row or column is flush with the padded edge).

Columns are cut into blocks of about ``block_width`` pixels so that every buffer is bounded by the
block, never by the scene width; block borders fall on tile origins, so only the one or few tile
columns straddling a border are predicted twice (a fraction ``(tile - stride) / block_width`` of the
work). Rows are streamed top to bottom inside each block (``streaming.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from landseg.errors import ConfigError
from landseg.predict.tiling import tile_origins, tile_stride

DEFAULT_BLOCK_WIDTH = 8192


@dataclass(frozen=True)
class TileGrid:
    """Tile origins of a scene in scene pixel coordinates; origins above or left of 0 read padding."""

    height: int
    width: int
    tile: int
    stride: int
    margin: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def tile_count(self) -> int:
        return len(self.rows) * len(self.cols)


def default_margin(tile: int, stride: int) -> int:
    """Half the overlap: every image pixel then lies at least this far inside some tile."""
    return (tile - stride) // 2


def scene_grid(height: int, width: int, tile: int, overlap: float, margin: int | None = None) -> TileGrid:
    """The tile grid over the scene padded by ``margin`` (default: half the overlap) on every side."""
    if height < 1 or width < 1:
        raise ConfigError(f"scene must have at least one pixel, got {height} x {width}")
    stride = tile_stride(tile, overlap)
    margin = default_margin(tile, stride) if margin is None else margin
    if not 0 <= margin < tile:
        raise ConfigError(f"edge margin must be in [0, tile), got {margin} for tile {tile}")
    rows = tuple(origin - margin for origin in tile_origins(height + 2 * margin, tile, stride))
    cols = tuple(origin - margin for origin in tile_origins(width + 2 * margin, tile, stride))
    return TileGrid(height, width, tile, stride, margin, rows, cols)


@dataclass(frozen=True)
class ColumnBlock:
    """Output columns ``[start, stop)`` and the origins of every tile column that touches them."""

    start: int
    stop: int
    tile_cols: tuple[int, ...]

    @property
    def read_start(self) -> int:
        return self.tile_cols[0]

    def read_stop(self, tile: int) -> int:
        return self.tile_cols[-1] + tile


def column_blocks(grid: TileGrid, block_width: int = DEFAULT_BLOCK_WIDTH) -> list[ColumnBlock]:
    """Blocks of about ``block_width`` output columns whose borders lie on tile origins."""
    if block_width < 1:
        raise ConfigError(f"block width must be positive, got {block_width}")
    per_block = max(1, block_width // grid.stride)
    borders = sorted({0, grid.width} | {c for c in grid.cols[per_block::per_block] if 0 < c < grid.width})
    blocks = []
    for start, stop in itertools.pairwise(borders):
        touching = tuple(c for c in grid.cols if c < stop and c + grid.tile > start)
        blocks.append(ColumnBlock(start, stop, touching))
    return blocks


def reflect_indices(indices: np.ndarray, length: int) -> np.ndarray:
    """Positions along an axis of ``length`` that mirrored positions read, as ``numpy.pad(mode="reflect")``."""
    if length == 1:
        return np.zeros_like(indices)
    period = 2 * (length - 1)
    folded = np.mod(indices, period)
    return np.where(folded < length, folded, period - folded)


def read_reflected(dataset, bands: list[int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """``(len(bands), h, w)`` pixels of the mirrored scene, in the file's dtype; any window, any size."""
    row_index = reflect_indices(np.arange(*rows), dataset.height)
    col_index = reflect_indices(np.arange(*cols), dataset.width)
    top, left = int(row_index.min()), int(col_index.min())
    window = Window(left, top, int(col_index.max()) + 1 - left, int(row_index.max()) + 1 - top)
    data = dataset.read(bands, window=window)
    if rows[0] >= 0 and rows[1] <= dataset.height and cols[0] >= 0 and cols[1] <= dataset.width:
        return data
    return data[:, (row_index - top)[:, None], (col_index - left)[None, :]]
