"""Polygons traced strip by strip equal those traced from the whole raster at once: no seams."""

import json

import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from rasterio import features

from landseg.classes import IGNORE_INDEX, color_hex, get_schema
from landseg.errors import ConfigError

shapely = pytest.importorskip("shapely")
from landseg.predict.vectors import strip_polygons, write_polygons  # noqa: E402

SCHEMA = get_schema("synthetic")
GRID = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_200_000.0)


def class_map(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    index = rng.integers(0, 3, size=(8, 9)).repeat(7, 0).repeat(6, 1).astype(np.uint8)  # 56 x 54
    index[rng.random(index.shape) < 0.03] = 4
    index[10:40, 20] = 3  # a thin line through several strips
    index[:, 45:48] = 1  # a band from top to bottom
    rr, cc = np.mgrid[:56, :54]
    index[(rr - 30) ** 2 + (cc - 12) ** 2 < 40] = 2
    index[(rr - 30) ** 2 + (cc - 12) ** 2 < 9] = 0  # a disc with a hole
    index[50:, :5] = IGNORE_INDEX
    return index


def write_class_raster(path, index: np.ndarray, crs="EPSG:32632", transform=GRID):
    """A class raster on ``GRID`` in UTM 32N, or with ``crs=None, transform=None`` a plain photo's grid."""
    grid = {} if crs is None else {"crs": crs, "transform": transform}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=index.shape[1],
        height=index.shape[0],
        count=1,
        dtype="uint8",
        nodata=IGNORE_INDEX,
        **grid,
    ) as dst:
        dst.write(index, 1)
    return path


def whole_raster_polygons(index: np.ndarray) -> list[tuple[int, object]]:
    return [(int(v), shapely.geometry.shape(g)) for g, v in features.shapes(index, mask=index != IGNORE_INDEX)]


def canonical(polygons) -> list[tuple[int, bytes]]:
    """Order-free comparison: each polygon without redundant vertices, normalized, as WKB."""
    return sorted((value, shapely.normalize(p.simplify(0)).wkb) for value, p in polygons)


@pytest.mark.parametrize("strip", [1, 5, 13, 100])
def test_strips_merge_into_exactly_the_whole_raster_polygons(strip):
    index = class_map()
    pieces = list(strip_polygons(lambda top, bottom: index[top:bottom], index.shape[0], strip))
    expected = whole_raster_polygons(index)
    assert len(pieces) == len(expected)
    assert canonical(pieces) == canonical(expected)
    # Areas add up to the labelled pixels of each class.
    for value in range(5):
        area = sum(p.area for v, p in pieces if v == value)
        assert area == (index == value).sum()


def test_written_geojson_is_georeferenced_and_complete(tmp_path):
    index = class_map(seed=1)
    raster = write_class_raster(tmp_path / "classes.tif", index)
    path = write_polygons(raster, tmp_path / "polygons.geojson", SCHEMA, strip=8)
    collection = json.loads(path.read_text())
    assert collection["crs"]["properties"]["name"].endswith("EPSG::32632")
    features_ = collection["features"]
    assert len(features_) == len(whole_raster_polygons(index))
    pixels = {}
    for feature in features_:
        props = feature["properties"]
        assert props["class_name"] == SCHEMA.names[props["class_index"]]
        geometry = shapely.geometry.shape(feature["geometry"])
        assert geometry.area == pytest.approx(props["pixels"] * 100.0)
        assert props["area_m2"] == pytest.approx(props["pixels"] * 100.0)
        minx, miny, maxx, maxy = geometry.bounds
        assert minx >= 600_000 and maxx <= 600_000 + 540 and miny >= 5_200_000 - 560 and maxy <= 5_200_000
        pixels[props["class_index"]] = pixels.get(props["class_index"], 0) + props["pixels"]
    assert pixels == {v: int((index == v).sum()) for v in range(5) if (index == v).any()}
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_geopackage_round_trip_and_simplification(tmp_path):
    pyogrio = pytest.importorskip("pyogrio")
    index = class_map(seed=2)
    raster = write_class_raster(tmp_path / "classes.tif", index)
    exact = write_polygons(raster, tmp_path / "exact.gpkg", SCHEMA, strip=9, batch=7)
    simple = write_polygons(raster, tmp_path / "simple.gpkg", SCHEMA, simplify=2.0, strip=9)
    info = pyogrio.read_info(exact)
    assert info["features"] == len(whole_raster_polygons(index))
    assert info["crs"] == "EPSG:32632" and info["geometry_type"] == "Polygon"
    meta, _, geometries, fields = pyogrio.raw.read(exact)
    names = list(meta["fields"])
    assert names[:4] == ["class_index", "class_name", "color", "pixels"]
    assert fields[names.index("color")][0] == color_hex(SCHEMA.classes[fields[0][0]].color)
    areas = shapely.area(shapely.from_wkb(geometries))
    np.testing.assert_allclose(areas, fields[names.index("pixels")] * 100.0)
    _, _, simple_geometries, _ = pyogrio.raw.read(simple)
    vertices = lambda g: shapely.get_num_coordinates(shapely.from_wkb(g)).sum()  # noqa: E731
    assert vertices(simple_geometries) < vertices(geometries)


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="gpkg"):
        write_polygons(tmp_path / "x.tif", tmp_path / "polygons.shp", SCHEMA)


def test_geojson_reprojected_to_wgs84_follows_rfc_7946(tmp_path):
    index = class_map(seed=2)
    raster = write_class_raster(tmp_path / "classes.tif", index)
    native = json.loads(write_polygons(raster, tmp_path / "native.geojson", SCHEMA, strip=8).read_text())
    wgs84 = json.loads(
        write_polygons(raster, tmp_path / "wgs84.geojson", SCHEMA, strip=8, to_crs="EPSG:4326").read_text()
    )
    assert "crs" not in wgs84  # WGS 84 longitude, latitude is GeoJSON's own
    assert len(wgs84["features"]) == len(native["features"])
    for projected, geographic in zip(native["features"], wgs84["features"], strict=False):
        assert projected["properties"] == geographic["properties"]
        assert geographic["properties"]["color"] == color_hex(
            SCHEMA.classes[geographic["properties"]["class_index"]].color
        )
        expected = rasterio.warp.transform_geom("EPSG:32632", "EPSG:4326", projected["geometry"])
        np.testing.assert_allclose(geographic["geometry"]["coordinates"][0], expected["coordinates"][0], atol=1e-12)
    lon, lat = wgs84["features"][0]["geometry"]["coordinates"][0][0]
    assert 10.3 < lon < 10.4 and 46.9 < lat < 47.0  # (600000, 5200000) in UTM 32N


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_plain_photo_keeps_pixel_coordinates_and_says_so(tmp_path):
    index = class_map(seed=3)
    raster = write_class_raster(tmp_path / "classes.tif", index, crs=None, transform=None)
    collection = json.loads(write_polygons(raster, tmp_path / "p.geojson", SCHEMA, to_crs="EPSG:4326").read_text())
    assert collection["coordinates_in"] == "pixel column, row" and "crs" not in collection
    shapes = [(f["geometry"], f["properties"]["class_index"]) for f in collection["features"]]
    np.testing.assert_array_equal(
        features.rasterize(shapes, out_shape=index.shape, fill=IGNORE_INDEX, dtype="uint8"), index
    )
