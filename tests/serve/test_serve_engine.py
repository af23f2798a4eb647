"""The web app's engine seam and upload checks, against brute-force references."""

import dataclasses
import json

import numpy as np
import pytest
import rasterio
import rasterio.features
import rasterio.warp
from rasterio.transform import from_origin
from scipy import ndimage

from landseg.checkpoint import LoadedModel
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.io.raster import RasterImage
from landseg.predict import Predictor
from landseg.serve.engine import (
    PredictionOptions,
    ProgressNetwork,
    forward_passes,
    merge_small_patches,
    run_prediction,
    write_polygons,
)
from landseg.serve.uploads import safe_display_name, sniff_format

SCHEMA = get_schema("synthetic")


def patchy_index(seed: int = 0, size: int = 64) -> np.ndarray:
    """Blocky classes with single-pixel specks, a few small islands and a no-data corner."""
    rng = np.random.default_rng(seed)
    index = np.kron(rng.integers(0, 5, (4, 4)), np.ones((16, 16), dtype=np.int64)).astype(np.uint8)
    specks = rng.random((size, size)) < 0.03
    index[specks] = rng.integers(0, 5, specks.sum())
    index[:6, :6] = IGNORE_INDEX
    return index


def components(index: np.ndarray) -> list[tuple[int, int]]:
    """(class, size) of every 4-connected patch, no-data left out."""
    found = []
    for value in np.unique(index):
        if value == IGNORE_INDEX:
            continue
        labels, count = ndimage.label(index == value)
        found += [(int(value), int(n)) for n in np.bincount(labels.ravel())[1:]]
    return found


def test_sniff_format_reads_content_only():
    assert sniff_format(b"\x89PNG\r\n\x1a\n\0\0") == "PNG"
    assert sniff_format(b"\xff\xd8\xff\xe0JFIF") == "JPEG"
    assert sniff_format(b"II*\x00\x08\0\0\0") == sniff_format(b"MM\x00*\0\0\0\x08") == "GTiff"
    assert sniff_format(b"II+\x00\x08\x00\x00\x00") == "GTiff"  # BigTIFF
    assert sniff_format(b"<VRTDataset rasterXSize=") is None
    assert sniff_format(b"GIF89a") is None and sniff_format(b"") is None


@pytest.mark.parametrize(
    ("name", "stem"),
    [("scene 01.tif", "scene_01"), ("../../etc/passwd", "passwd"), ("C:\\maps\\a.b.png", "a_b"),
     (".hidden", "hidden"), ("", "image"), (None, "image"), ("ünïcode.jpg", "n_code")],
)
def test_safe_display_name(name, stem):
    assert safe_display_name(name) == stem


def test_merge_small_patches_leaves_no_patch_under_the_minimum():
    index = patchy_index()
    merged = merge_small_patches(index, min_area=10)
    assert min(size for _, size in components(merged)) >= 10
    assert min(size for _, size in components(index)) == 1  # the test has something to merge
    np.testing.assert_array_equal(merged == IGNORE_INDEX, index == IGNORE_INDEX)
    # Pixels of patches that were already large enough keep their class.
    for value in range(5):
        labels, _ = ndimage.label(index == value)
        sizes = np.bincount(labels.ravel())
        large = (labels > 0) & (sizes[labels] >= 10)
        assert (merged[large] == value).all()


def test_a_speck_takes_the_class_around_it():
    index = np.zeros((9, 9), dtype=np.uint8)
    index[4, 4] = 3
    index[0:2, 0:2] = 2  # 4 pixels: survives min_area 4, not 5
    np.testing.assert_array_equal(merge_small_patches(index, 2) == 3, np.zeros_like(index, dtype=bool))
    assert (merge_small_patches(index, 4) == 2).sum() == 4
    assert (merge_small_patches(index, 5) == 0).all()


