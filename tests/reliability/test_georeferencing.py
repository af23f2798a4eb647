"""No output loses its place on Earth: GCPs and RPCs travel from the input into every raster output,
areas say when they are approximate or why they are in pixels only, a plain photo gives a quiet,
non-georeferenced output, and a scene whose outputs cannot fit on the disk is refused before any work."""

import csv
import json
import shutil
import warnings
from collections import namedtuple
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC
from reliability_helpers import assert_one_line_error, visible_files
from typer.testing import CliRunner

from landseg.cli import app
from landseg.predict.engine import PredictOptions, output_bytes, predict_scene
from landseg.predict.ensemble import load_ensemble

runner = CliRunner()
SIZE = 64
RASTERS = ("classes", "probabilities", "confidence")
UTM = CRS.from_epsg(32632)
# Ground control points of a 0.5 m grid in UTM 32N, one per corner and one inside (row, col, x, y).
GCPS = [
    GroundControlPoint(row, col, 500_000.0 + 0.5 * col, 5_200_000.0 - 0.5 * row, id=str(i))
    for i, (row, col) in enumerate([(0, 0), (0, SIZE), (SIZE, 0), (SIZE, SIZE), (20, 40)])
]
# A sensor model near 47 N 8 E that maps line and sample linearly to latitude and longitude.
RPCS = RPC(
    height_off=500.0,
    height_scale=500.0,
    lat_off=47.0,
    lat_scale=0.01,
    long_off=8.0,
    long_scale=0.01,
    line_off=SIZE / 2,
    line_scale=SIZE / 2,
    samp_off=SIZE / 2,
    samp_scale=SIZE / 2,
    line_num_coeff=[0.0, 0.0, -1.0] + [0.0] * 17,
    line_den_coeff=[1.0] + [0.0] * 19,
    samp_num_coeff=[0.0, 1.0] + [0.0] * 18,
    samp_den_coeff=[1.0] + [0.0] * 19,
)
OPTIONS = PredictOptions(probabilities=True, confidence=True, polygons="geojson", min_area=3)


