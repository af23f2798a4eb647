"""``io.vector``: one GeoPackage layer in one CRS from features in several, read back through pyogrio."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import shapely
from rasterio.crs import CRS

from landseg.io.vector import Feature, attribute_column, first_crs, write_polygon_layer

UTM40 = CRS.from_epsg(32640)
WGS84 = CRS.from_epsg(4326)


def test_features_in_other_crss_are_reprojected_and_those_without_one_left_out(tmp_path):
    utm_box = shapely.box(500_000, 2_760_000, 500_100, 2_760_100)  # near Dubai, 100 m square
    lonlat_box = shapely.box(57.0, 24.95, 57.001, 24.951)  # on zone 40N's central meridian
    features = [
        Feature(utm_box, UTM40, {"name": "utm", "pixels": 4, "area_m2": 10_000.0}),
        Feature(shapely.box(0, 0, 1, 1), None, {"name": "photo", "pixels": 1, "area_m2": ""}),
        Feature(lonlat_box, WGS84, {"name": "lonlat", "pixels": 7, "area_m2": ""}),
    ]
    path = write_polygon_layer(
        tmp_path / "boxes.gpkg", features, ["name", "pixels", "area_m2"], "boxes", first_crs([None, UTM40])
    )

    meta, _, wkb, values = pyogrio.raw.read(path, layer="boxes")
    columns = dict(zip(meta["fields"], values, strict=True))
    assert list(columns["name"]) == ["utm", "lonlat"]
    assert CRS.from_user_input(meta["crs"]) == UTM40
    written, reprojected = shapely.from_wkb(wkb)
    assert written.equals(utm_box)
    # 0.001 degrees near 25 N: about 101 m east-west and 111 m north-south; easting 500 km on the meridian
    assert reprojected.area == pytest.approx(100.9 * 110.7, rel=0.02)
    assert reprojected.bounds[0] == pytest.approx(500_000, abs=0.01)
    assert columns["pixels"].dtype == np.int64
    assert columns["area_m2"][0] == 10_000.0 and np.isnan(columns["area_m2"][1])
    assert not list(tmp_path.glob(".*partial*"))


def test_attribute_columns_keep_text_integers_and_missing_numbers_apart():
    assert attribute_column(["a", "b"]).dtype == object
    assert attribute_column([1, 2]).dtype == np.int64
    assert attribute_column([1, 2.5]).dtype == np.float64
    missing = attribute_column([3, ""])
    assert missing.dtype == np.float64 and np.isnan(missing[1])
