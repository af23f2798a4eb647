"""Each filter rule on a scene built to break it, and the quarantine of truncated and unreadable files."""

import json
import os

import numpy as np
import rasterio
from rasterio.transform import from_origin

from landseg.classes import get_schema
from landseg.data.prepare.config import FilterConfig, parse_prepare_config
from landseg.data.prepare.filters import ChipFilter
from landseg.data.prepare.index import read_index
from landseg.data.prepare.run import tile

FIELD, FOREST, WATER, ROAD, BUILDING, NODATA = 0, 1, 2, 3, 4, 255
SIZE = 16


def rule_scene(seed=0):
    """64 x 64 px, 16 px chips; row 0 breaks one rule per chip, row 1 is all Field, rows 2-3 are mixed."""
    rng = np.random.default_rng(seed)
    image = rng.integers(1, 256, (3, 64, 64)).astype(np.uint8)
    label = np.full((64, 64), FIELD, np.uint8)
    chip = lambda r, c: (slice(r * SIZE, (r + 1) * SIZE), slice(c * SIZE, (c + 1) * SIZE))  # noqa: E731
    label[chip(0, 0)] = NODATA  # no_label
    label[chip(0, 1)] = FOREST  # blank_image: black image, labelled
    label[0:8, 16:32] = ROAD
    image[(slice(None), *chip(0, 1))] = 0
    label[chip(0, 2)] = NODATA  # low_valid_fraction: 25 % labelled
    label[12:16, 32:48] = ROAD
    label[chip(0, 3)] = WATER  # dominant_class (water only)
    # row 1 stays all Field                                       # top_k_dominant (Field is the most frequent)
    label[32:40, :] = FOREST  # row 2: half Field, half Forest
    label[chip(2, 0)] = FOREST  # all Forest: not a dominance rule's class
    label[48:50, :] = ROAD  # row 3: 87.5 % Field
    return image, label


def config(folder, scenes, **filters):
    return parse_prepare_config(
        {
            "out": str(folder / "out"),
            "schema": "synthetic",
            "input": {"scenes": [{"image": str(i), "label": str(m)} for i, m in scenes]},
            "tiling": {"size": SIZE},
            "filters": {
                "min_valid_fraction": 0.5,
                "max_class_fraction": {"max_fraction": 0.95, "classes": ["Water"]},
                "top_k": {"k": 1, "max_fraction": 0.9},
                **filters,
            },
        }
    )


def test_every_rule_drops_its_chips_and_is_reported(tmp_path, raster_writer):
    image, label = rule_scene()
    raster_writer(tmp_path / "image.tif", image, from_origin(0, 640, 10, 10))
    raster_writer(tmp_path / "label.tif", label, from_origin(0, 640, 10, 10), nodata=NODATA)
    result = tile(config(tmp_path, [(tmp_path / "image.tif", tmp_path / "label.tif")]))
    records = {(r.row_off // SIZE, r.col_off // SIZE): r for r in read_index(result.index)[0]}
    expected = {(0, 0): "no_label", (0, 1): "blank_image", (0, 2): "low_valid_fraction", (0, 3): "dominant_class"}
    expected.update({(1, c): "top_k_dominant" for c in range(4)})
    for position, record in records.items():
        assert record.reason == expected.get(position, ""), position
        assert record.status == ("dropped" if position in expected else "kept")
        assert bool(record.image) == (position not in expected)
    report = json.loads(result.report_path.read_text())
    assert report["candidates"] == 16 and report["kept"] == 8 and report["top_k_classes"] == ["Field"]
    counts = {rule: entry["count"] for rule, entry in report["dropped"].items()}
    assert counts == {
        "no_label": 1,
        "blank_image": 1,
        "cloudy": 0,
        "low_valid_fraction": 1,
        "dominant_class": 1,
        "top_k_dominant": 4,
    }
    assert report["dropped"]["blank_image"]["chips"] == ["image_r00000_c00016"]
    assert len(list((tmp_path / "out" / "images").iterdir())) == 8


def test_switching_rules_off_keeps_those_chips(tmp_path, raster_writer):
    image, label = rule_scene()
    raster_writer(tmp_path / "image.tif", image, from_origin(0, 640, 10, 10))
    raster_writer(tmp_path / "label.tif", label, from_origin(0, 640, 10, 10), nodata=NODATA)
    loose = config(
        tmp_path,
        [(tmp_path / "image.tif", tmp_path / "label.tif")],
        drop_blank_images=False,
        min_valid_fraction=0.0,
        max_class_fraction=None,
        top_k=None,
    )
    report = tile(loose).report.to_dict()
    assert report["kept"] == 15 and report["dropped"]["no_label"]["count"] == 1


def test_top_k_ranks_classes_over_all_chips_and_breaks_ties_by_index():
    schema = get_schema("synthetic")
    rules = ChipFilter.from_config(FilterConfig(top_k={"k": 2, "max_fraction": 0.6}), schema)
    rules = rules.with_class_totals(np.array([5, 9, 5, 1, 0]))
    assert rules.frequent_classes == (0, 1)
    assert rules.rejection(np.array([7, 3, 0, 0, 0]), 1.0, False) == "top_k_dominant"
    assert rules.rejection(np.array([3, 3, 4, 0, 0]), 1.0, False) is None
    assert rules.rejection(np.array([0, 0, 7, 3, 0]), 1.0, False) is None  # Water dominates, but is not top-2


def test_truncated_and_unreadable_files_are_quarantined_and_the_run_goes_on(tmp_path, raster_writer):
    image, label = rule_scene()
    transform = from_origin(0, 640, 10, 10)
    raster_writer(tmp_path / "good.tif", image, transform, block=16)
    raster_writer(tmp_path / "label.tif", label, transform, nodata=NODATA)
    raster_writer(tmp_path / "cut.tif", image, transform, block=16)
    with open(tmp_path / "cut.tif", "r+b") as handle:
        handle.truncate(os.path.getsize(tmp_path / "cut.tif") // 2)  # the header survives, later tiles do not
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\x17" * 100)
    scenes = [(tmp_path / name, tmp_path / "label.tif") for name in ("good.tif", "cut.tif", "junk.tif")]
    result = tile(config(tmp_path, scenes))
    records, _ = read_index(result.index)
    by_scene = {name: [r for r in records if r.scene == name] for name in ("good", "cut", "junk")}
    assert [r.status for r in by_scene["good"]].count("kept") == 8
    cut_statuses = [r.status for r in by_scene["cut"]]
    assert "quarantined" in cut_statuses and cut_statuses[0] != "quarantined"  # early tiles still readable
    assert by_scene["junk"] == []
    quarantined = json.loads(result.report_path.read_text())["quarantined"]["items"]
    junk = [q for q in quarantined if q["source"].endswith("junk.tif")]
    assert len(junk) == 1 and junk[0]["chip"] == "" and "not a readable raster" in junk[0]["error"]
    cut = [q for q in quarantined if q["source"].endswith("cut.tif")]
    assert len(cut) == cut_statuses.count("quarantined") and all("cannot read window" in q["error"] for q in cut)
    assert all(r.reason for r in by_scene["cut"] if r.status == "quarantined")
    with rasterio.open(tmp_path / "out" / by_scene["good"][-1].image) as chip:
        assert chip.count == 3
