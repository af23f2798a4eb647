"""``predict_scene`` end to end on a georeferenced scene: COG, georeferencing, no-data, extras."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.windows import Window

from landseg.checkpoint import ModelCard
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.errors import DataError
from landseg.maps.areas import pixel_areas
from landseg.normalization import Normalization
from landseg.predict.engine import PredictOptions, output_paths, predict_scene
from landseg.predict.ensemble import Ensemble
from landseg.predict.networks import Member, TorchNetwork

SCHEMA = get_schema("synthetic")
K = SCHEMA.num_classes
NORMALIZATION = Normalization((100.0, 100.0, 100.0), (40.0, 40.0, 40.0))
GRID = Affine(10.0, 0.0, 300_000.0, 0.0, -10.0, 5_100_000.0)
NODATA = 0


def pointwise_ensemble(network: torch.nn.Module | None = None) -> tuple[Ensemble, torch.nn.Module]:
    torch.manual_seed(3)
    network = network or torch.nn.Conv2d(3, K, 1)
    card = ModelCard(
        model={}, schema=SCHEMA.to_dict(), normalization=NORMALIZATION.to_dict(), bands=[1, 2, 3], tile_size=128
    )
    member = Member(card, TorchNetwork(network, precision="fp32", channels_last=False), Path("pointwise.ckpt"))
    return Ensemble([member]), network


def expected_probabilities(network: torch.nn.Module, data: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(network(torch.from_numpy(NORMALIZATION.apply(data))[None]), 1)[0].numpy()


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(2)
    data = (rng.integers(1, 255, size=(3, 15, 18)).repeat(40, 1).repeat(40, 2)[:, :590, :700]).astype(np.uint8)
    data[:, :40, :90] = NODATA  # a no-data corner, all bands
    data[0, 300, 300] = NODATA  # one band only: still valid
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=700,
        height=590,
        count=3,
        dtype="uint8",
        crs="EPSG:32632",
        transform=GRID,
        nodata=NODATA,
        tiled=True,
        compress="deflate",
    ) as dst:
        dst.write(data)
    return path, data


@pytest.fixture(scope="module")
def predicted(scene, tmp_path_factory):
    path, data = scene
    ensemble, network = pointwise_ensemble()
    out = tmp_path_factory.mktemp("out")
    options = PredictOptions(
        overlap=0.5, block_width=300, batch_size=6, probabilities=True, confidence=True, uncertainty="entropy"
    )
    return predict_scene(path, ensemble, out, options), expected_probabilities(network, data), data


def test_class_map_is_a_georeferenced_cog_with_colours(predicted, scene):
    result, probabilities, data = predicted
    with rasterio.open(result.paths["classes"]) as src, rasterio.open(scene[0]) as ref:
        assert src.crs == ref.crs and src.transform == ref.transform and src.shape == ref.shape
        assert src.nodata == IGNORE_INDEX and src.dtypes == ("uint8",)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.profile["compress"] == "deflate" and src.block_shapes == [(512, 512)]
        assert src.overviews(1) == [2]
        colormap = src.colormap(1)
        assert [colormap[i][:3] for i in range(K)] == [tuple(c) for c in SCHEMA.palette.tolist()]
        assert colormap[IGNORE_INDEX][3] == 0
        classes = src.read(1)
    valid = ~(data == NODATA).all(axis=0)
    assert (classes[~valid] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(classes[valid], probabilities.argmax(0)[valid])
    assert len(np.unique(classes[valid])) > 2


def test_probability_and_confidence_bands_decode_to_probabilities(predicted):
    result, probabilities, data = predicted
    valid = ~(data == NODATA).all(axis=0)
    with rasterio.open(result.paths["probabilities"]) as src:
        assert src.count == K and src.descriptions == tuple(SCHEMA.names) and src.nodata == 255
        stored = src.read()
        decoded = stored * src.scales[0]
    assert (stored[:, ~valid] == 255).all()
    np.testing.assert_allclose(decoded[:, valid], probabilities[:, valid], atol=0.5 / 254 + 1e-6)
    with rasterio.open(result.paths["confidence"]) as src:
        confidence = src.read(1) * src.scales[0]
    np.testing.assert_allclose(confidence[valid], probabilities.max(0)[valid], atol=0.5 / 254 + 1e-6)
    with rasterio.open(result.paths["uncertainty"]) as src:
        assert src.descriptions[0].startswith("uncertainty: entropy") and src.nodata == 255
        stored = src.read(1)
    entropy = -(probabilities * np.log(probabilities)).sum(axis=0) / np.log(K)
    assert (stored[~valid] == 255).all()
    np.testing.assert_allclose(stored[valid] / 254, entropy[valid], atol=0.5 / 254 + 1e-5)


def test_areas_preview_and_record(predicted):
    result, probabilities, data = predicted
    valid = ~(data == NODATA).all(axis=0)
    counts = np.bincount(probabilities.argmax(0)[valid], minlength=K)
    with open(result.paths["areas"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["pixels"]) for r in rows] == counts.tolist()
    # Ground areas: each pixel's own (maps.areas), 200 km west of UTM 32N's central meridian.
    ground = pixel_areas(CRS.from_epsg(32632), GRID, Window(0, 0, 700, 590))
    index = np.where(valid, probabilities.argmax(0), IGNORE_INDEX)
    expected = np.bincount(index[valid], weights=ground[valid], minlength=K)
    assert [float(r["area_m2"]) for r in rows] == pytest.approx(expected.tolist(), abs=0.005)
    assert [float(r["area_m2"]) for r in rows] == pytest.approx((counts * 100.0 / 1.00015).tolist(), rel=1e-4)
    summary = json.loads(result.paths["areas_json"].read_text())
    assert summary["pixel_area_m2"] == 100.0 and summary["crs"] == "EPSG:32632"
    assert summary["area_method"] == "scale-factor"
    assert [c["pixels"] for c in summary["classes"]] == counts.tolist()
    with Image.open(result.paths["color"]) as preview:
        assert preview.size[0] > 100
    record = json.loads(result.paths["record"].read_text())
    assert record["height"] == 590 and record["width"] == 700 and record["tiles_predicted"] >= record["tiles_in_grid"]
    out_dir = result.paths["classes"].parent
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in result.paths.values())


def test_min_area_and_polygons(scene, tmp_path):
    pytest.importorskip("shapely")
    path, _data = scene
    ensemble, _ = pointwise_ensemble()
    options = PredictOptions(min_area=2000, polygons="geojson", preview=False, areas=False)
    result = predict_scene(path, ensemble, tmp_path, options)
    assert set(result.paths) == {"classes", "polygons", "record"}
    with rasterio.open(result.paths["classes"]) as src:
        classes = src.read(1)
    from scipy import ndimage

    for value in range(K):
        regions, count = ndimage.label(classes == value)
        assert count == 0 or np.bincount(regions.ravel())[1:].min() >= 2000
    features = json.loads(result.paths["polygons"].read_text())["features"]
    assert sum(f["properties"]["pixels"] for f in features) == int((classes != IGNORE_INDEX).sum())


def test_a_failure_leaves_no_output_behind(scene, tmp_path):
    class Failing(torch.nn.Module):
        calls = 0

        def forward(self, x):
            Failing.calls += 1
            if Failing.calls > 3:
                raise RuntimeError("model broke")
            return torch.zeros(x.shape[0], K, *x.shape[-2:])

    ensemble, _ = pointwise_ensemble(Failing())
    with pytest.raises(RuntimeError, match="model broke"):
        predict_scene(scene[0], ensemble, tmp_path, PredictOptions(probabilities=True))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_plain_photo_and_missing_bands(tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(photo)
    ensemble, _ = pointwise_ensemble()
    result = predict_scene(photo, ensemble, tmp_path / "out", PredictOptions())
    with rasterio.open(result.paths["classes"]) as src:
        assert src.shape == (50, 70) and src.crs is None and (src.read(1) < K).all()
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(gray)
    with pytest.raises(DataError, match="has 1 band"):
        predict_scene(gray, ensemble, tmp_path / "out", PredictOptions())
    assert not (tmp_path / "out" / "gray_classes.tif").exists()


def test_output_names_follow_the_options(tmp_path):
    names = output_paths(tmp_path, "s", PredictOptions(polygons="gpkg", preview=False))
    assert set(names) == {"classes", "areas", "areas_json", "polygons", "record"}
    assert names["polygons"].name == "s_polygons.gpkg"


def test_a_geographic_scene_gets_ground_areas_in_square_metres_and_hectares(scene, tmp_path):
    """EPSG:4326 (the Sen1Floods11 chips' grid): every class gets its ellipsoidal area, rows shrinking north."""
    path, data = scene
    lonlat = tmp_path / "lonlat.tif"
    grid = Affine(0.0001, 0.0, 10.0, 0.0, -0.0001, 60.0)  # about 5.6 m x 11.1 m at 60 degrees north
    with rasterio.open(path) as source:
        profile = {**source.profile, "crs": "EPSG:4326", "transform": grid}
    with rasterio.open(lonlat, "w", **profile) as dst:
        dst.write(data)
    ensemble, network = pointwise_ensemble()
    result = predict_scene(lonlat, ensemble, tmp_path / "out", PredictOptions(preview=False))
    summary = json.loads(result.paths["areas_json"].read_text())
    assert summary["crs"] == "EPSG:4326" and summary["area_method"] == "geodesic"
    valid = ~(data == NODATA).all(axis=0)
    index = expected_probabilities(network, data).argmax(0)
    # Each pixel weighted by its row's area: the exact lon/lat quadrangle on WGS 84 (closed form).
    e2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)
    e = np.sqrt(e2)
    sin = np.sin(np.radians(60.0 - 0.0001 * np.arange(591)))
    zone = 6378137.0**2 * (1 - e2) / 2 * (sin / (1 - e2 * sin**2) + np.log((1 + e * sin) / (1 - e * sin)) / (2 * e))
    row_area = -np.diff(zone) * np.radians(0.0001)
    expected = np.bincount(index[valid], weights=np.broadcast_to(row_area[:, None], index.shape)[valid], minlength=K)
    areas = [row["area_m2"] for row in summary["classes"]]
    assert areas == pytest.approx(expected.tolist(), rel=1e-9)
    assert [row["area_ha"] for row in summary["classes"]] == pytest.approx((expected / 1e4).tolist(), rel=1e-9)
    with open(result.paths["areas"], newline="") as handle:
        assert all(row["area_m2"] and row["area_ha"] for row in csv.DictReader(handle))
