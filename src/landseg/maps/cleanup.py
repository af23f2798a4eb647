"""Minimum mapping unit: regions smaller than ``min_area`` pixels take their surroundings' majority class.

A region is a 4-connected set of pixels of one class. A small region takes the class of the large
regions (``min_area`` pixels or more) that most of its border is shared with, counted over neighbouring
pixel pairs, ties to the lower class index; no-data never votes and never changes. All regions of a
round are decided at once, so the result does not depend on any scan order; a small region touching
only other small regions waits for a later round, by when the large regions have grown up to it.
Rounds repeat until nothing changes. A group of small regions that touches no large region at all (an
image smaller than ``min_area``, an island in no-data) is left as it is.

The map is processed in blocks, twice, so it never has to be in memory. The first pass labels each
block's regions (``scipy.ndimage.label``) and records their sizes, their neighbours' votes and, from the
one-pixel seams between blocks, which pieces in different blocks are one region; the pieces are joined
with ``scipy.sparse.csgraph.connected_components``. The second pass labels each block again and
rewrites the small regions. Memory grows with the number of regions, not with the map.

Why not ``rasterio.features.sieve`` (GDAL's sieve filter): it needs the whole raster in one array (or
one GDAL band, read whole by its algorithm), where this streams any map in blocks; and it merges a small
region into its largest neighbour, where this takes the majority vote of the border the region shares
with large regions, independent of scan order, never letting no-data vote. Small maps that fit in memory
could use sieve, but the two rules give different maps, and one rule for every map size keeps a
prediction the same whether it ran whole, in blocks or on Dask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

from landseg.classes import IGNORE_INDEX
from landseg.errors import ConfigError
from landseg.io.georef import open_without_grid_warning

DEFAULT_BLOCK = 1024
# Each round lets the large regions grow by one small region; real maps settle in two or three.
MAX_ROUNDS = 50
KEEP = np.uint8(IGNORE_INDEX)
ReadBlock = Callable[[int, int, int, int], np.ndarray]
"""``read(row0, row1, col0, col1)`` returns that ``(h, w)`` uint8 window of the class map."""
WriteBlock = Callable[[np.ndarray, int, int], None]
"""``write(block, row0, col0)`` stores a rewritten window."""


def label_class_regions(index: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, region_class)``: the 4-connected regions of each class numbered 1..n across all classes
    (0 on no-data and on indices of ``num_classes`` or more), and the class of each region 0..n-1."""
    labels = np.zeros(index.shape, dtype=np.int32)
    classes = []
    count = 0
    for value in range(num_classes):
        mask = index == value
        if not mask.any():
            continue
        found, n = ndimage.label(mask)
        labels[mask] = found[mask] + count
        classes.append(np.full(n, value, dtype=np.uint8))
        count += n
    region_class = np.concatenate(classes) if classes else np.zeros(0, dtype=np.uint8)
    return labels, region_class


def _neighbour_pairs(a_ids, a_classes, b_ids, b_classes):
    """Neighbouring pixel pairs of different classes as (region, neighbouring region), both ways."""
    differ = (a_classes != b_classes) & (a_classes != IGNORE_INDEX) & (b_classes != IGNORE_INDEX)
    return np.concatenate([a_ids[differ], b_ids[differ]]), np.concatenate([b_ids[differ], a_ids[differ]])