def pixels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, (3, SIZE // 8, SIZE // 8)).repeat(8, 1).repeat(8, 2).astype(np.uint8)


def write_image(path, **georeferencing):
    with rasterio.open(
        path, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", **georeferencing
    ) as dst:
        dst.write(pixels())
    return path


@pytest.fixture(scope="module")
def ensemble(tiny_checkpoint):
    return load_ensemble([tiny_checkpoint], engine="torch")


def gcp_tuples(gcps):
    return sorted((g.row, g.col, g.x, g.y) for g in gcps)


def record_of(result) -> dict:
    return json.loads(result.paths["record"].read_text())


def test_gcp_input_keeps_its_gcps_and_crs_in_every_raster_and_its_areas_are_marked_approximate(tmp_path, ensemble):
    source = write_image(tmp_path / "gcps.tif", gcps=GCPS, crs=UTM)
    result = predict_scene(source, ensemble, tmp_path / "out", OPTIONS)
    for kind in RASTERS:
        with rasterio.open(result.paths[kind]) as written:
            gcps, crs = written.gcps
            assert gcp_tuples(gcps) == gcp_tuples(GCPS) and crs == UTM, kind
            assert written.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG", kind
    # Everything inside the COGs themselves: no .aux.xml or other sidecar holds the GCPs.
    assert visible_files(tmp_path / "out") == sorted(p.name for p in result.paths.values())

    summary = json.loads(result.paths["areas_json"].read_text())
    assert summary["approximate"] is True and "approximate" in summary["note"]
    assert summary["crs"] == "EPSG:32632" and summary["pixel_area_m2"] == pytest.approx(0.25)
    # Ground areas on UTM 32N's central meridian: the nominal 0.25 m² a pixel divided by the areal scale 0.9996².
    assert sum(row["area_m2"] for row in summary["classes"]) == pytest.approx(0.25 * SIZE * SIZE / 0.9996**2)
    with open(result.paths["areas"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all("approximate" in row["note"] and row["area_m2"] for row in rows)
    record = record_of(result)["georeferencing"]
    assert record["kind"] == "gcps" and record["gcps"] == 5 and "approximate" in record["note"]

    # GeoJSON is RFC 7946 (WGS 84 longitude, latitude, 7 decimals: about 1 cm); back in UTM, the GCPs' grid.
    polygons = json.loads(result.paths["polygons"].read_text())
    lons, lats = zip(*(point for f in polygons["features"] for point in f["geometry"]["coordinates"][0]), strict=False)
    xs, ys = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(lons, lats)
    assert min(xs) == pytest.approx(500_000.0, abs=0.02) and max(xs) == pytest.approx(500_000.0 + 0.5 * SIZE, abs=0.02)
    assert max(ys) == pytest.approx(5_200_000.0, abs=0.02) and min(ys) == pytest.approx(
        5_200_000.0 - 0.5 * SIZE, abs=0.02
    )


def test_rpc_input_keeps_its_rpcs_in_every_raster_and_has_approximate_areas(tmp_path, ensemble):
    source = write_image(tmp_path / "rpcs.tif", rpcs=RPCS)
    result = predict_scene(source, ensemble, tmp_path / "out", OPTIONS)
    with rasterio.open(source) as original:
        expected = original.rpcs.to_dict()
        expected_crs = original.crs
    for kind in RASTERS:
        with rasterio.open(result.paths[kind]) as written:
            assert written.rpcs is not None, kind
            for key, value in written.rpcs.to_dict().items():
                assert np.allclose(value, expected[key]), (kind, key)
            assert written.crs == expected_crs and not written.gcps[0], kind
            assert written.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG", kind
    assert visible_files(tmp_path / "out") == sorted(p.name for p in result.paths.values())

    summary = json.loads(result.paths["areas_json"].read_text())
    assert summary["pixel_area_m2"] is None and summary["area_method"] == "approximate"
    assert sum(row["pixels"] for row in summary["classes"]) == SIZE * SIZE
    # The sensor model spans 46.99-47.01 N and 7.99-8.01 E: that quadrangle's geodesic area.
    outline = [(7.99, 47.01), (8.01, 47.01), (8.01, 46.99), (7.99, 46.99)]
    footprint = abs(pyproj.Geod(ellps="WGS84").polygon_area_perimeter(*zip(*outline, strict=True))[0])
    assert sum(row["area_m2"] for row in summary["classes"]) == pytest.approx(footprint, rel=1e-4)
    record = record_of(result)["georeferencing"]
    assert record["kind"] == "rpcs" and record["rpcs"] is True
    assert "areas are approximate" in record["note"] and "RPCs" in record["note"]


def test_the_web_app_keeps_the_gcps_in_its_geotiff_and_places_its_polygons_on_earth(tmp_path, tiny_checkpoint):
    pytest.importorskip("fastapi", reason="landseg serve needs fastapi")
    from landseg.checkpoint import load_checkpoint
    from landseg.serve.engine import JobOptions, run_prediction
    from landseg.serve.uploads import inspect_upload

    source = write_image(tmp_path / "gcps.tif", gcps=GCPS, crs=UTM)
    model = load_checkpoint(tiny_checkpoint)
    _, info, _ = inspect_upload(Path(shutil.copy(source, tmp_path / "upload")), model.card, 10**6)
    assert info.georeferenced and info.crs == "GCPs in EPSG:32632"  # what the page shows
    outputs = run_prediction(model, source, tmp_path / "web", JobOptions())
    with rasterio.open(outputs["classes_tif"]) as written:
        assert gcp_tuples(written.gcps[0]) == gcp_tuples(GCPS) and written.gcps[1] == UTM
    collection = json.loads(outputs["polygons_geojson"].read_text())
    assert "coordinates_in" not in collection
    lons, lats = zip(*(p for f in collection["features"] for p in f["geometry"]["coordinates"][0]), strict=False)
    assert 8.99 < min(lons) <= max(lons) < 9.01 and 46.9 < min(lats) <= max(lats) < 47.0  # UTM 32N, 500 km E


def test_a_plain_jpeg_gives_a_quiet_non_georeferenced_output_and_says_so(tmp_path, tiny_checkpoint):
    from PIL import Image

    photo = tmp_path / "holiday.jpg"
    Image.fromarray(np.moveaxis(pixels(1), 0, -1)).save(photo, quality=95)
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(
            app,
            [
                "predict",
                "--checkpoint",
                str(tiny_checkpoint),
                str(photo),
                "--out",
                str(out),
                "--engine",
                "torch",
                "--probabilities",
                "--confidence",
                "--min-area",
                "3",
                "--polygons",
                "geojson",
            ],
        )
    assert result.exit_code == 0, result.output
    assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
    assert "NotGeoreferenced" not in result.output

    record = json.loads((out / "holiday_prediction.json").read_text())["georeferencing"]
    assert record["kind"] == "none" and "not georeferenced" in record["note"]
    summary = json.loads((out / "holiday_areas.json").read_text())
    assert summary["crs"] is None and all(row["area_m2"] is None for row in summary["classes"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(out / "holiday_classes.tif") as written:
            assert written.crs is None and not written.gcps[0] and written.rpcs is None


Usage = namedtuple("Usage", "total used free")


def test_a_scene_whose_outputs_do_not_fit_on_the_disk_is_refused_before_any_work(
    tmp_path, monkeypatch, tiny_checkpoint
):
    source = write_image(tmp_path / "scene.tif", gcps=GCPS, crs=UTM)
    out = tmp_path / "out"
    needed = output_bytes(SIZE, SIZE, 5, PredictOptions(probabilities=True))
    free = needed - 1
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * needed, 9 * needed, free))
    result = runner.invoke(
        app,
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            str(source),
            "--out",
            str(out),
            "--engine",
            "torch",
            "--probabilities",
        ],
    )
    line = assert_one_line_error(result, str(out), "not enough free disk space", f"{needed:,} bytes", f"{free:,} bytes")
    assert "need" in line and "free" in line
    assert list(out.iterdir()) == []  # not even a scratch file

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * needed, 9 * needed, needed))
    result = runner.invoke(
        app,
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            str(source),
            "--out",
            str(out),
            "--engine",
            "torch",
            "--probabilities",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "scene_probabilities.tif").exists()


def test_the_disk_estimate_grows_with_the_outputs_asked_for():
    plain = output_bytes(1000, 2000, 6, PredictOptions())
    assert plain >= 2 * 1000 * 2000  # the class scratch and its COG
    full = output_bytes(1000, 2000, 6, PredictOptions(probabilities=True, confidence=True, min_area=4))
    assert full - plain == 1000 * 2000 * (2 * (6 + 1) + 1)
