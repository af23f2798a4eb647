"""Chip layout and chip writing: exact cover with the stated overlap, georeferenced chips, index rows."""

import itertools

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from landseg.classes import IGNORE_INDEX
from landseg.data.prepare.config import parse_prepare_config
from landseg.data.prepare.index import read_index
from landseg.data.prepare.run import tile
from landseg.data.prepare.tiling import chip_windows


@pytest.mark.parametrize(
    "width,height,size,stride", [(100, 70, 32, 32), (100, 70, 32, 24), (64, 64, 16, 8), (30, 50, 32, 16)]
)
def test_chips_cover_the_scene_exactly_with_the_stated_overlap(width, height, size, stride):
    windows = chip_windows(width, height, size, stride)
    cover = np.zeros((height, width), dtype=int)
    for w in windows:
        assert (w.width, w.height) == (min(size, width), min(size, height))
        assert w.col_off + w.width <= width and w.row_off + w.height <= height  # never past the edge
        cover[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert cover.min() >= 1  # every pixel in some chip
    for origins, length in (
        (sorted({int(w.col_off) for w in windows}), width),
        (sorted({int(w.row_off) for w in windows}), height),
    ):
        assert origins[0] == 0 and origins[-1] + min(size, length) == length  # the last chip flush with the edge
        overlaps = [a + size - b for a, b in itertools.pairwise(origins)]
        assert all(o == size - stride for o in overlaps[:-1])  # the stated overlap between neighbours
        assert all(size - stride <= o < size for o in overlaps[-1:])  # only the flush chip overlaps more
    assert len(windows) == len({(w.col_off, w.row_off) for w in windows})


def test_stride_larger_than_chip_is_refused():
    from landseg.errors import ConfigError

    with pytest.raises(ConfigError, match="gaps"):
        chip_windows(100, 100, 16, 20)


@pytest.fixture
def scene(tmp_path, raster_writer, blocky):
    """A 4-band uint16 scene (0 = no-data in its last 10 columns) and its label on the same grid."""
    rng = np.random.default_rng(3)
    image = rng.integers(100, 5000, (4, 50, 70)).astype(np.uint16)
    image[:, :, 60:] = 0
    label = blocky((50, 70), 7, [0, 1, 2, 3, 4], seed=4).astype(np.uint8)
    label[:4, :4] = 255
    transform = from_origin(600000, 4000000, 10, 10)
    raster_writer(tmp_path / "raw" / "image.tif", image, transform, nodata=0, descriptions=["B2", "B3", "B4", "B8"])
    raster_writer(tmp_path / "raw" / "label.tif", label, transform, nodata=255)
    return tmp_path, image, label, transform


def config_for(folder, **tiling):
    return parse_prepare_config(
        {
            "out": str(folder / "out"),
            "schema": "synthetic",
            "input": {
                "scenes": [
                    {"image": str(folder / "raw/image.tif"), "label": str(folder / "raw/label.tif"), "name": "s"}
                ],
                "bands": ["B4", 2, "b2"],
            },
            "tiling": {"size": 32, "stride": 24, **tiling},
            "filters": {"drop_unlabelled": False, "drop_blank_images": False},
        }
    )


def test_chips_are_georeferenced_copies_of_their_windows(scene):
    folder, image, label, transform = scene
    result = tile(config_for(folder))
    records, names = read_index(result.index)
    assert names == ["Field", "Forest", "Water", "Road", "Building"]
    assert len(records) == len(chip_windows(70, 50, 32, 24)) == 6
    for record in records:
        assert record.status == "kept"
        rows = slice(record.row_off, record.row_off + 32)
        cols = slice(record.col_off, record.col_off + 32)
        with rasterio.open(folder / "out" / record.image) as chip:
            assert chip.descriptions == ("B4", "B3", "B2") and chip.nodata == 0 and chip.crs.to_epsg() == 32632
            assert chip.transform == transform @ rasterio.Affine.translation(record.col_off, record.row_off)
            assert np.array_equal(chip.read(), image[[2, 1, 0]][:, rows, cols])  # bands B4, B3, B2
            assert (record.left, record.top) == tuple(chip.transform @ (0, 0))
        mask = rasterio.open(folder / "out" / record.mask).read(1)
        expected = np.where(image[0, rows, cols] == 0, IGNORE_INDEX, label[rows, cols])
        assert np.array_equal(mask, expected)
        assert record.valid_fraction == pytest.approx((expected != IGNORE_INDEX).mean())
        assert np.array_equal(record.counts, np.bincount(expected[expected != IGNORE_INDEX], minlength=5))


def test_png_chips_scaled_to_uint8(scene):
    folder, image, _, _ = scene
    config = config_for(folder, format="png", dtype="uint8", scale={"method": "fixed", "min": 100, "max": 5100})
    records, _ = read_index(tile(config).index)
    first = records[0]
    rgb = np.asarray(Image.open(folder / "out" / first.image))
    expected = image[[2, 1, 0], :32, :32].astype(float)
    assert rgb.shape == (32, 32, 3)
    assert np.abs(rgb.transpose(2, 0, 1) - (1 + np.rint((expected - 100) / 5000 * 254))).max() == 0
    assert Image.open(folder / "out" / first.mask).mode == "P"


def test_png_of_sixteen_bit_chips_is_refused_before_cutting(scene):
    from landseg.errors import ConfigError

    folder = scene[0]
    with pytest.raises(ConfigError, match="png needs 3-band uint8"):
        tile(config_for(folder, format="png"))
    assert not list((folder / "out").glob("images/*"))


def test_float_chips_scaled_by_fixed_range_with_nan_nodata(scene):
    folder, image, _, _ = scene
    config = config_for(folder, dtype="float32", scale={"method": "fixed", "min": [0, 0, 0], "max": [1000, 2000, 4000]})
    records, _ = read_index(tile(config).index)
    last = next(r for r in records if r.col_off == 38 and r.row_off == 0)
    chip = rasterio.open(folder / "out" / last.image).read()
    raw = image[[2, 1, 0], :32, 38:70].astype(np.float32)
    expected = raw / np.array([1000, 2000, 4000], np.float32)[:, None, None]
    expected[:, raw[0] == 0] = np.nan
    np.testing.assert_allclose(chip, expected, rtol=1e-6)
    assert np.isnan(chip[:, :, 22:]).all()


def test_meanstd_scaling_standardises_every_band_over_the_scene(scene):
    folder, image, _, _ = scene
    config = config_for(folder, size=35, stride=35, dtype="float32", scale={"method": "meanstd"})
    records, _ = read_index(tile(config).index)  # 35 px chips tile the 70 x 50 scene: rows 0 and 15 overlap
    values = [rasterio.open(folder / "out" / r.image).read() for r in records if r.row_off == 0]
    top = np.concatenate(values, axis=2).reshape(3, -1)
    valid_scene = image[[2, 1, 0]][:, image[0] != 0].astype(np.float64)
    raw_top = image[[2, 1, 0], :35].reshape(3, -1).astype(np.float64)
    keep = raw_top[0] != 0
    expected = (raw_top[:, keep] - valid_scene.mean(axis=1, keepdims=True)) / valid_scene.std(axis=1, keepdims=True)
    np.testing.assert_allclose(top[:, keep], expected, rtol=1e-5, atol=1e-5)
    assert np.isnan(top[:, ~keep]).all()


def test_rerun_needs_overwrite(scene):
    from landseg.errors import ConfigError

    folder = scene[0]
    tile(config_for(folder))
    with pytest.raises(ConfigError, match="overwrite"):
        tile(config_for(folder))
    assert tile(config_for(folder), overwrite=True).report.kept == 6