@dataclass
class _Census:
    """What the first pass learns: region sizes, votes and cross-seam links, by global region id."""

    num_classes: int
    offsets: dict = field(default_factory=dict)
    sizes: list = field(default_factory=list)
    region_class: list = field(default_factory=list)
    voters: list = field(default_factory=list)
    neighbours: list = field(default_factory=list)
    links: list = field(default_factory=list)
    total: int = 0

    def add_block(self, key, labels: np.ndarray, region_class: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Register a labelled block; returns its global ids (-1 on no-data)."""
        n = len(region_class)
        self.offsets[key] = self.total
        global_ids = np.where(labels > 0, labels.astype(np.int64) - 1 + self.total, -1)
        self.sizes.append(np.bincount(labels.ravel(), minlength=n + 1)[1:])
        self.region_class.append(region_class)
        self.total += n
        for a, b in ((np.s_[:, :-1], np.s_[:, 1:]), (np.s_[:-1, :], np.s_[1:, :])):
            self.add_seam(global_ids[a], index[a], global_ids[b], index[b])
        return global_ids

    def add_seam(self, a_ids, a_classes, b_ids, b_classes) -> None:
        regions, neighbours = _neighbour_pairs(a_ids, a_classes, b_ids, b_classes)
        self.voters.append(regions)
        self.neighbours.append(neighbours)
        same = (a_classes == b_classes) & (a_classes != IGNORE_INDEX)
        if same.any():
            self.links.append(np.stack([a_ids[same], b_ids[same]]))

    def replacements(self, min_area: int) -> np.ndarray:
        """New class per global region id, ``KEEP`` where the region stays as it is."""
        n = self.total
        if n == 0:
            return np.zeros(0, dtype=np.uint8)
        links = np.concatenate(self.links, axis=1) if self.links else np.zeros((2, 0), dtype=np.int64)
        graph = sparse.coo_matrix((np.ones(links.shape[1], dtype=np.int8), (links[0], links[1])), shape=(n, n))
        _, roots = connected_components(graph, directed=False)
        sizes = np.bincount(roots, weights=np.concatenate(self.sizes), minlength=roots.max() + 1)
        large = sizes >= min_area
        region_class = np.concatenate(self.region_class)
        regions = roots[np.concatenate(self.voters)]
        neighbours = np.concatenate(self.neighbours)
        votes_from_large = large[roots[neighbours]]
        k = self.num_classes
        ballots = regions[votes_from_large] * k + region_class[neighbours[votes_from_large]]
        votes = np.bincount(ballots, minlength=(roots.max() + 1) * k).reshape(-1, k)
        decided = np.where(~large & (votes.sum(axis=1) > 0), votes.argmax(axis=1), KEEP).astype(np.uint8)
        return decided[roots]


def _block_origins(height: int, width: int, block: int):
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield row, col, min(row + block, height), min(col + block, width)


def small_regions_round(
    read: ReadBlock,
    write: WriteBlock,
    height: int,
    width: int,
    num_classes: int,
    min_area: int,
    block: int = DEFAULT_BLOCK,
) -> int:
    """One round over a class map held anywhere (file, array), block by block; returns pixels changed."""
    if min_area < 1:
        raise ConfigError(f"minimum area must be a positive number of pixels, got {min_area}")
    census = _Census(num_classes)
    # The last row of the blocks above and the last column of the block to the left, for the seams.
    bottom_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    right_column: tuple[np.ndarray, np.ndarray] | None = None
    for row, col, row_end, col_end in _block_origins(height, width, block):
        index = read(row, row_end, col, col_end)
        labels, region_class = label_class_regions(index, num_classes)
        ids = census.add_block((row, col), labels, region_class, index)
        if col > 0 and right_column is not None:
            census.add_seam(*right_column, ids[:, 0], index[:, 0])
        if row > 0:
            census.add_seam(*bottom_rows[col], ids[0], index[0])
        right_column = (ids[:, -1], index[:, -1])
        bottom_rows[col] = (ids[-1], index[-1])
    new_class = census.replacements(min_area)
    changed = 0
    for row, col, row_end, col_end in _block_origins(height, width, block):
        index = read(row, row_end, col, col_end)
        labels, _ = label_class_regions(index, num_classes)
        decided = np.where(labels > 0, labels.astype(np.int64) - 1 + census.offsets[(row, col)], 0)
        replacement = np.where(labels > 0, new_class[decided] if len(new_class) else KEEP, KEEP)
        rewrite = replacement != KEEP
        changed += int((rewrite & (replacement != index)).sum())
        write(np.where(rewrite, replacement, index).astype(np.uint8), row, col)
    return changed


def remove_small_regions(index: np.ndarray, num_classes: int, min_area: int, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """The in-memory form of ``remove_small_regions_raster``: a new ``(H, W)`` uint8 class map."""
    current = index
    for _ in range(MAX_ROUNDS):
        current, changed = _round_in_memory(current, num_classes, min_area, block)
        if not changed:
            break
    return current


def _round_in_memory(source: np.ndarray, num_classes: int, min_area: int, block: int) -> tuple[np.ndarray, int]:
    result = np.empty_like(source)

    def read(row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        return source[row0:row1, col0:col1]

    def write(data: np.ndarray, row: int, col: int) -> None:
        result[row : row + data.shape[0], col : col + data.shape[1]] = data

    changed = small_regions_round(read, write, source.shape[0], source.shape[1], num_classes, min_area, block)
    return result, changed


def remove_small_regions_raster(
    first: Path, second: Path, num_classes: int, min_area: int, block: int = DEFAULT_BLOCK
) -> Path:
    """Filter band 1 of the class raster ``first``, using ``second`` (same grid) as the other buffer.

    Rounds read one file and write the other; returns whichever holds the final map.
    """
    source, target = Path(first), Path(second)
    for _ in range(MAX_ROUNDS):
        with open_without_grid_warning(source) as reader, open_without_grid_warning(target, "r+") as writer:

            def read(row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
                return reader.read(1, window=Window(col0, row0, col1 - col0, row1 - row0))

            def write(data: np.ndarray, row: int, col: int) -> None:
                writer.write(data, 1, window=Window(col, row, data.shape[1], data.shape[0]))

            changed = small_regions_round(read, write, reader.height, reader.width, num_classes, min_area, block)
        source, target = target, source
        if not changed:
            break
    return source
