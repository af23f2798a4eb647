"""The web app's HTTP API through FastAPI's TestClient: uploads, job lifecycle, downloads, every limit."""

import csv
import io
import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from scipy import ndimage
from serve_helpers import VALIDATION_MIOU

from landseg.classes import get_schema
from landseg.errors import DataError
from landseg.maps.areas import class_areas
from landseg.predict.engine import PredictOptions, predict_scene
from landseg.predict.ensemble import load_ensemble

pytest.importorskip("fastapi", reason="landseg serve needs fastapi, uvicorn and python-multipart")
fastapi_testclient = pytest.importorskip("fastapi.testclient", reason="the API tests need httpx")

from landseg.serve import ServeSettings, create_app, run_prediction  # noqa: E402 - needs fastapi
from landseg.serve.state import ServeState  # noqa: E402 - needs fastapi

SCHEMA = get_schema("synthetic")
DOWNLOAD_KINDS = {"classes_tif", "classes_png", "color_png", "polygons_geojson", "areas_csv"}


@contextmanager
def serve(tmp_path, model, runner=run_prediction, **limits):
    settings = ServeSettings(checkpoint=model.path, workdir=tmp_path / "work", **limits)
    with fastapi_testclient.TestClient(create_app(settings, model=model, runner=runner)) as client:
        yield client


def upload(client, path: Path, name: str | None = None, **options):
    with open(path, "rb") as handle:
        return client.post("/api/jobs", files={"file": (name or path.name, handle)}, data=options)


