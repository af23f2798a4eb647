"""``landseg prepare`` on the real samples in ../shared/datasets (skipped where the folder is absent)."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from landseg.classes import IGNORE_INDEX
from landseg.data.prepare import band_statistics, parse_prepare_config, prepare_all, read_index
from landseg.data.prepare.config import load_prepare_config

pytestmark = pytest.mark.shared_data
REPO = Path(__file__).resolve().parents[3]


def test_sen1floods11_int16_epsg4326_with_minus_one_nodata(shared_datasets, tmp_path):
    folder = shared_datasets / "samples" / "sen1floods11"
    config = parse_prepare_config(
        {
            "out": str(tmp_path / "out"),
            "schema": {
                "name": "floods",
                "classes": [
                    {"name": "Land", "color": "#A0A0A0", "code": 0},
                    {"name": "Water", "color": "#1F77B4", "code": 1},
                ],
            },
            "input": {
                "scenes": [
                    {
                        "image": str(folder / "Spain_7370579_S2Hand.tif"),
                        "label": str(folder / "Spain_7370579_LabelHand.tif"),
                    }
                ],
                "bands": ["B4", "B3", "B2"],
                "label_nodata": -1,
            },
            "tiling": {"size": 256},
            "filters": {"drop_unlabelled": False, "drop_blank_images": False},
            "split": {"method": "ratio", "ratios": {"train": 0.5, "val": 0.5}},
            "stats": {"plot": False},
        }
    )
    prepare_all(config)
    records, _ = read_index(tmp_path / "out" / "chips.csv")
    raw = rasterio.open(folder / "Spain_7370579_LabelHand.tif").read(1)
    assert len(records) == 4 and all(r.crs == "EPSG:4326" for r in records)
    assert sum(int(r.counts.sum()) for r in records) == int((raw >= 0).sum())
    for r in records:
        with rasterio.open(tmp_path / "out" / r.image) as chip:
            assert chip.dtypes[0] == "int16" and chip.descriptions == ("B4", "B3", "B2")
        mask = rasterio.open(tmp_path / "out" / r.mask).read(1)
        window = raw[r.row_off : r.row_off + 256, r.col_off : r.col_off + 256]
        assert np.array_equal(mask == IGNORE_INDEX, window == -1)


def test_chesapeake_float_landsat_to_percentile_scaled_png(shared_datasets, tmp_path):
    folder = shared_datasets / "samples" / "chesapeake"
    config = parse_prepare_config(
        {
            "out": str(tmp_path / "out"),
            "schema": {
                "name": "cc",
                "classes": [
                    {"name": n, "color": c, "code": i + 1}
                    for i, (n, c) in enumerate(
                        [
                            ("Water", "#0000FF"),
                            ("Tree", "#008000"),
                            ("Low vegetation", "#80FF80"),
                            ("Barren", "#806060"),
                            ("Impervious", "#808080"),
                            ("Impervious road", "#000000"),
                        ]
                    )
                ],
            },
            "input": {
                "scenes": [
                    {
                        "image": str(folder / "m_3907833_nw_17_1_landsat-leaf-on.tif"),
                        "label": str(folder / "m_3907833_nw_17_1_lc.tif"),
                    }
                ],
                "bands": [4, 3, 2],
            },
            "tiling": {
                "size": 130,
                "format": "png",
                "dtype": "uint8",
                "scale": {"method": "percentile", "low": 1, "high": 99},
            },
            "split": {"method": "ratio", "ratios": {"train": 0.75, "val": 0.25}},
            "stats": {"plot": False},
        }
    )
    prepare_all(config)
    records, _ = read_index(tmp_path / "out" / "chips.csv")
    kept = [r for r in records if r.kept]
    assert len(records) == 4 and kept
    rgb = np.asarray(Image.open(tmp_path / "out" / kept[0].image))
    assert rgb.dtype == np.uint8 and rgb.shape == (130, 130, 3) and rgb.min() >= 1 and rgb.std() > 5


def test_sen12ms_thirteen_band_uint16_statistics_are_exact(shared_datasets):
    path = shared_datasets / "samples" / "sen12ms" / "ROIs1970_fall_s2_4_p30.tif"
    stats = band_statistics([path], block=100)
    data = rasterio.open(path).read().reshape(13, -1).astype(np.float64)
    np.testing.assert_allclose(stats.mean, data.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(stats.std, data.std(axis=1), rtol=1e-12)


def test_s2_korea_config_splits_overlapping_chips_without_leaks(shared_datasets, tmp_path):
    config = load_prepare_config(
        REPO / "configs" / "s2_korea_prepare.yaml",
        [
            f"out={tmp_path / 'out'}",
            "input.images=images/202309_patchN_1{id}.tif",
            "input.labels=labels/202309_mask_1{id}.tif",
            "stats.plot=false",
        ],
    )
    config.input.root = shared_datasets / "s2_korea"
    prepare_all(config)
    records = {r.chip: r for r in read_index(tmp_path / "out" / "chips.csv")[0]}
    splits = {name: set((tmp_path / "out" / "splits" / f"{name}.txt").read_text().split()) for name in ("train", "val")}
    chip_of = {r.image: r for r in records.values() if r.image}
    train, val = ([chip_of[p] for p in splits[n]] for n in ("train", "val"))

    def overlap(a, b):
        return a.left < b.right and b.left < a.right and a.bottom < b.top and b.bottom < a.top

    kept = [r for r in records.values() if r.kept]
    assert any(overlap(a, b) for a, b in itertools.combinations(kept, 2) if a.scene != b.scene)  # real overlaps
    assert train and val and not any(overlap(a, b) for a in train for b in val)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["bands"]["pixels"] == 256 * 256 * len(train) and len(stats["normalization"]["mean"]) == 3
