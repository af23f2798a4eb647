import numpy as np
import pytest
from PIL import Image
from rasterio.transform import from_origin
from tests.helpers import write_geotiff

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.errors import DataError
from landseg.io.raster import raster_info, read_image, read_mask, read_mask_raw

TEN_METRES = from_origin(500000, 5200000, 10, 10)


def test_reads_selected_bands_with_georeference(tmp_path):
    data = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)
    path = write_geotiff(tmp_path / "s2.tif", data, transform=TEN_METRES)
    image = read_image(path, bands=[3, 1])
    assert image.data.dtype == np.uint16
    np.testing.assert_array_equal(image.data, data[[2, 0]])
    assert image.georeferenced and image.crs.to_epsg() == 32632
    assert image.transform.a == 10 and image.valid is None
    assert raster_info(path).count == 4
    with pytest.raises(DataError, match=r"s2.tif: has 4 bands; bands \[5\] were asked for"):
        read_image(path, bands=[5])


def test_nodata_and_nan_are_invalid(tmp_path):
    data = np.ones((2, 3, 3), dtype=np.float32)
    data[:, 0, 0] = -9999
    data[0, 2, 2] = np.nan
    image = read_image(write_geotiff(tmp_path / "f.tif", data, transform=TEN_METRES, nodata=-9999))
    assert image.valid.tolist() == [[False, True, True], [True, True, True], [True, True, False]]
    # a nodata value given by the user overrides the file's
    ints = write_geotiff(tmp_path / "i.tif", np.array([[[0, 5], [5, 5]]], dtype=np.uint8), transform=TEN_METRES)
    assert read_image(ints).valid is None
    assert read_image(ints, nodata=0).valid.tolist() == [[False, True], [True, True]]


def test_plain_jpeg_is_not_georeferenced(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.full((8, 9, 3), 120, np.uint8)).save(path)
    image = read_image(path)
    assert image.data.shape == (3, 8, 9) and not image.georeferenced


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.tif", b"", "file is empty"),
        ("text.tif", b"this is not a tiff file at all\n" * 10, "not a readable raster"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"{name}: {message}"):
        read_image(path)
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "missing.tif")


def test_truncated_png_is_a_data_error(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DataError, match=r"cut\.png"):
        read_image(path)


def test_paletted_png_mask_reads_as_colours_for_colour_schemas(tmp_path):
    schema = get_schema("dubai")
    index = np.array([[0, 1], [4, 2]], dtype=np.uint8)
    palette = [0] * 768
    for i, land_class in enumerate(schema.classes):
        palette[3 * i : 3 * i + 3] = land_class.mask_color
    mask = Image.fromarray(index, mode="P")
    mask.putpalette(palette)
    path = tmp_path / "mask.png"
    mask.save(path)
    colours, codes = read_mask_raw(path)
    assert codes.tolist() == index.tolist() and colours.shape == (2, 2, 3)
    assert read_mask(path, schema).tolist() == index.tolist()
    assert read_mask(path, get_schema("landcoverai")).tolist() == index.tolist()


def test_code_mask_with_nodata(tmp_path):
    path = write_geotiff(tmp_path / "lc.tif", np.array([[[0, 3, 12]]], dtype=np.uint8), transform=TEN_METRES)
    assert read_mask(path, get_schema("catalonia")).tolist() == [[IGNORE_INDEX, 2, 11]]


def test_truncated_jpeg_and_png_mask_are_data_errors(tmp_path):
    rng = np.random.default_rng(1)
    jpeg = tmp_path / "cut.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: cannot read pixels"):
        read_image(jpeg)
    mask = tmp_path / "mask.png"
    Image.fromarray(rng.integers(0, 5, (64, 64), dtype=np.uint8)).save(mask)
    mask.write_bytes(mask.read_bytes()[:200])
    with pytest.raises(DataError, match=r"mask\.png: PNG is truncated"):
        read_mask(mask, get_schema("landcoverai"))
