"""Ground areas of pixels against figures computed independently of the code under test: the closed-form
area of an ellipsoidal zone, UTM's scale factor, geodesic polygons (GeographicLib through pyproj.Geod)."""

import math

import numpy as np
import pyproj
import pytest
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.rpc import RPC
from rasterio.windows import Window

from landseg.io.georef import Georeference
from landseg.maps.areas import (
    APPROXIMATE,
    GEODESIC,
    PLANAR,
    SCALE_FACTOR,
    PixelAreas,
    area_method,
    class_areas_m2,
    nominal_pixel_area_m2,
    pixel_areas,
)

WGS84 = CRS.from_epsg(4326)
UTM32 = CRS.from_epsg(32632)
WEB_MERCATOR = CRS.from_epsg(3857)
GEOD = pyproj.Geod(ellps="WGS84")
A, INVERSE_FLATTENING = 6378137.0, 298.257223563


def zone_area(latitude_deg: float) -> float:
    """Area from the equator to a latitude per radian of longitude on WGS 84 (authalic closed form)."""
    f = 1 / INVERSE_FLATTENING
    e2 = f * (2 - f)
    e = math.sqrt(e2)
    s = math.sin(math.radians(latitude_deg))
    q = s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)
    return A * A * (1 - e2) / 2 * q


def quadrangle_area(south: float, north: float, degrees_of_longitude: float) -> float:
    return (zone_area(north) - zone_area(south)) * math.radians(degrees_of_longitude)


def geodesic_area(crs: CRS, xs, ys) -> float:
    lons, lats = pyproj.Transformer.from_crs(crs, WGS84, always_xy=True).transform(xs, ys)
    return abs(GEOD.polygon_area_perimeter(lons, lats)[0])


def test_a_one_degree_cell_has_its_ellipsoidal_zone_area_and_rows_shrink_towards_the_pole():
    grid = Affine(1.0, 0.0, 8.0, 0.0, -1.0, 62.0)
    areas = pixel_areas(WGS84, grid, Window(0, 0, 3, 2))
    assert area_method(WGS84, grid) == GEODESIC and areas.shape == (2, 3)
    assert areas[0] == pytest.approx([quadrangle_area(61, 62, 1)] * 3, rel=1e-10)
    assert areas[1] == pytest.approx([quadrangle_area(60, 61, 1)] * 3, rel=1e-10)
    # The whole Earth, in 1° cells, has the ellipsoid's area (GeographicLib's figure through pyproj).
    world = pixel_areas(WGS84, Affine(1.0, 0.0, -180.0, 0.0, -1.0, 90.0), Window(0, 0, 360, 180))
    assert world.sum() == pytest.approx(4 * math.pi * zone_area(90), rel=1e-10)
    assert world.sum() == pytest.approx(5.10065621724e14, rel=1e-9)


def test_a_window_of_a_row_cached_grid_is_the_same_slice_of_a_larger_window():
    grid = Affine(0.001, 0.0, 8.0, 0.0, -0.001, 47.0)
    whole = pixel_areas(WGS84, grid, Window(0, 0, 40, 30))
    part = pixel_areas(WGS84, grid, Window(12, 7, 5, 9))
    np.testing.assert_array_equal(part, whole[7:16, 12:17])


def test_utm_pixels_have_their_ellipsoidal_area_not_the_nominal_one():
    # On the central meridian the areal scale of UTM is 0.9996²: a 10 m pixel covers more than 100 m².
    centre = Affine(10.0, 0.0, 500_000.0 - 5.0, 0.0, -10.0, 5_000_000.0)
    assert area_method(UTM32, centre) == SCALE_FACTOR
    assert pixel_areas(UTM32, centre, Window(0, 0, 1, 1))[0, 0] == pytest.approx(100 / 0.9996**2, rel=1e-9)
    assert nominal_pixel_area_m2(UTM32, centre) == 100.0
    # 200 km east of it, each pixel against the geodesic polygon of its corners.
    east = Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_000_000.0)
    areas = pixel_areas(UTM32, east, Window(3, 4, 2, 2))
    for row in range(2):
        for col in range(2):
            x0, y0 = east * (3 + col, 4 + row)
            corners = [(x0, y0), (x0 + 10, y0), (x0 + 10, y0 - 10), (x0, y0 - 10)]
            expected = geodesic_area(UTM32, *zip(*corners, strict=True))
            assert areas[row, col] == pytest.approx(expected, rel=1e-6)
    assert areas.mean() < 100.0  # beyond the lines of true scale the map enlarges the ground


