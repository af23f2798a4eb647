"""Seeded ratio splits, spatially blocked splits without leakage, oversampling, and the split files."""

import itertools

import numpy as np
import pytest
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import bounds as window_bounds

from landseg.classes import get_schema
from landseg.data.prepare.config import ChipSplitConfig
from landseg.data.prepare.index import ChipRecord
from landseg.data.prepare.split import read_split_lists, split_chips, write_splits
from landseg.data.prepare.tiling import chip_windows

SCHEMA = get_schema("synthetic")


def scene_records(scene, width, height, size, stride, transform, crs="EPSG:32632", counts=None):
    records = []
    for i, w in enumerate(chip_windows(width, height, size, stride)):
        left, bottom, right, top = window_bounds(w, transform)
        records.append(
            ChipRecord(
                chip=f"{scene}_{i:04d}",
                scene=scene,
                source_image="",
                source_label="",
                col_off=int(w.col_off),
                row_off=int(w.row_off),
                width=size,
                height=size,
                crs=crs,
                left=left,
                bottom=bottom,
                right=right,
                top=top,
                valid_fraction=1.0,
                ignored=0,
                status="kept",
                reason="",
                image=f"images/{scene}_{i:04d}.tif",
                mask=f"masks/{scene}_{i:04d}.tif",
                counts=np.array(counts(i) if counts else [100, 0, 0, 0, 0]),
            )
        )
    return records


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def leaks(records, splits):
    """Pairs of chips in different splits whose footprints (in EPSG:32632) share area."""
    where = {c: name for name, chips in splits.items() for c in chips}
    boxes = {
        r.chip: r.bounds if r.crs == "EPSG:32632" else transform_bounds(r.crs, "EPSG:32632", *r.bounds) for r in records
    }
    pairs = itertools.combinations(where, 2)
    return [(a, b) for a, b in pairs if where[a] != where[b] and overlaps(boxes[a], boxes[b])]


def test_seeded_ratio_split_of_separate_chips():
    records = scene_records("s", 320, 320, 32, 32, from_origin(0, 3200, 10, 10))
    config = ChipSplitConfig(method="ratio", ratios={"train": 0.6, "val": 0.3, "test": 0.1}, seed=3)
    first = split_chips(records, config, SCHEMA)
    assert {k: len(v) for k, v in first.splits.items()} == {"train": 60, "val": 30, "test": 10}
    assert sorted(itertools.chain(*first.splits.values())) == sorted(r.chip for r in records)
    assert split_chips(records, config, SCHEMA).splits == first.splits
    other = split_chips(records, config.model_copy(update={"seed": 4}), SCHEMA)
    assert other.splits != first.splits
    assert not leaks(records, first.splits) and not any(first.guard_dropped.values())


def test_blocked_split_of_overlapping_chips_never_straddles_train_and_validation():
    records = scene_records("s", 400, 400, 40, 20, from_origin(0, 4000, 10, 10))  # 50 % overlap
    unguarded = split_chips(
        records, ChipSplitConfig(method="blocks", block_chips=3, guard=False, ratios={"train": 0.8, "val": 0.2}), SCHEMA
    )
    assert leaks(records, unguarded.splits)  # blocks alone share border pixels
    result = split_chips(
        records, ChipSplitConfig(method="blocks", block_chips=3, ratios={"train": 0.8, "val": 0.2}), SCHEMA
    )
    assert not leaks(records, result.splits)
    assert result.guard_dropped["train"] == [] and 0 < len(result.guard_dropped["val"]) < len(unguarded.splits["val"])
    assert result.blocks["train"] + result.blocks["val"] == 49  # 19 positions per axis in blocks of 3
    assert 0.6 < len(result.splits["train"]) / len(records) < 0.9


def test_blocks_in_metres_across_overlapping_scenes_in_two_crs():
    a = scene_records("a", 300, 300, 30, 30, from_origin(500000, 5000000, 10, 10))
    # Scene b overlaps a's eastern half on the ground, in the neighbouring UTM zone's coordinates.
    left, _bottom, _right, top = transform_bounds("EPSG:32632", "EPSG:32633", 501500, 4997000, 504500, 5000000)
    b = scene_records("b", 300, 300, 30, 30, from_origin(left, top, 10, 10), crs="EPSG:32633")
    records = a + b
    result = split_chips(
        records, ChipSplitConfig(method="blocks", block_metres=600, ratios={"train": 0.7, "val": 0.3}, seed=1), SCHEMA
    )
    assert not leaks(records, result.splits)
    assert result.splits["val"] and result.guard_dropped["val"]
    unguarded = split_chips(
        records,
        ChipSplitConfig(method="blocks", block_metres=600, guard=False, ratios={"train": 0.7, "val": 0.3}, seed=1),
        SCHEMA,
    )
    assert leaks(records, unguarded.splits)


def test_oversampling_lists_rare_class_chips_more_often_in_train_only(tmp_path):
    records = scene_records(
        "s",
        200,
        200,
        20,
        20,
        from_origin(0, 2000, 10, 10),
        counts=lambda i: [380, 0, 0, 20, 0] if i % 5 == 0 else [400, 0, 0, 0, 0],
    )
    config = ChipSplitConfig(
        method="ratio",
        ratios={"train": 0.8, "val": 0.2},
        oversample={"classes": ["Road"], "min_fraction": 0.04, "factor": 3},
    )
    result = split_chips(records, config, SCHEMA)
    rich = {r.chip for r in records if r.counts[3] > 0}
    train = result.splits["train"]
    assert set(result.oversampled) == rich & set(train)
    assert all(train.count(c) == (3 if c in rich else 1) for c in set(train))
    assert all(result.splits["val"].count(c) == 1 for c in result.splits["val"])
    write_splits(result, records, tmp_path)
    lists = read_split_lists(tmp_path, records)
    assert lists["train"] == train and (tmp_path / "splits" / "splits.json").is_file()
    assert (tmp_path / "splits" / "train.txt").read_text().splitlines()[0].startswith("images/s_")


def test_a_split_emptied_by_the_guard_is_an_error():
    from landseg.errors import ConfigError

    records = scene_records("s", 200, 200, 40, 20, from_origin(0, 2000, 10, 10))
    config = ChipSplitConfig(method="blocks", block_chips=1, ratios={"train": 0.9, "val": 0.1})
    with pytest.raises(ConfigError, match="guard dropped all"):
        split_chips(records, config, SCHEMA)


def test_blocks_need_a_block_size():
    with pytest.raises(ValueError, match="block_chips or block_metres"):
        ChipSplitConfig(method="blocks")
