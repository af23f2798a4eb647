"""Label alignment against brute-force references: mode and nearest, windows, CRS and resolution."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform, transform_bounds

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.data.prepare.align import align_labels, resample_image
from landseg.errors import DataError

SCHEMA = get_schema("s2_korea")  # codes 10 30 50 70 100 -> indices 0..4
CODES = np.array([10, 30, 50, 70, 100], dtype=np.uint8)
LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LUT[CODES] = np.arange(5)
NODATA = 0


def brute_force_mode(index: np.ndarray, factor: int) -> list[list[set]]:
    """Per output pixel, the set of most frequent values (ignore counts as a value) in its block."""
    h, w = index.shape[0] // factor, index.shape[1] // factor
    winners = []
    for i in range(h):
        row = []
        for j in range(w):
            block = index[i * factor : (i + 1) * factor, j * factor : (j + 1) * factor]
            values, counts = np.unique(block, return_counts=True)
            row.append(set(values[counts == counts.max()].tolist()))
        winners.append(row)
    return winners


@pytest.fixture
def fine_pair(tmp_path, raster_writer):
    """A 48 x 40 image at 5 m and a random label at 1 m (codes + no-data 0) on the same origin."""
    rng = np.random.default_rng(7)
    codes = np.append(CODES, NODATA)
    label = codes[rng.choice(6, size=(200, 240), p=[0.1, 0.1, 0.25, 0.3, 0.1, 0.15])]
    raster_writer(tmp_path / "label.tif", label, from_origin(1000, 2000, 1, 1), nodata=NODATA, block=64)
    raster_writer(tmp_path / "image.tif", np.ones((2, 40, 48), np.uint16), from_origin(1000, 2000, 5, 5))
    return tmp_path, label


def test_mode_matches_brute_force_majority_and_windows_do_not_matter(fine_pair):
    folder, label = fine_pair
    image, label_path = folder / "image.tif", folder / "label.tif"
    small = align_labels(image, label_path, folder / "small.tif", SCHEMA, method="mode", block=16)
    whole = align_labels(image, label_path, folder / "whole.tif", SCHEMA, method="mode", block=4096)
    assert small.windows == 9 and whole.windows == 1
    out = rasterio.open(small.path).read(1)
    assert np.array_equal(out, rasterio.open(whole.path).read(1))
    winners = brute_force_mode(LUT[label], 5)
    ties = 0
    for i in range(40):
        for j in range(48):
            assert out[i, j] in winners[i][j], (i, j, out[i, j], winners[i][j])
            ties += len(winners[i][j]) > 1
    assert ties < 0.4 * out.size  # most pixels have a strict majority, so the test has teeth
    assert (out == IGNORE_INDEX).any() and set(np.unique(out)) <= {0, 1, 2, 3, 4, IGNORE_INDEX}


def test_nearest_takes_the_label_pixel_at_each_centre(fine_pair):
    folder, label = fine_pair
    result = align_labels(
        folder / "image.tif", folder / "label.tif", folder / "near.tif", SCHEMA, method="nearest", block=16
    )
    out = rasterio.open(result.path).read(1)
    assert np.array_equal(out, LUT[label][2::5, 2::5])  # centre of a 5 m pixel lies in 1 m pixel 5i + 2
    with rasterio.open(result.path) as dst:
        assert dst.transform == from_origin(1000, 2000, 5, 5) and dst.nodata == IGNORE_INDEX
        assert dst.colormap(1)[0][:3] == tuple(SCHEMA.palette[0])


def test_mode_and_nearest_differ_where_the_centre_pixel_is_a_minority(tmp_path, raster_writer):
    label = np.full((10, 10), 50, np.uint8)
    label[4:6, 4:6] = 10  # a 2x2 building at the centre of a 10x10 field pixel
    raster_writer(tmp_path / "l.tif", label, from_origin(0, 10, 1, 1))
    raster_writer(tmp_path / "i.tif", np.ones((1, 1, 1), np.uint8), from_origin(0, 10, 10, 10))
    mode = align_labels(tmp_path / "i.tif", tmp_path / "l.tif", tmp_path / "m.tif", SCHEMA, method="mode")
    nearest = align_labels(tmp_path / "i.tif", tmp_path / "l.tif", tmp_path / "n.tif", SCHEMA, method="nearest")
    assert rasterio.open(mode.path).read(1)[0, 0] == 2  # Field
    assert rasterio.open(nearest.path).read(1)[0, 0] == 0  # Building


def truth(x, y):
    """Class index of a 40 m parcel grid in UTM 32N, a function of map coordinates only."""
    return ((np.floor(x / 40).astype(np.int64) * 7 + np.floor(y / 40).astype(np.int64) * 13) % 5).astype(np.uint8)


def test_label_in_another_crs_and_resolution_lands_on_the_image_grid(tmp_path, raster_writer):
    image_transform = from_origin(500000, 5200000, 10, 10)
    raster_writer(tmp_path / "image.tif", np.ones((3, 48, 48), np.uint16), image_transform, crs="EPSG:32632")
    # The label covers the image in EPSG:4326 at about 1 m, except its eastern 8 columns.
    west, south, east, north = transform_bounds("EPSG:32632", "EPSG:4326", 499980, 5199500, 500400, 5200020)
    res_x, res_y = 1.3e-5, 9e-6
    width, height = int((east - west) / res_x), int((north - south) / res_y)
    label_transform = from_origin(west, north, res_x, res_y)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = label_transform @ (cols.ravel(), rows.ravel())
    x, y = transform("EPSG:4326", "EPSG:32632", lon, lat)
    codes = CODES[truth(np.asarray(x), np.asarray(y))].reshape(height, width)
    raster_writer(tmp_path / "label.tif", codes, label_transform, crs="EPSG:4326", block=128)

    for method in ("mode", "nearest"):
        result = align_labels(
            tmp_path / "image.tif", tmp_path / "label.tif", tmp_path / f"{method}.tif", SCHEMA, method=method, block=16
        )
        out = rasterio.open(result.path).read(1)
        centres_x = 500000 + 10 * (np.arange(48) + 0.5)
        centres_y = 5200000 - 10 * (np.arange(48) + 0.5)
        expected = truth(*np.meshgrid(centres_x, centres_y))
        inside = out[:, :38]  # columns 0..37 end at 500380 m, well inside the label
        assert np.array_equal(inside, expected[:, :38]), method
        assert (out[:, 42:] == IGNORE_INDEX).all(), method  # east of 500420 m: no label at all


def test_prechipped_pair_without_georeferencing_either_side(tmp_path, raster_writer, blocky):
    label = blocky((20, 20), 3, CODES, seed=1)
    rng = np.random.default_rng(2)
    image = rng.integers(0, 4000, (2, 40, 40)).astype(np.uint16)
    raster_writer(tmp_path / "label.tif", label, crs=None)
    raster_writer(tmp_path / "image.tif", image, crs=None)
    up = align_labels(tmp_path / "image.tif", tmp_path / "label.tif", tmp_path / "up.tif", SCHEMA, method="nearest")
    assert np.array_equal(rasterio.open(up.path).read(1), np.kron(LUT[label], np.ones((2, 2), np.uint8)))
    down = resample_image(tmp_path / "image.tif", tmp_path / "label.tif", tmp_path / "down.tif", method="average")
    out = rasterio.open(down.path).read().astype(float)
    means = image.reshape(2, 20, 2, 20, 2).mean(axis=(2, 4))
    assert out.shape == (2, 20, 20) and np.abs(out - means).max() <= 0.5 + 1e-9


def test_georeferenced_image_with_plain_label_is_refused(tmp_path, raster_writer):
    raster_writer(tmp_path / "label.tif", np.full((20, 20), 10, np.uint8), crs=None)
    raster_writer(tmp_path / "image.tif", np.ones((1, 40, 40), np.uint8))
    with pytest.raises(DataError, match="grid: pixel"):
        align_labels(tmp_path / "image.tif", tmp_path / "label.tif", tmp_path / "o.tif", SCHEMA)


def test_unknown_codes_are_named_or_ignored(tmp_path, raster_writer):
    label = np.full((20, 20), 50, np.uint8)
    label[:5] = 77
    raster_writer(tmp_path / "label.tif", label, from_origin(0, 20, 1, 1))
    raster_writer(tmp_path / "image.tif", np.ones((1, 10, 10), np.uint8), from_origin(0, 20, 2, 2))
    with pytest.raises(DataError, match="77"):
        align_labels(tmp_path / "image.tif", tmp_path / "label.tif", tmp_path / "o.tif", SCHEMA)
    assert not (tmp_path / "o.tif").exists()
    result = align_labels(
        tmp_path / "image.tif", tmp_path / "label.tif", tmp_path / "o.tif", SCHEMA, unknown="ignore", label_nodata=None
    )
    out = rasterio.open(result.path).read(1)
    assert (out[:2] == IGNORE_INDEX).all() and (out[3:] == 2).all()
