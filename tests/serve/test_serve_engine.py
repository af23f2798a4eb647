"""The web app's engine seam against the `landseg predict` engine, and the upload checks."""

import json

import numpy as np
import pytest
import rasterio
import rasterio.features
import rasterio.warp
from PIL import Image

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.predict.engine import PredictOptions, predict_scene
from landseg.predict.ensemble import load_ensemble
from landseg.serve import ServeSettings, create_app
from landseg.serve.engine import JobOptions, run_prediction
from landseg.serve.state import ServeState
from landseg.serve.uploads import safe_display_name, sniff_format

SCHEMA = get_schema("synthetic")


def test_sniff_format_reads_content_only():
    assert sniff_format(b"\x89PNG\r\n\x1a\n\0\0") == "PNG"
    assert sniff_format(b"\xff\xd8\xff\xe0JFIF") == "JPEG"
    assert sniff_format(b"II*\x00\x08\0\0\0") == sniff_format(b"MM\x00*\0\0\0\x08") == "GTiff"
    assert sniff_format(b"II+\x00\x08\x00\x00\x00") == "GTiff"  # BigTIFF
    assert sniff_format(b"<VRTDataset rasterXSize=") is None
    assert sniff_format(b"GIF89a") is None and sniff_format(b"") is None


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("scene 01.tif", "scene_01"),
        ("../../etc/passwd", "passwd"),
        ("C:\\maps\\a.b.png", "a_b"),
        (".hidden", "hidden"),
        ("", "image"),
        (None, "image"),
        ("ünïcode.jpg", "n_code"),
    ],
)
def test_safe_display_name(name, stem):
    assert safe_display_name(name) == stem


def cli_engine_classes(checkpoint, image, out_dir, **options) -> np.ndarray:
    """The class map ``landseg predict --engine torch`` writes for the same image and options."""
    tta = options.pop("tta", None)
    scene = predict_scene(
        image, load_ensemble([checkpoint], engine="torch", tta=tta), out_dir, PredictOptions(**options), stem="cli"
    )
    with rasterio.open(scene.paths["classes"]) as written:
        return written.read(1)


def test_run_prediction_matches_the_cli_engine(tmp_path, serve_model, serve_checkpoint, serve_images):
    progress = []
    outputs = run_prediction(
        serve_model,
        serve_images["geotiff"],
        tmp_path / "web",
        JobOptions(min_area=5, tta="flips", overlap=0.25),
        lambda fraction, stage: progress.append(fraction),
    )
    assert set(outputs) == {"classes_tif", "classes_png", "color_png", "areas_csv", "polygons_geojson"}
    assert all(path.parent == tmp_path / "web" and path.exists() for path in outputs.values())
    reference = cli_engine_classes(
        serve_checkpoint, serve_images["geotiff"], tmp_path / "cli", min_area=5, tta="flips", overlap=0.25
    )
    with rasterio.open(outputs["classes_tif"]) as cog, rasterio.open(serve_images["geotiff"]) as image:
        np.testing.assert_array_equal(cog.read(1), reference)
        assert cog.crs == image.crs and cog.transform == image.transform
    np.testing.assert_array_equal(np.asarray(Image.open(outputs["classes_png"])), reference)
    assert len(np.unique(reference)) > 1  # the comparison has classes to get wrong
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0
    assert any(0.05 < fraction < 0.85 for fraction in progress)  # tile-level progress, not just start and end


def test_the_server_runs_the_engine_predict_chooses(tmp_path, serve_checkpoint, serve_images):
    """Without a model handed in, the app loads its model as ``landseg predict`` does (``--engine auto``:
    ONNX Runtime on the CPU), and an upload's map is the map the command writes with default options."""
    served = ServeState.of(create_app(ServeSettings(checkpoint=serve_checkpoint, workdir=tmp_path))).model
    assert served.engine == "onnxruntime"
    outputs = run_prediction(served, serve_images["geotiff"], tmp_path / "web", JobOptions())
    scene = predict_scene(
        serve_images["geotiff"], load_ensemble([serve_checkpoint]), tmp_path / "cli", PredictOptions(), stem="cli"
    )
    with rasterio.open(outputs["classes_tif"]) as web, rasterio.open(scene.paths["classes"]) as cli:
        np.testing.assert_array_equal(web.read(1), cli.read(1))


