"""Area tables (pixels, share, m², ha per class) from class maps in memory and on disk."""

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.maps.areas import area_table, class_areas, grid_areas, tally_classes

SCHEMA = get_schema("synthetic")
UTM = CRS.from_epsg(32632)
LAEA_EUROPE = CRS.from_epsg(3035)
TEN_METRE_GRID = Affine(10.0, 0.0, 4_300_000.0, 0.0, -10.0, 2_700_000.0)


@pytest.fixture
def index() -> np.ndarray:
    rng = np.random.default_rng(5)
    classes = rng.choice(SCHEMA.num_classes - 1, size=(23, 31)).astype(np.uint8)  # last class absent
    classes[:3, :] = IGNORE_INDEX
    return classes


def test_class_areas_count_pixels_and_metres_on_an_equal_area_grid(index):
    rows = class_areas(index, SCHEMA, TEN_METRE_GRID, LAEA_EUROPE)
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


def test_areas_follow_the_crs_units_and_the_ellipsoid():
    index = np.zeros((4, 5), dtype=np.uint8)
    one_foot = Affine(1.0, 0.0, 1_000_000.0, 0.0, -1.0, 200_000.0)
    feet = class_areas(index, SCHEMA, one_foot, CRS.from_epsg(2263))  # New York Long Island, US survey feet
    # Lambert conformal conic: the nominal square feet, within the projection's scale (under 0.01 % here).
    assert feet[0]["area_m2"] == pytest.approx(20 * (1200 / 3937) ** 2, rel=1e-4)
    geographic = class_areas(index, SCHEMA, Affine(0.001, 0, 8.0, 0, -0.001, 47.0), CRS.from_epsg(4326))
    outline = [(8.0, 47.0), (8.005, 47.0), (8.005, 46.996), (8.0, 46.996)]
    geodesic = abs(pyproj.Geod(ellps="WGS84").polygon_area_perimeter(*zip(*outline, strict=True))[0])
    assert geographic[0]["area_m2"] == pytest.approx(geodesic, rel=1e-6)
    unreferenced = class_areas(index, SCHEMA, Affine.identity(), None)
    assert unreferenced[0]["pixels"] == 20 and unreferenced[0]["area_m2"] is None and unreferenced[0]["area_ha"] is None


def test_rotated_grid_uses_the_true_pixel_area():
    rotated = Affine.translation(4_300_000.0, 2_700_000.0) @ Affine.rotation(30) @ Affine.scale(2.0, -3.0)
    rows = class_areas(np.zeros((2, 2), dtype=np.uint8), SCHEMA, rotated, LAEA_EUROPE)
    assert rows[0]["area_m2"] == pytest.approx(4 * 6.0)


def test_all_no_data_has_zero_shares():
    rows = class_areas(np.full((3, 3), IGNORE_INDEX, dtype=np.uint8), SCHEMA, TEN_METRE_GRID, LAEA_EUROPE)
    assert all(row["pixels"] == 0 and row["share"] == 0.0 for row in rows)


def test_a_tally_read_block_by_block_equals_the_table_in_memory(tmp_path, index):
    grid = Affine(0.0001, 0.0, 8.0, 0.0, -0.0001, 60.0)
    path = tmp_path / "classes.tif"
    profile = dict(driver="GTiff", width=31, height=23, count=1, dtype="uint8", nodata=IGNORE_INDEX)
    with rasterio.open(
        path, "w", crs="EPSG:4326", transform=grid, tiled=True, blockxsize=16, blockysize=16, **profile
    ) as dst:
        dst.write(index, 1)
    tally = tally_classes(path, SCHEMA.num_classes, grid_areas("EPSG:4326", grid))
    streamed = area_table(tally, SCHEMA)
    in_memory = class_areas(index, SCHEMA, grid, CRS.from_epsg(4326))
    for a, b in zip(streamed, in_memory, strict=True):
        assert a["pixels"] == b["pixels"] and a["area_m2"] == pytest.approx(b["area_m2"], rel=1e-12)
    index[0, 0] = SCHEMA.num_classes  # an index the schema lacks is refused, not dropped
    with rasterio.open(path, "w", crs="EPSG:4326", transform=grid, **profile) as dst:
        dst.write(index, 1)
    with pytest.raises(ValueError, match="holds index"):
        area_table(tally_classes(path, SCHEMA.num_classes, None), SCHEMA)