def wait_until_finished(client, job_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


def reference_prediction(model, path: Path, out_dir: Path, tta=None, **options):
    """What ``landseg predict --engine torch`` writes for the same image, without the server:
    the class map's (transform, CRS) and its pixels."""
    scene = predict_scene(
        path, load_ensemble([model.path], engine="torch", tta=tta), out_dir, PredictOptions(**options)
    )
    with rasterio.open(scene.paths["classes"]) as written:
        return (written.transform, written.crs), written.read(1)


class GatedRunner:
    """The real prediction runner, held at the start until ``release()``; it keeps reporting so it can be cancelled."""

    def __init__(self):
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def __call__(self, model, input_path, out_dir, options, on_progress):
        self.calls += 1
        on_progress(0.01, "waiting in test")
        self.entered.set()
        while not self.gate.wait(0.02):
            on_progress(0.01, "waiting in test")
        return run_prediction(model, input_path, out_dir, options, on_progress)

    def release(self):
        self.gate.set()


# -- the model card, limits, page and documentation ------------------------------------------------
def test_model_card_comes_from_the_checkpoint(tmp_path, serve_model):
    with serve(tmp_path, serve_model) as client:
        card = client.get("/api/model").json()
    assert [c["name"] for c in card["classes"]] == ["Field", "Forest", "Water", "Road", "Building"]
    assert [c["color"] for c in card["classes"]] == ["#E6C84F", "#1A7A2E", "#1F77B4", "#555555", "#D62728"]
    assert card["validation_miou"] == pytest.approx(VALIDATION_MIOU)
    assert card["architecture"] == "classic_unet" and card["bands"] == [1, 2, 3]
    assert card["training"]["train_images"] == 4 and card["training"]["training_steps"] == 6
    assert card["training"]["data_set"] == "synthetic"
    # The training machine's folders are not shown to web users.
    assert "/home/someone" not in json.dumps(card)


def test_limits_are_published(tmp_path, serve_model):
    with serve(tmp_path, serve_model, max_upload_mb=2, max_pixels=123_456, max_queued_jobs=3) as client:
        limits = client.get("/api/limits").json()
    assert limits["max_upload_bytes"] == 2 * 1024 * 1024
    assert limits["max_pixels"] == 123_456 and limits["max_queued_jobs"] == 3


def test_openapi_documents_every_endpoint(tmp_path, serve_model):
    with serve(tmp_path, serve_model) as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert {"/api/model", "/api/limits", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/files/{kind}"} <= set(
        spec["paths"]
    )
    post = spec["paths"]["/api/jobs"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"202", "400", "413", "415", "422", "503"} <= set(post["responses"])
    assert set(spec["components"]["schemas"]["FileKind"]["enum"]) == DOWNLOAD_KINDS | {"preview", "overlay"}
    # The API docs page loads its scripts from this server, never from a CDN.
    assert docs.status_code == 200 and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()


def test_page_and_assets_load_nothing_from_outside(tmp_path, serve_model):
    with serve(tmp_path, serve_model) as client:
        page = client.get("/")
        assets = {url: client.get(url) for url in ("/static/app.js", "/static/style.css", "/static/favicon.svg")}
        vendored = client.get("/static/vendor/panzoom/panzoom.min.js")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert vendored.status_code == 200 and "Panzoom" in vendored.text
    # Our own page and code name no other host (the browser test checks the vendored code at run time).
    for url, response in [("/", page), *assets.items()]:
        assert response.status_code == 200, url
        text = response.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text, url


# -- a whole job ------------------------------------------------------------------------------------
def test_geotiff_job_gives_the_engines_result_and_every_download(tmp_path, serve_model, serve_images):
    geotiff = serve_images["geotiff"]
    with serve(tmp_path, serve_model) as client:
        created = upload(client, geotiff, name="field survey.tif", tta="flips", overlap="0.25")
        assert created.status_code == 202, created.text
        job = created.json()
        assert created.headers["location"] == f"/api/jobs/{job['id']}"
        assert job["status"] in ("queued", "running") and job["options"]["tta"] == "flips"
        assert job["image"] == {
            "format": "TIFF / GeoTIFF",
            "width": 96,
            "height": 96,
            "bands": 3,
            "dtype": "uint8",
            "georeferenced": True,
            "crs": "EPSG:32632",
        }
        preview = client.get(job["preview_url"])
        assert preview.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(preview.content)).size == (96, 96)

        job = wait_until_finished(client, job["id"])
        assert job["status"] == "done" and job["progress"] == 1.0 and job["error"] is None
        files = {d["kind"]: client.get(d["url"]) for d in job["result"]["downloads"]}
        overlay = client.get(job["result"]["overlay_url"])

    (transform, crs), reference = reference_prediction(
        serve_model, geotiff, tmp_path / "cli", overlap=0.25, tta="flips"
    )
    assert len(np.unique(reference)) > 1  # several classes, so the comparisons below can fail
    expected_rows = class_areas(reference, SCHEMA, transform, crs)
    assert [row["pixels"] for row in job["result"]["areas"]] == [row["pixels"] for row in expected_rows]
    assert [row["name"] for row in job["result"]["areas"]] == SCHEMA.names
    # Ground areas on UTM 32N's central meridian: the nominal 0.25 m² of a pixel divided by 0.9996².
    assert job["result"]["areas"][0]["area_m2"] == pytest.approx(
        expected_rows[0]["pixels"] * 0.25 / 0.9996**2, rel=1e-4
    )

    assert set(files) == DOWNLOAD_KINDS
    assert files["areas_csv"].headers["content-disposition"] == 'attachment; filename="field_survey_areas.csv"'
    with rasterio.MemoryFile(files["classes_tif"].content) as memory, memory.open() as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert cog.crs.to_string() == "EPSG:32632" and cog.transform == transform
        np.testing.assert_array_equal(cog.read(1), reference)
        assert cog.colormap(1)[1][:3] == (0x1A, 0x7A, 0x2E)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(files["classes_png"].content))), reference)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(overlay.content))), reference)
    rows = list(csv.DictReader(io.StringIO(files["areas_csv"].text)))
    assert [int(r["pixels"]) for r in rows] == [r["pixels"] for r in expected_rows]

    polygons = files["polygons_geojson"].json()
    assert files["polygons_geojson"].headers["content-type"] == "application/geo+json"
    for class_index, name in enumerate(SCHEMA.names):
        _, patches = ndimage.label(reference == class_index)  # 4-connected, like the polygons
        assert sum(f["properties"]["class_name"] == name for f in polygons["features"]) == patches
    lon, lat = polygons["features"][0]["geometry"]["coordinates"][0][0]
    assert 8.9 < lon < 9.1 and 46.9 < lat < 47.0  # UTM 32N, (500000, 5200000) is near 9 E, 46.95 N


def test_plain_photo_gets_pixel_outputs_and_no_geotiff(tmp_path, serve_model, serve_images):
    with serve(tmp_path, serve_model) as client:
        job = upload(client, serve_images["png"], min_area="20").json()
        job = wait_until_finished(client, job["id"])
        missing = client.get(f"/api/jobs/{job['id']}/files/classes_tif")
        polygons = client.get(f"/api/jobs/{job['id']}/files/polygons_geojson").json()
    assert job["status"] == "done" and not job["image"]["georeferenced"]
    assert {d["kind"] for d in job["result"]["downloads"]} == DOWNLOAD_KINDS - {"classes_tif"}
    assert missing.status_code == 404 and "georeferenced" in missing.json()["detail"]
    assert all(row["area_m2"] is None for row in job["result"]["areas"])
    assert sum(row["pixels"] for row in job["result"]["areas"]) == 96 * 96
    assert set(polygons) == {"type", "name", "features"}  # pixel column and row, with no member of our own
    corners = np.array([xy for f in polygons["features"] for xy in f["geometry"]["coordinates"][0]])
    assert corners.min() == 0 and corners.max() == 96