def test_polygons_are_wgs84_and_rasterize_back_to_the_class_map(tmp_path, serve_model, serve_images):
    outputs = run_prediction(serve_model, serve_images["geotiff"], tmp_path, JobOptions())
    collection = json.loads(outputs["polygons_geojson"].read_text())
    with rasterio.open(outputs["classes_tif"]) as cog:
        index, crs, transform = cog.read(1), cog.crs, cog.transform
    shapes = [
        (rasterio.warp.transform_geom("EPSG:4326", crs, f["geometry"]), f["properties"]["class_index"])
        for f in collection["features"]
    ]
    rebuilt = rasterio.features.rasterize(
        shapes, out_shape=index.shape, transform=transform, fill=IGNORE_INDEX, dtype="uint8"
    )
    np.testing.assert_array_equal(rebuilt, index)
    assert "crs" not in collection  # RFC 7946: longitude, latitude in WGS 84
    first = collection["features"][0]["properties"]
    assert first["color"] == "#" + bytes(SCHEMA.palette[first["class_index"]]).hex().upper()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the test reads the map
def test_a_plain_photo_gets_pixel_outputs_and_no_geotiff(tmp_path, serve_model, serve_checkpoint, serve_images):
    outputs = run_prediction(serve_model, serve_images["png"], tmp_path / "web", JobOptions(overlap=0.0))
    assert "classes_tif" not in outputs and not (tmp_path / "web" / "result_classes.tif").exists()
    reference = cli_engine_classes(serve_checkpoint, serve_images["png"], tmp_path / "cli", overlap=0.0)
    np.testing.assert_array_equal(np.asarray(Image.open(outputs["classes_png"])), reference)
    collection = json.loads(outputs["polygons_geojson"].read_text())
    corners = np.array([xy for f in collection["features"] for xy in f["geometry"]["coordinates"][0]])
    assert set(collection) == {"type", "name", "features"} and corners.min() == 0 and corners.max() == 96


def test_a_progress_callback_that_raises_cancels_the_job(tmp_path, serve_model, serve_images):
    class Cancelled(Exception):
        pass

    def cancel_once_predicting(fraction, stage):
        if stage == "predicting" and fraction > 0.05:
            raise Cancelled

    with pytest.raises(Cancelled):
        run_prediction(serve_model, serve_images["geotiff"], tmp_path, JobOptions(), cancel_once_predicting)
    assert list(tmp_path.iterdir()) == []  # no scratch raster or half-written output left behind


def test_options_are_validated():
    with pytest.raises(ValueError, match="overlap"):
        JobOptions(overlap=0.95)
    with pytest.raises(ValueError, match="tta"):
        JobOptions(tta="sideways")
    with pytest.raises(ValueError, match="unknown"):
        JobOptions(unknown=1)


def test_job_options_are_predict_options_defaults_and_checks():
    from dataclasses import replace

    from landseg.predict.options import DEFAULT_OPTIONS

    assert JobOptions().predict_options() == DEFAULT_OPTIONS
    chosen = JobOptions(overlap=0.25, min_area=7, tta="d4")
    assert chosen.predict_options() == replace(DEFAULT_OPTIONS, overlap=0.25, min_area=7)
    assert chosen.ensemble_tta() == "d4" and JobOptions().ensemble_tta() is None
    # Refused with the message of `landseg predict`'s own check, not one of the web app's.
    with pytest.raises(ValueError, match=r"tile overlap must be in \[0, 1\), got -0.1"):
        JobOptions(overlap=-0.1)
    with pytest.raises(ValueError, match="--min-area must not be negative, got -3"):
        JobOptions(min_area=-3)
