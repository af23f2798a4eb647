import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.predict import class_areas

SCHEMA = get_schema("synthetic")
UTM = CRS.from_epsg(32632)
TEN_METRE_GRID = Affine(10.0, 0.0, 300_000.0, 0.0, -10.0, 5_100_000.0)


@pytest.fixture
def index() -> np.ndarray:
    rng = np.random.default_rng(5)
    classes = rng.choice(SCHEMA.num_classes - 1, size=(23, 31)).astype(np.uint8)  # last class absent
    classes[:3, :] = IGNORE_INDEX
    return classes


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