def test_polygons_rasterize_back_to_the_class_map(tmp_path):
    index = patchy_index(seed=1)
    image = RasterImage(np.zeros((3, *index.shape), np.uint8), tmp_path / "x.png", None, rasterio.Affine.identity(), None)
    collection = json.loads(write_polygons(tmp_path / "p.geojson", index, SCHEMA, image).read_text())
    shapes = [(f["geometry"], f["properties"]["class_index"]) for f in collection["features"]]
    rebuilt = rasterio.features.rasterize(shapes, out_shape=index.shape, fill=IGNORE_INDEX, dtype="uint8")
    np.testing.assert_array_equal(rebuilt, index)
    assert len(collection["features"]) == len(components(index))
    first = collection["features"][0]["properties"]
    assert first["color"] == "#" + bytes(SCHEMA.palette[first["class_index"]]).hex().upper()
    assert first["class"] == SCHEMA.names[first["class_index"]]


def test_georeferenced_polygons_are_in_wgs84(tmp_path):
    index = np.zeros((10, 10), dtype=np.uint8)
    index[:, 5:] = 2
    transform = from_origin(500000.0, 5200000.0, 10.0, 10.0)
    utm = rasterio.crs.CRS.from_epsg(32632)
    image = RasterImage(np.zeros((3, 10, 10), np.uint8), tmp_path / "x.tif", utm, transform, None)
    collection = json.loads(write_polygons(tmp_path / "p.geojson", index, SCHEMA, image).read_text())
    water = next(f for f in collection["features"] if f["properties"]["class"] == "Water")
    expected = rasterio.warp.transform_geom(
        "EPSG:32632", "EPSG:4326",
        {"type": "Polygon", "coordinates": [[(500050.0, 5200000.0), (500050.0, 5199900.0), (500100.0, 5199900.0),
                                              (500100.0, 5200000.0), (500050.0, 5200000.0)]]},
    )
    np.testing.assert_allclose(
        sorted(map(tuple, water["geometry"]["coordinates"][0][:-1])),
        sorted(map(tuple, expected["coordinates"][0][:-1])),
        rtol=0, atol=1e-9,
    )


@pytest.mark.parametrize(("size", "scale", "tta", "overlap"), [((96, 96), 1.0, None, 0.5), ((40, 100), 1.0, "flips", 0.25),
                                                               ((150, 100), 0.5, None, 0.0), ((48, 80), 1.0, "d4", 0.0)])
def test_forward_passes_counts_every_tile_the_network_sees(serve_model, size, scale, tta, overlap):
    card = dataclasses.replace(serve_model.card, input_scale=scale)
    seen = []
    counted = LoadedModel(card, ProgressNetwork(serve_model.network, seen.append), serve_model.path)
    predictor = Predictor(counted, overlap=overlap, tta=tta)
    data = np.random.default_rng(0).integers(0, 255, (3, *size), dtype=np.uint8)
    predictor.predict_image(RasterImage(data, serve_model.path, None, rasterio.Affine.identity(), None))
    assert sum(seen) == forward_passes(predictor, *size)


def test_run_prediction_matches_the_cli_engine(tmp_path, serve_model, serve_images):
    progress = []
    outputs = run_prediction(serve_model, serve_images["geotiff"], tmp_path, PredictionOptions(min_area=5),
                             lambda fraction, stage: progress.append(fraction))
    assert set(outputs) == {"classes_tif", "classes_png", "color_png", "areas_csv", "polygons_geojson"}
    assert all(path.parent == tmp_path and path.exists() for path in outputs.values())
    reference = Predictor(serve_model, overlap=0.5).predict_path(serve_images["geotiff"]).index
    with rasterio.open(outputs["classes_tif"]) as src:
        np.testing.assert_array_equal(src.read(1), merge_small_patches(reference, 5))
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_options_are_validated():
    with pytest.raises(ValueError, match="overlap"):
        PredictionOptions(overlap=0.95)
    with pytest.raises(ValueError, match="tta"):
        PredictionOptions(tta="sideways")
    with pytest.raises(ValueError, match="unknown"):
        PredictionOptions(unknown=1)
