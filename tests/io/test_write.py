import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.io.raster import read_mask
from landseg.io.write import atomic_output, write_index_geotiff, write_index_png, write_rgb_png

SCHEMA = get_schema("synthetic")
TRANSFORM = Affine(0.5, 0.0, 2_600_000.0, 0.0, -0.5, 1_200_000.0)
CRS_LV95 = CRS.from_epsg(2056)


@pytest.fixture
def index() -> np.ndarray:
    rng = np.random.default_rng(11)
    classes = rng.integers(0, SCHEMA.num_classes, size=(37, 300)).astype(np.uint8)
    classes[rng.random(classes.shape) < 0.1] = IGNORE_INDEX
    return classes


def test_geotiff_round_trip_keeps_grid_nodata_and_colour_table(tmp_path, index):
    path = write_index_geotiff(tmp_path / "map.tif", index, CRS_LV95, TRANSFORM, SCHEMA)
    assert path == tmp_path / "map.tif"
    with rasterio.open(path) as src:
        assert src.crs == CRS_LV95
        assert src.transform == TRANSFORM
        assert src.nodata == IGNORE_INDEX
        assert src.dtypes == ("uint8",) and src.count == 1
        assert src.descriptions == ("class",)
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        np.testing.assert_array_equal(src.read(1), index)
        colormap = src.colormap(1)
    for i, color in enumerate(SCHEMA.palette.tolist()):
        assert colormap[i] == (*color, 255)
    assert colormap[IGNORE_INDEX][3] == 0
    assert os.listdir(tmp_path) == ["map.tif"]


def test_png_palette_is_the_schema_colours_and_pixels_are_indices(tmp_path, index):
    path = write_index_png(tmp_path / "map.png", index, SCHEMA)
    with Image.open(path) as image:
        assert image.mode == "P"
        palette = np.array(image.getpalette()[: 3 * SCHEMA.num_classes], dtype=np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(palette, SCHEMA.palette)
        np.testing.assert_array_equal(np.asarray(image), index)
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
    np.testing.assert_array_equal(alpha, np.where(index == IGNORE_INDEX, 0, 255))
    # The same file reads back as a mask through landseg's own reader.
    np.testing.assert_array_equal(read_mask(path, SCHEMA), index)


def test_rgb_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(9, 14, 3)).astype(np.uint8)
    path = write_rgb_png(tmp_path / "preview.png", rgb)
    with Image.open(path) as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), rgb)


def test_index_must_be_uint8_2d(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_index_png(tmp_path / "x.png", np.zeros((3, 3), dtype=np.int64), SCHEMA)
    with pytest.raises(ValueError, match="H, W"):
        write_index_geotiff(tmp_path / "x.tif", np.zeros((1, 3, 3), dtype=np.uint8), None, TRANSFORM, SCHEMA)
    assert os.listdir(tmp_path) == []


def test_atomic_output_renames_only_on_success(tmp_path):
    target = tmp_path / "out.tif"
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".tif" and temporary != target
        temporary.write_bytes(b"complete")
        assert not target.exists()
    assert target.read_bytes() == b"complete"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_output(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"complete"  # the previous version survives
    assert os.listdir(tmp_path) == ["out.tif"]


class ExplodingSchema:
    """Looks like a schema until the writer asks for its colours, mid-write."""

    num_classes = SCHEMA.num_classes
    palette = SCHEMA.palette

    def colormap(self):
        raise OSError("no space left on device")


def test_failed_geotiff_write_leaves_no_file(tmp_path, index):
    with pytest.raises(OSError, match="no space"):
        write_index_geotiff(tmp_path / "map.tif", index, CRS_LV95, TRANSFORM, ExplodingSchema())
    assert os.listdir(tmp_path) == []


def test_failed_png_write_leaves_no_file(tmp_path, index, monkeypatch):
    def save_half_then_fail(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_index_png(tmp_path / "map.png", index, SCHEMA)
    with pytest.raises(OSError, match="disk full"):
        write_rgb_png(tmp_path / "preview.png", np.zeros((2, 2, 3), dtype=np.uint8))
    assert os.listdir(tmp_path) == []
