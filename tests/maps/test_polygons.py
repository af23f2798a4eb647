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
from landseg.maps.polygons import strip_polygons, write_polygons  # noqa: E402

pyogrio = pytest.importorskip("pyogrio")

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


def read_back(path):
    """Every feature of a written vector file as GDAL reads it: metadata, shapely geometries, fields by name."""
    meta, _, geometries, values = pyogrio.raw.read(path)
    return meta, shapely.from_wkb(geometries), dict(zip(meta["fields"], values, strict=True))


def test_written_geojson_is_rfc_7946_and_complete(tmp_path):
    index = class_map(seed=1)
    raster = write_class_raster(tmp_path / "classes.tif", index)
    path = write_polygons(raster, tmp_path / "polygons.geojson", SCHEMA, strip=8)
    collection = json.loads(path.read_text())
    assert set(collection) == {"type", "name", "features"}  # no crs member, nothing of our own
    meta, geometries, fields = read_back(path)
    assert meta["crs"] == "EPSG:4326" and len(geometries) == len(whole_raster_polygons(index))
    # Back to UTM, each polygon covers its pixels, to the 7 decimals of a degree GeoJSON keeps (about 1 cm
    # along its outline).
    utm = shapely.transform(
        geometries, lambda xy: np.column_stack(pyproj_transform("EPSG:4326", "EPSG:32632", xy[:, 0], xy[:, 1]))
    )
    rounding = shapely.length(utm) * 0.012
    assert (np.abs(shapely.area(utm) - fields["pixels"] * 100.0) < rounding).all()
    minx, miny, maxx, maxy = shapely.total_bounds(utm)
    assert minx == pytest.approx(600_000, abs=0.1) and maxy == pytest.approx(5_200_000, abs=0.1)
    assert maxx == pytest.approx(600_000 + 540, abs=0.1) and miny == pytest.approx(5_200_000 - 560, abs=0.1)
    # Ground areas: the nominal 100 m² of a pixel divided by UTM's areal scale there (PROJ's factors).
    import pyproj

    lon, lat = pyproj_transform("EPSG:32632", "EPSG:4326", 600_270.0, 5_199_720.0)
    areal_scale = pyproj.Proj("EPSG:32632").get_factors(lon, lat).areal_scale
    assert 0.9992 < areal_scale < 1.0  # 100 km east of the central meridian
    # (the scale changes by a few parts in a million across the 540 m map)
    np.testing.assert_allclose(fields["area_m2"], fields["pixels"] * 100.0 / areal_scale, rtol=1e-5)
    np.testing.assert_allclose(fields["area_ha"], fields["area_m2"] / 1e4)
    assert list(fields["class_name"]) == [SCHEMA.names[i] for i in fields["class_index"]]
    pixels = {v: int(fields["pixels"][fields["class_index"] == v].sum()) for v in set(fields["class_index"].tolist())}
    assert pixels == {v: int((index == v).sum()) for v in range(5) if (index == v).any()}
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def pyproj_transform(source, target, xs, ys):
    import pyproj

    return pyproj.Transformer.from_crs(source, target, always_xy=True).transform(xs, ys)


def test_geographic_map_polygons_have_ellipsoidal_areas(tmp_path):
    index = np.zeros((40, 30), dtype=np.uint8)
    index[:, 15:] = 1
    grid = Affine(0.01, 0.0, 8.0, 0.0, -0.01, 60.0)
    raster = write_class_raster(tmp_path / "classes.tif", index, crs="EPSG:4326", transform=grid)
    _, geometries, fields = read_back(write_polygons(raster, tmp_path / "p.gpkg", SCHEMA))
    # Each half is a quadrangle of 0.15° by 0.4° from 59.6° to 60° N: its area in closed form on WGS 84.
    f = 1 / 298.257223563
    e = np.sqrt(f * (2 - f))

    def zone(latitude):  # area from the equator per radian of longitude
        sin = np.sin(np.radians(latitude))
        q = sin / (1 - e**2 * sin**2) + np.log((1 + e * sin) / (1 - e * sin)) / (2 * e)
        return 6378137.0**2 * (1 - e**2) / 2 * q

    quadrangle = (zone(60.0) - zone(59.6)) * np.radians(0.15)
    assert len(geometries) == 2
    # Pixel count times the pixel area at the polygon's middle row: exact to first order (40 rows of 0.01°).
    np.testing.assert_allclose(fields["area_m2"], quadrangle, rtol=1e-5)


def test_geopackage_round_trip_and_simplification(tmp_path):
    pyogrio = pytest.importorskip("pyogrio")
    index = class_map(seed=2)
    raster = write_class_raster(tmp_path / "classes.tif", index)
    exact = write_polygons(raster, tmp_path / "exact.gpkg", SCHEMA, strip=9, batch=7)
    assert not list(tmp_path.glob(".*"))
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


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_plain_photo_keeps_pixel_coordinates(tmp_path):
    index = class_map(seed=3)
    raster = write_class_raster(tmp_path / "classes.tif", index, crs=None, transform=None)
    collection = json.loads(write_polygons(raster, tmp_path / "p.geojson", SCHEMA).read_text())
    assert set(collection) == {"type", "name", "features"}
    assert all(f["properties"]["area_m2"] is None for f in collection["features"])
    shapes = [(f["geometry"], f["properties"]["class_index"]) for f in collection["features"]]
    np.testing.assert_array_equal(
        features.rasterize(shapes, out_shape=index.shape, fill=IGNORE_INDEX, dtype="uint8"), index
    )