@pytest.mark.parametrize("latitude", [0.0, 30.0, 60.0])
def test_web_mercator_pixels_shrink_with_the_square_of_the_cosine_of_latitude(latitude):
    x, y = pyproj.Transformer.from_crs(WGS84, WEB_MERCATOR, always_xy=True).transform(10.0, latitude)
    grid = Affine(100.0, 0.0, x, 0.0, -100.0, y)
    areas = pixel_areas(WEB_MERCATOR, grid, Window(0, 0, 4, 2))
    assert area_method(WEB_MERCATOR, grid) == SCALE_FACTOR
    # Web Mercator is spherical: cos² is its nominal scale; the ellipsoid differs by under 0.7 %.
    assert areas == pytest.approx(np.full((2, 4), 100.0**2 * math.cos(math.radians(latitude)) ** 2), rel=7e-3)
    # Exactly: the lon/lat quadrangle of the pixel, its latitudes from the spherical inverse.
    north = math.degrees(2 * math.atan(math.exp(y / A)) - math.pi / 2)
    south = math.degrees(2 * math.atan(math.exp((y - 100.0) / A)) - math.pi / 2)
    assert areas[0, 0] == pytest.approx(quadrangle_area(south, north, math.degrees(100.0 / A)), rel=1e-9)


def test_a_rotated_grid_covers_the_area_of_its_outline():
    rotated = Affine.translation(600_000.0, 5_100_000.0) * Affine.rotation(30.0) * Affine.scale(20.0, -20.0)
    areas = pixel_areas(UTM32, rotated, Window(0, 0, 50, 40))
    outline = [rotated * corner for corner in [(0, 0), (50, 0), (50, 40), (0, 40)]]
    assert areas.sum() == pytest.approx(geodesic_area(UTM32, *zip(*outline, strict=True)), rel=1e-6)
    north_up = pixel_areas(UTM32, Affine(20.0, 0.0, 600_000.0, 0.0, -20.0, 5_100_000.0), Window(0, 0, 1, 1))
    assert areas[0, 0] == pytest.approx(north_up[0, 0], rel=1e-6)
    rotated_lonlat = Affine.translation(8.0, 47.0) * Affine.rotation(15.0) * Affine.scale(0.01, -0.01)
    lonlat_areas = pixel_areas(WGS84, rotated_lonlat, Window(0, 0, 10, 10))
    outline = [rotated_lonlat * corner for corner in [(0, 0), (10, 0), (10, 10), (0, 10)]]
    assert area_method(WGS84, rotated_lonlat) == GEODESIC
    assert lonlat_areas.sum() == pytest.approx(geodesic_area(WGS84, *zip(*outline, strict=True)), rel=1e-5)


def test_equal_area_and_foot_grids():
    laea = CRS.from_epsg(3035)
    grid = Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0)
    assert area_method(laea, grid) == PLANAR
    np.testing.assert_array_equal(pixel_areas(laea, grid, Window(0, 0, 2, 3)), np.full((3, 2), 100.0))
    long_island = CRS.from_epsg(2263)  # US survey feet, Lambert conformal conic
    feet = Affine(100.0, 0.0, 1_000_000.0, 0.0, -100.0, 200_000.0)
    assert nominal_pixel_area_m2(long_island, feet) == pytest.approx((100 * 1200 / 3937) ** 2)
    corners = [feet * corner for corner in [(0, 0), (1, 0), (1, 1), (0, 1)]]
    expected = geodesic_area(long_island, *zip(*corners, strict=True))
    assert pixel_areas(long_island, feet, Window(0, 0, 1, 1))[0, 0] == pytest.approx(expected, rel=1e-6)


def test_no_crs_means_no_areas():
    assert area_method(None, Affine.identity()) is None
    with pytest.raises(ValueError, match="no ground area"):
        pixel_areas(None, Affine.identity(), Window(0, 0, 2, 2))


def test_gcp_and_rpc_rasters_have_approximate_areas():
    gcps = [
        GroundControlPoint(row, col, 500_000.0 + 0.5 * col, 5_200_000.0 - 0.5 * row)
        for row, col in [(0, 0), (0, 64), (64, 0), (64, 64), (20, 40)]
    ]
    placed = PixelAreas.of(Georeference(gcps=tuple(gcps), gcps_crs=UTM32))
    assert placed is not None and placed.method == APPROXIMATE
    assert placed.window(Window(0, 0, 64, 64)) == pytest.approx(np.full((64, 64), 0.25 / 0.9996**2), rel=1e-6)
    # A sensor model mapping line to latitude and sample to longitude linearly, 0.02° across 64 pixels.
    rpcs = RPC(
        height_off=500.0, height_scale=500.0, lat_off=47.0, lat_scale=0.01, long_off=8.0, long_scale=0.01,
        line_off=32, line_scale=32, samp_off=32, samp_scale=32,
        line_num_coeff=[0.0, 0.0, -1.0] + [0.0] * 17, line_den_coeff=[1.0] + [0.0] * 19,
        samp_num_coeff=[0.0, 1.0] + [0.0] * 18, samp_den_coeff=[1.0] + [0.0] * 19,
    )  # fmt: skip
    sensed = PixelAreas.of(Georeference(crs=WGS84, rpcs=rpcs))
    assert sensed is not None and sensed.method == APPROXIMATE
    total = sensed.window(Window(0, 0, 64, 64)).sum()
    assert total == pytest.approx(quadrangle_area(46.99, 47.01, 0.02), rel=1e-4)
    assert PixelAreas.of(Georeference()) is None