def test_format_is_judged_by_content_not_name(tmp_path, serve_model, serve_images):
    with serve(tmp_path, serve_model) as client:
        jpeg_named_tif = upload(client, serve_images["jpeg"], name="photo.tif")
        text_named_png = client.post("/api/jobs", files={"file": ("map.png", b"just some text, not an image")})
    assert jpeg_named_tif.status_code == 202 and jpeg_named_tif.json()["image"]["format"] == "JPEG"
    assert text_named_png.status_code == 415
    assert "not a PNG, JPEG or TIFF/GeoTIFF" in text_named_png.json()["detail"]


# -- every limit and bad file -------------------------------------------------------------------------
def test_bad_files_get_clear_4xx_messages(tmp_path, serve_model, serve_images):
    png = serve_images["png"].read_bytes()
    jpeg = serve_images["jpeg"].read_bytes()
    tiff = serve_images["geotiff"].read_bytes()
    cases = {
        "empty": (b"", 400, "empty"),
        "truncated": (png[: len(png) // 2], 422, "cannot be read"),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], 422, "cannot be read"),
        "truncated_tiff": (tiff[: len(tiff) // 2], 422, "cannot be"),
        "fake_signature": (png[:8] + b"\0" * 400, 422, "cannot be opened"),
        "grey": (serve_images["grey"].read_bytes(), 422, "has 1 band, but the model reads bands [1, 2, 3]"),
    }
    with serve(tmp_path, serve_model) as client:
        answers = {
            name: client.post("/api/jobs", files={"file": (f"{name}.png", data)})
            for name, (data, _, _) in cases.items()
        }
        no_file = client.post("/api/jobs", data={"tta": "none"})
        leftovers = list((tmp_path / "work").rglob("*.*"))
    for name, (_, status, message) in cases.items():
        assert answers[name].status_code == status, (name, answers[name].text)
        assert message in answers[name].json()["detail"], name
        assert str(tmp_path) not in answers[name].json()["detail"]
    assert no_file.status_code == 400 and "'file'" in no_file.json()["detail"]
    assert leftovers == []  # refused uploads leave nothing behind


def test_bad_options_are_refused_with_the_field_named(tmp_path, serve_model, serve_images):
    with serve(tmp_path, serve_model) as client:
        answers = [
            upload(client, serve_images["png"], overlap="0.95"),
            upload(client, serve_images["png"], tta="rotate"),
            upload(client, serve_images["png"], min_area="-1"),
            upload(client, serve_images["png"], overlp="0.3"),
        ]
    details = [a.json()["detail"] for a in answers]
    assert [a.status_code for a in answers] == [422] * 4
    assert details[0].startswith("overlap:") and "0.9" in details[0]
    assert details[1].startswith("tta:") and details[2].startswith("min_area:") and details[3].startswith("overlp:")


def test_upload_size_limit_declared_streamed_and_exact(tmp_path, serve_model):
    limit = 50 * 1024
    with serve(tmp_path, serve_model, max_upload_mb=limit / 1024 / 1024) as client:
        declared = client.post(
            "/api/jobs", files={"file": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (limit + 70_000))}
        )
        # A body with no Content-Length is counted as it arrives.
        boundary = "landsegboundary"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'.encode()
        chunks = [head] + [b"\0" * 10_000] * 20 + [f"\r\n--{boundary}--\r\n".encode()]
        streamed = client.post(
            "/api/jobs", content=iter(chunks), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
        # Just over the file limit but within the multipart allowance: the file itself is measured.
        exact = client.post("/api/jobs", files={"file": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * limit)})
    for answer in (declared, streamed, exact):
        assert answer.status_code == 413, answer.text
        assert "larger than this server accepts" in answer.json()["detail"]
    assert "content-length" not in {k.lower() for k in streamed.request.headers}


def test_pixel_count_limit(tmp_path, serve_model, serve_images):
    with serve(tmp_path, serve_model, max_pixels=96 * 96 - 1) as client:
        refused = upload(client, serve_images["geotiff"])
    with serve(tmp_path, serve_model, max_pixels=96 * 96) as client:
        accepted = upload(client, serve_images["geotiff"])
    assert refused.status_code == 413
    assert "96 x 96 = 9,216 pixels" in refused.json()["detail"] and "9,215" in refused.json()["detail"]
    assert accepted.status_code == 202


def test_client_file_names_never_become_paths(tmp_path, serve_model, serve_images):
    with serve(tmp_path, serve_model) as client:
        job = upload(client, serve_images["png"], name="../../outside/evil name.png").json()
        job = wait_until_finished(client, job["id"])
        stored = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert job["filename"] == "evil_name"
    assert not (tmp_path / "outside").exists()
    assert all(p.parts[0] == "work" for p in stored)
    assert {p.name for p in stored} >= {"input.png", "preview.jpg", "overlay.png"}


# -- queue, lifecycle, expiry ---------------------------------------------------------------------------
def test_jobs_queue_up_to_the_limit_then_503(tmp_path, serve_model, serve_images):
    runner = GatedRunner()
    with serve(tmp_path, serve_model, runner=runner, max_running_jobs=1, max_queued_jobs=1) as client:
        first = upload(client, serve_images["png"]).json()
        assert runner.entered.wait(10)
        second = upload(client, serve_images["png"]).json()
        refused = upload(client, serve_images["png"])
        running = client.get(f"/api/jobs/{first['id']}").json()
        queued = client.get(f"/api/jobs/{second['id']}").json()
        early_download = client.get(f"/api/jobs/{first['id']}/files/areas_csv")
        runner.release()
        finished = [wait_until_finished(client, job["id"]) for job in (first, second)]
        after = upload(client, serve_images["png"])
        # the third job runs in the server's worker thread: wait for it before counting the runner's calls
        after_job = wait_until_finished(client, after.json()["id"]) if after.status_code == 202 else None
    assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
    assert "busy" in refused.json()["detail"]
    assert running["status"] == "running" and running["stage"] == "waiting in test"
    assert queued["status"] == "queued" and queued["queue_position"] == 1
    assert early_download.status_code == 409
    assert [job["status"] for job in finished] == ["done", "done"]
    assert after.status_code == 202 and after_job["status"] == "done" and runner.calls == 3


def test_progress_rises_to_one_through_the_engines_stages(tmp_path, serve_model, serve_images):
    seen = []

    def recording_runner(model, input_path, out_dir, options, on_progress):
        def record(fraction, stage):
            seen.append((fraction, stage))
            on_progress(fraction, stage)

        return run_prediction(model, input_path, out_dir, options, record)

    with serve(tmp_path, serve_model, runner=recording_runner) as client:
        job = wait_until_finished(client, upload(client, serve_images["geotiff"]).json()["id"])
    fractions = [f for f, _ in seen]
    assert job["status"] == "done"
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert {"reading image", "predicting", "writing class map", "tracing polygons"} <= {s for _, s in seen}


def test_failed_job_reports_the_problem(tmp_path, serve_model, serve_images):
    def broken_runner(model, input_path, out_dir, options, on_progress):
        raise DataError("cannot read pixels, file is truncated", input_path)

    with serve(tmp_path, serve_model, runner=broken_runner) as client:
        job = wait_until_finished(client, upload(client, serve_images["png"]).json()["id"])
        download = client.get(f"/api/jobs/{job['id']}/files/color_png")
    assert job["status"] == "failed" and job["result"] is None
    assert job["error"] == "cannot read pixels, file is truncated"
    assert download.status_code == 409 and "failed" in download.json()["detail"]


def test_delete_removes_finished_and_stops_running_jobs(tmp_path, serve_model, serve_images):
    runner = GatedRunner()
    with serve(tmp_path, serve_model, runner=runner) as client:
        running = upload(client, serve_images["png"]).json()
        assert runner.entered.wait(10)
        folder = next((tmp_path / "work").glob(f"*/{running['id']}"))
        assert client.delete(f"/api/jobs/{running['id']}").status_code == 204
        deadline = time.monotonic() + 10
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        runner.release()
        done = wait_until_finished(client, upload(client, serve_images["png"]).json()["id"])
        done_folder = next((tmp_path / "work").glob(f"*/{done['id']}"))
        deleted = client.delete(f"/api/jobs/{done['id']}")
        gone = client.get(f"/api/jobs/{done['id']}")
    assert not folder.exists()
    assert deleted.status_code == 204 and not done_folder.exists()
    assert gone.status_code == 404 and "expired or was deleted" in gone.json()["detail"]


def test_results_expire_after_the_ttl_and_everything_goes_at_shutdown(tmp_path, serve_model, serve_images):
    now = [1000.0]
    with serve(tmp_path, serve_model, job_ttl_minutes=1) as client:
        jobs = ServeState.of(client.app).jobs
        jobs.clock = lambda: now[0]
        job = wait_until_finished(client, upload(client, serve_images["png"]).json()["id"])
        root = jobs.root
        assert oct(root.stat().st_mode & 0o777) == "0o700"
        now[0] += 59
        assert jobs.purge_expired() == [] and client.get(f"/api/jobs/{job['id']}").status_code == 200
        now[0] += 1
        assert jobs.purge_expired() == [job["id"]]
        assert client.get(f"/api/jobs/{job['id']}").status_code == 404
        assert not (root / job["id"]).exists()
        kept = upload(client, serve_images["png"]).json()
        wait_until_finished(client, kept["id"])
    assert not root.exists()
