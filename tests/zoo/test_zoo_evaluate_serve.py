"""``landseg evaluate --model dynamic-world`` and ``landseg serve --model dynamic-world`` (issue 17): both go
through the inference core that ``landseg predict --model dynamic-world`` uses, so evaluate scores the very map
predict writes, and the server hands back that map.

The input is a synthetic scene as the 9 bands Dynamic World reads, in L1C-like digital numbers, named B2 ...
B12 on a 10 m grid (``sentinel2_products``): no real data needed, and Dynamic World draws several classes on it.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rasterio
import yaml
from tests.zoo.sentinel2_products import sentinel2_like_pixels, write_labels, write_sentinel2_like_stack
from typer.testing import CliRunner

from landseg.cli.main import app
from landseg.zoo import get_zoo_model

SIZE = 64


def predicted_classes(image, out, *options: str) -> np.ndarray:
    """The class map ``landseg predict --model dynamic-world`` writes, with default options but ``options``."""
    result = CliRunner().invoke(
        app, ["predict", "--model", "dynamic-world", str(image), "--out", str(out), "--engine", "torch", *options]
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(out / f"{image.stem}_classes.tif") as written:
        return written.read(1)


def test_evaluate_scores_the_map_predict_writes(tmp_path):
    pixels, _ = sentinel2_like_pixels(SIZE, seed=5)
    image = write_sentinel2_like_stack(tmp_path / "data" / "images" / "scene_a.tif", pixels)
    small = ["--tile", "64"]  # the card's 512 px tile would cost a 512 px pass for this 64 px scene
    predicted = predicted_classes(image, tmp_path / "predicted", *small)
    assert len(np.unique(predicted)) > 1
    # Labels in Dynamic World's codes: its own map, with one 8 x 8 block of another class.
    labels = predicted.copy()
    labels[:8, :8] = (labels[:8, :8] + 1) % 9
    write_labels(tmp_path / "data" / "masks" / "scene_a.tif", labels)
    config = tmp_path / "labelled.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "dynamic-world-check",
                "data": {
                    "root": "data",
                    "schema": get_zoo_model("dynamic-world").schema_dict(),
                    "images": "images/scene_{id}.tif",
                    "masks": "masks/scene_{id}.tif",
                    "split": {"field": "id", "val": ["a"]},
                },
            }
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--config",
            str(config),
            "--model",
            "dynamic-world",
            "--engine",
            "torch",
            "--out",
            str(tmp_path / "evaluation"),
            *small,
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["images"] == 1 and metrics["engines"] == ["torch"]
    assert metrics["models"][0].endswith("dynamic_world.safetensors")
    assert metrics["pixel_accuracy"] == pytest.approx(1 - 64 / SIZE**2)
    assert np.array_equal(
        np.asarray(metrics["confusion_matrix"]).sum(axis=0), np.bincount(predicted.ravel(), minlength=9)
    )
    with rasterio.open(tmp_path / "evaluation" / "maps" / "scene_a_classes.tif") as written:
        assert (written.read(1) == predicted).all()
    assert "Water" in result.output  # the metrics table names Dynamic World's classes


def test_serve_hands_back_the_map_predict_writes(tmp_path):
    pytest.importorskip("fastapi", reason="landseg serve needs fastapi, uvicorn and python-multipart")
    testclient = pytest.importorskip("fastapi.testclient", reason="the API tests need httpx")
    from landseg.serve import ServeSettings, create_app

    pixels, _ = sentinel2_like_pixels(SIZE, seed=6)
    image = write_sentinel2_like_stack(tmp_path / "s2.tif", pixels)  # 9 named bands: found by name, not index
    settings = ServeSettings.from_options(model="dynamic-world", engine="torch", workdir=tmp_path / "work")
    with testclient.TestClient(create_app(settings)) as client:
        model = client.get("/api/model").json()
        assert model["checkpoint"] == "dynamic-world" and model["classes"][0]["name"] == "Water"
        with open(image, "rb") as handle:
            created = client.post("/api/jobs", files={"file": ("s2.tif", handle)})
        assert created.status_code == 202, created.text
        job = created.json()
        deadline = time.monotonic() + 60
        while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
            job = client.get(f"/api/jobs/{job['id']}").json()
        assert job["status"] == "done", job
        download = next(d["url"] for d in job["result"]["downloads"] if d["kind"] == "classes_tif")
        served = client.get(download).content
    with rasterio.MemoryFile(served) as memory, memory.open() as cog:
        served_classes = cog.read(1)
        assert cog.crs.to_epsg() == 32631
    expected = predicted_classes(image, tmp_path / "cli")
    assert len(np.unique(expected)) > 1  # several classes, so the comparison can fail
    np.testing.assert_array_equal(served_classes, expected)