def test_class_areas_sum_pixel_areas_per_class_and_skip_the_ignore_index():
    classes = np.array([[0, 1, 1], [255, 2, 7]], dtype=np.uint8)
    areas = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(class_areas_m2(classes, areas, 3), [1.0, 5.0, 5.0])


@pytest.mark.parametrize(
    "crs, grid",
    [
        (UTM32, Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_000_000.0)),
        (WGS84, Affine(0.01, 0.0, 8.0, 0.0, -0.01, 60.0)),
        (CRS.from_epsg(3035), Affine(10.0, 0.0, 4_000_000.0, 0.0, -10.0, 3_000_000.0)),
    ],
)
def test_scattered_pixels_have_the_areas_of_their_window(crs, grid):
    from landseg.maps.areas import grid_areas

    measured = grid_areas(crs, grid)
    assert measured is not None
    whole = measured.window(Window(0, 0, 6, 5))
    rows, cols = np.array([0, 4, 2, 4]), np.array([5, 0, 3, 5])
    np.testing.assert_allclose(measured.centred_at(rows + 0.5, cols + 0.5), whole[rows, cols], rtol=1e-12)
    # Halfway between two pixels' centres, the area is halfway between theirs (areas change smoothly).
    between = measured.centred_at(np.array([1.0]), np.array([0.5]))[0]
    assert between == pytest.approx((whole[0, 0] + whole[1, 0]) / 2, rel=1e-9)


@pytest.mark.parametrize(
    "grid", [Affine(10.0, 0.0, 700_000.0, 0.0, -10.0, 5_000_000.0), Affine(8.0, 6.0, 300_000.0, 6.0, -8.0, 7_000_000.0)]
)
def test_every_pixel_has_the_area_the_projection_scale_gives_it(grid):
    """Pixels are interpolated between exact lattice cells: every pixel of a window spanning several lattice
    cells checked against PROJ's own areal scale factor at its centre (the nominal area divided by it, which
    is exact to second order in pixel size over the Earth's radius), on a north-up and a rotated UTM grid."""
    from landseg.maps.areas import LATTICE_STEP, grid_areas

    measured = grid_areas(UTM32, grid)
    assert measured is not None and measured.method == "scale-factor"
    window = Window(37, 1000, 3 * LATTICE_STEP + 5, 2 * LATTICE_STEP + 3)
    areas = measured.window(window)
    rows, cols = np.mgrid[0 : int(window.height), 0 : int(window.width)]
    east, north = grid * (cols.ravel() + 37.5, rows.ravel() + 1000.5)
    lon, lat = pyproj.Transformer.from_crs(UTM32, "EPSG:4326", always_xy=True).transform(east, north)
    factors = pyproj.Proj(UTM32.to_wkt()).get_factors(lon, lat)
    expected = (abs(grid.determinant) / np.asarray(factors.areal_scale)).reshape(areas.shape)
    np.testing.assert_allclose(areas, expected, rtol=1e-8)
    assert np.ptp(expected) > 1e-6 * expected.mean()  # the areas do vary across the window: not a constant check
    points = measured.centred_at(rows.ravel() + 1000.5, cols.ravel() + 37.5).reshape(areas.shape)
    np.testing.assert_allclose(points, areas, rtol=1e-13)


def test_a_pixel_has_one_area_however_the_map_is_read():
    """Strips, blocks and the whole window give each pixel the same area, so a map's total does not depend on
    how a command reads it (sample reads strips, assess blocks)."""
    from landseg.maps.areas import grid_areas

    measured = grid_areas(UTM32, Affine(8.0, 6.0, 300_000.0, 6.0, -8.0, 7_000_000.0))
    whole = measured.window(Window(0, 0, 300, 200))
    strips = np.vstack([measured.window(Window(0, top, 300, min(7, 200 - top))) for top in range(0, 200, 7)])
    np.testing.assert_allclose(strips, whole, rtol=1e-13)
    block = measured.window(Window(101, 63, 30, 3))
    np.testing.assert_allclose(block, whole[63:66, 101:131], rtol=1e-13)
