import csv
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.io.raster import RasterImage
from landseg.predict import Prediction, class_areas, write_prediction

SCHEMA = get_schema("synthetic")
UTM = CRS.from_epsg(32632)
TEN_METRE_GRID = Affine(10.0, 0.0, 300_000.0, 0.0, -10.0, 5_100_000.0)


@pytest.fixture
def index() -> np.ndarray:
    rng = np.random.default_rng(5)
    classes = rng.choice(SCHEMA.num_classes - 1, size=(23, 31)).astype(np.uint8)  # last class absent
    classes[:3, :] = IGNORE_INDEX
    return classes


def image_for(index: np.ndarray, crs=UTM, transform=TEN_METRE_GRID) -> RasterImage:
    return RasterImage(
        data=np.zeros((3, *index.shape), dtype=np.uint8),
        path=Path("scene.tif"),
        crs=crs,
        transform=transform,
        nodata=None,
    )


def prediction_for(index: np.ndarray) -> Prediction:
    return Prediction(index=index, confidence=np.ones(index.shape, dtype=np.float32))


def test_class_areas_count_pixels_and_metres(index):
    rows = class_areas(index, SCHEMA, TEN_METRE_GRID, UTM)
    assert [row["class"] for row in rows] == SCHEMA.names
    valid = int((index != IGNORE_INDEX).sum())
    assert valid == 20 * 31
    for k, row in enumerate(rows):
        assert row["pixels"] == int((index == k).sum())
        assert row["share"] == pytest.approx(row["pixels"] / valid)
        assert row["area_m2"] == pytest.approx(row["pixels"] * 100.0)
        assert row["area_ha"] == pytest.approx(row["pixels"] * 0.01)
    assert sum(row["pixels"] for row in rows) == valid
    assert sum(row["share"] for row in rows) == pytest.approx(1.0)
    assert rows[-1]["pixels"] == 0 and rows[-1]["area_m2"] == 0.0


def test_areas_follow_the_crs_units():
    index = np.zeros((4, 5), dtype=np.uint8)
    one_foot = Affine(1.0, 0.0, 1_000_000.0, 0.0, -1.0, 200_000.0)
    feet = class_areas(index, SCHEMA, one_foot, CRS.from_epsg(2263))  # New York Long Island, US survey feet
    assert feet[0]["area_m2"] == pytest.approx(20 * (1200 / 3937) ** 2)
    geographic = class_areas(index, SCHEMA, Affine(0.001, 0, 8.0, 0, -0.001, 47.0), CRS.from_epsg(4326))
    unreferenced = class_areas(index, SCHEMA, Affine.identity(), None)
    for rows in (geographic, unreferenced):
        assert rows[0]["pixels"] == 20 and rows[0]["area_m2"] is None and rows[0]["area_ha"] is None


def test_rotated_grid_uses_the_true_pixel_area():
    rotated = Affine.rotation(30) @ Affine.scale(2.0, -3.0)
    rows = class_areas(np.zeros((2, 2), dtype=np.uint8), SCHEMA, rotated, UTM)
    assert rows[0]["area_m2"] == pytest.approx(4 * 6.0)


def test_all_no_data_has_zero_shares():
    rows = class_areas(np.full((3, 3), IGNORE_INDEX, dtype=np.uint8), SCHEMA, TEN_METRE_GRID, UTM)
    assert all(row["pixels"] == 0 and row["share"] == 0.0 for row in rows)


def test_georeferenced_prediction_writes_geotiff_preview_and_areas(tmp_path, index):
    out_dir = tmp_path / "out"
    paths = write_prediction(prediction_for(index), image_for(index), SCHEMA, out_dir, "scene")
    assert paths == {
        "classes": out_dir / "scene_classes.tif",
        "color": out_dir / "scene_color.png",
        "areas": out_dir / "scene_areas.csv",
    }
    assert sorted(os.listdir(out_dir)) == ["scene_areas.csv", "scene_classes.tif", "scene_color.png"]
    with rasterio.open(paths["classes"]) as src:
        assert src.crs == UTM and src.transform == TEN_METRE_GRID and src.nodata == IGNORE_INDEX
        np.testing.assert_array_equal(src.read(1), index)
    with Image.open(paths["color"]) as preview:
        assert preview.size[0] > 0
    with open(paths["areas"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["class"] for row in rows] == SCHEMA.names
    pixels = [int(row["pixels"]) for row in rows]
    assert sum(pixels) == int((index != IGNORE_INDEX).sum())
    for row, count in zip(rows, pixels):
        assert float(row["area_m2"]) == pytest.approx(count * 100.0)
        assert float(row["area_ha"]) == pytest.approx(count / 100.0)
    assert sum(float(row["share"]) for row in rows) == pytest.approx(1.0, abs=1e-5)


def test_plain_photo_gets_a_png_class_map_and_no_areas(tmp_path, index):
    image = image_for(index, crs=None, transform=Affine.identity())
    paths = write_prediction(prediction_for(index), image, SCHEMA, tmp_path, "photo")
    assert paths["classes"] == tmp_path / "photo_classes.png"
    with Image.open(paths["classes"]) as classes:
        np.testing.assert_array_equal(np.asarray(classes), index)
    with open(paths["areas"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["area_m2"] == "" and row["area_ha"] == "" for row in rows)
    assert sum(int(row["pixels"]) for row in rows) == int((index != IGNORE_INDEX).sum())
    assert len(os.listdir(tmp_path)) == 3


def test_mismatched_prediction_is_refused(tmp_path, index):
    with pytest.raises(ValueError, match="pixels"):
        write_prediction(prediction_for(index[:5]), image_for(index), SCHEMA, tmp_path, "scene")
    assert os.listdir(tmp_path) == []
