"""Train/validation/test split files for the kept chips: seeded ratios or spatial blocks, leak-guarded.

Overlapping chips (a stride below the chip size, or scenes that overlap on the ground) share pixels,
so a chip in validation that overlaps one in training is a leak. Blocked splits send whole spatial
blocks to one split: blocks of N x N chip positions of a scene, or blocks of so many metres over all
scenes. The guard then drops every chip of a later split (in the order of ``ratios``) whose footprint
overlaps a chip of an earlier one; only chips on block borders are lost, and they are listed.

Split files list image paths relative to the output folder, one per line, as ``data.split.files`` of a
training config reads them. Oversampled training chips are listed more than once.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from landseg.classes import ClassSchema
from landseg.data.prepare.config import ChipSplitConfig, OversampleConfig
from landseg.data.prepare.index import ChipRecord
from landseg.errors import ConfigError
from landseg.io.write import atomic_output

SPLITS_FOLDER = "splits"


@dataclass
class SplitResult:
    splits: dict[str, list[str]]
    """Split name to chip names in file order; oversampled training chips appear more than once."""
    blocks: dict[str, int] = field(default_factory=dict)
    guard_dropped: dict[str, list[str]] = field(default_factory=dict)
    oversampled: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "chips": {name: len(set(chips)) for name, chips in self.splits.items()},
            "listed": {name: len(chips) for name, chips in self.splits.items()},
            "blocks": self.blocks,
            "guard_dropped": {name: {"count": len(c), "chips": c} for name, c in self.guard_dropped.items()},
            "oversampled": {"count": len(self.oversampled), "chips": self.oversampled},
        }


def common_bounds(chips: list[ChipRecord]) -> dict[str, tuple[str, tuple[float, float, float, float]]]:
    """Chip name to (namespace, bounds) where chips of one namespace can be compared: georeferenced
    chips in the first chip's CRS, others in their own scene's pixel space."""
    georeferenced = [c for c in chips if c.crs]
    reference = CRS.from_user_input(georeferenced[0].crs) if georeferenced else None
    result = {}
    for chip in chips:
        if not chip.crs:
            result[chip.chip] = (f"scene:{chip.scene}", chip.bounds)
        elif CRS.from_user_input(chip.crs) == reference:
            result[chip.chip] = ("map", chip.bounds)
        else:
            result[chip.chip] = ("map", transform_bounds(CRS.from_user_input(chip.crs), reference, *chip.bounds))
    return result


def block_keys(chips: list[ChipRecord], config: ChipSplitConfig) -> dict[str, tuple]:
    """Chip name to the key of its spatial block (its own name for ratio splits)."""
    if config.method == "ratio":
        return {c.chip: (c.chip,) for c in chips}
    if config.block_metres is not None:
        if any(not c.crs for c in chips):
            raise ConfigError("split.block_metres needs georeferenced chips; use split.block_chips")
        size = config.block_metres
        keys = {}
        for name, (_, (left, bottom, right, top)) in common_bounds(chips).items():
            keys[name] = (math.floor((left + right) / 2 / size), math.floor((bottom + top) / 2 / size))
        return keys
    positions: dict[str, tuple[list[int], list[int]]] = {}
    for scene in {c.scene for c in chips}:
        members = [c for c in chips if c.scene == scene]
        positions[scene] = (sorted({c.row_off for c in members}), sorted({c.col_off for c in members}))
    n = config.block_chips
    if n is None:
        raise ConfigError("split.method blocks needs block_chips or block_metres")
    return {
        c.chip: (c.scene, positions[c.scene][0].index(c.row_off) // n, positions[c.scene][1].index(c.col_off) // n)
        for c in chips
    }


def assign_blocks(keys: dict[str, tuple], ratios: dict[str, float], seed: int) -> dict[str, str]:
    """Chip name to split: blocks shuffled with ``seed``, each to the split whose share of the chip
    count its middle falls in, so splits hold about ``ratios`` of the chips."""
    members: dict[tuple, list[str]] = defaultdict(list)
    for chip, key in keys.items():
        members[key].append(chip)
    order = sorted(members, key=repr)
    random.Random(seed).shuffle(order)
    total, running = len(keys), 0
    edges = np.cumsum(list(ratios.values()))
    names = list(ratios)
    assignment = {}
    for key in order:
        middle = (running + len(members[key]) / 2) / total
        split = names[min(int(np.searchsorted(edges, middle, side="right")), len(names) - 1)]
        for chip in members[key]:
            assignment[chip] = split
        running += len(members[key])
    return assignment


def overlap_guard(chips: list[ChipRecord], assignment: dict[str, str], order: list[str]) -> dict[str, list[str]]:
    """Drop (from ``assignment``) chips overlapping a chip of an earlier split; return them per split."""
    located = common_bounds(chips)
    widths = [b[2] - b[0] for _, b in located.values()] + [b[3] - b[1] for _, b in located.values()]
    cell = max(widths) if widths else 1.0
    tolerance = 1e-6 * min(w for w in widths if w > 0) if any(w > 0 for w in widths) else 0.0
    grid: dict[tuple, list[str]] = defaultdict(list)
    dropped: dict[str, list[str]] = {name: [] for name in order}
    for split in order:
        members = sorted(c.chip for c in chips if assignment.get(c.chip) == split)
        for chip in members:
            space, (left, bottom, right, top) = located[chip]
            for key in _cells(space, left, bottom, right, top, cell):
                if any(_overlap((left, bottom, right, top), located[other][1], tolerance) for other in grid[key]):
                    dropped[split].append(chip)
                    del assignment[chip]
                    break
        for chip in members:  # a split's own chips may overlap each other
            if chip in assignment:
                space, (left, bottom, right, top) = located[chip]
                for key in _cells(space, left, bottom, right, top, cell):
                    grid[key].append(chip)
    return dropped


def _cells(space: str, left: float, bottom: float, right: float, top: float, cell: float):
    for i in range(math.floor(left / cell), math.floor(right / cell) + 1):
        for j in range(math.floor(bottom / cell), math.floor(top / cell) + 1):
            yield (space, i, j)


def _overlap(a, b, tolerance: float) -> bool:
    return a[0] < b[2] - tolerance and b[0] < a[2] - tolerance and a[1] < b[3] - tolerance and b[1] < a[3] - tolerance


def oversample_list(
    chips: list[ChipRecord], config: OversampleConfig, schema: ClassSchema
) -> tuple[list[str], list[str]]:
    """Chip names with each chip rich in a rare class repeated ``factor`` times; and those chips."""
    unknown = [c for c in config.classes if c not in schema.names]
    if unknown:
        raise ConfigError(f"split.oversample.classes: {unknown} not in schema {schema.names}")
    wanted = [schema.names.index(c) for c in config.classes]
    listed, boosted = [], []
    for chip in chips:
        labelled = chip.counts.sum()
        rich = labelled > 0 and (chip.counts[wanted] / labelled >= config.min_fraction).any()
        listed += [chip.chip] * (config.factor if rich else 1)
        if rich:
            boosted.append(chip.chip)
    return listed, boosted


def split_chips(records: list[ChipRecord], config: ChipSplitConfig, schema: ClassSchema) -> SplitResult:
    """Split the kept chips of ``records`` as ``config`` says."""
    chips = [r for r in records if r.kept]
    if not chips:
        raise ConfigError("no chips were kept, nothing to split; loosen the filters")
    keys = block_keys(chips, config)
    assignment = assign_blocks(keys, config.ratios, config.seed)
    order = list(config.ratios)
    guard_dropped = overlap_guard(chips, assignment, order) if config.guard else {}
    by_name = {c.chip: c for c in chips}
    splits = {name: sorted(c for c, s in assignment.items() if s == name) for name in order}
    empty = [name for name in order if config.ratios[name] > 0 and not splits[name]]
    if empty:
        lost = sum(len(guard_dropped.get(name, [])) for name in empty)
        hint = (
            f"; the overlap guard dropped all {lost} of its chips: use blocks several chips wide"
            if lost
            else "; use smaller blocks or another seed"
        )
        raise ConfigError(f"split {empty[0]!r} is empty ({len(chips)} chips in {len(set(keys.values()))} blocks){hint}")
    blocks = {name: len({keys[c] for c in splits[name]}) for name in order}
    result = SplitResult(splits=splits, blocks=blocks, guard_dropped=guard_dropped)
    if config.oversample is not None and "train" in splits:
        result.splits["train"], result.oversampled = oversample_list(
            [by_name[c] for c in splits["train"]], config.oversample, schema
        )
    return result


def write_splits(result: SplitResult, records: list[ChipRecord], out_dir: Path) -> dict[str, Path]:
    """``splits/<name>.txt`` (image paths relative to ``out_dir``) and ``splits/splits.json``."""
    folder = Path(out_dir) / SPLITS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    image_of = {r.chip: r.image for r in records}
    files = {}
    for name, chips in result.splits.items():
        files[name] = folder / f"{name}.txt"
        with atomic_output(files[name]) as temporary:
            temporary.write_text("".join(f"{image_of[c]}\n" for c in chips))
    with atomic_output(folder / "splits.json") as temporary:
        temporary.write_text(json.dumps(result.to_dict(), indent=2))
    return files


def read_split_lists(out_dir: Path, records: list[ChipRecord]) -> dict[str, list[str]]:
    """Split name to chip names, as listed in ``splits/*.txt`` (repeats kept)."""
    chip_of = {r.image: r.chip for r in records if r.image}
    lists = {}
    for path in sorted((Path(out_dir) / SPLITS_FOLDER).glob("*.txt")):
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        unknown = [ln for ln in lines if ln not in chip_of]
        if unknown:
            raise ConfigError(f"lists chips not in the chip index: {unknown[:3]}", path)
        lists[path.stem] = [chip_of[ln] for ln in lines]
    return lists
