"""``landseg serve`` with bad input: a checkpoint it cannot load stops it before it listens; an upload that
declares an enormous image is refused from its header, before a single pixel is decoded. (Empty,
truncated, mislabelled and wrong-band uploads: ``tests/serve/test_serve_api.py``.)"""

import pytest
import rasterio
from rasterio.transform import from_origin
from reliability_helpers import assert_one_line_error, truncate
from typer.testing import CliRunner

from landseg.cli import app

pytest.importorskip("fastapi", reason="landseg serve needs fastapi")
testclient = pytest.importorskip("fastapi.testclient", reason="the API tests need httpx")

from landseg.checkpoint import load_checkpoint  # noqa: E402
from landseg.serve import ServeSettings, create_app, uploads  # noqa: E402

runner = CliRunner()


def test_serve_refuses_a_truncated_checkpoint_before_listening(tmp_path, tiny_checkpoint, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started with a broken model"))
    broken = tmp_path / "model.ckpt"
    broken.write_bytes(tiny_checkpoint.read_bytes())
    truncate(broken, 0.5)
    result = runner.invoke(app, ["serve", "--checkpoint", str(broken), "--port", "8765"])
    assert_one_line_error(result, "model.ckpt", "checkpoint is truncated or corrupt")


def enormous_geotiff(path, side=60_000):
    """A valid GeoTIFF of ``side`` x ``side`` pixels that holds no data blocks at all (a small file)."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=side,
        height=side,
        count=3,
        dtype="uint8",
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        sparse_ok=True,
        compress="deflate",
        crs="EPSG:32632",
        transform=from_origin(500000, 5200000, 0.5, 0.5),
    ):
        pass
    return path


def test_upload_declaring_an_enormous_image_is_refused_unread(tmp_path, tiny_checkpoint, monkeypatch):
    path = enormous_geotiff(tmp_path / "bomb.tif")
    assert path.stat().st_size < 2_000_000
    monkeypatch.setattr(uploads, "read_image", lambda *a, **k: pytest.fail("pixels were read"))
    settings = ServeSettings(checkpoint=tiny_checkpoint, workdir=tmp_path / "work")
    model = load_checkpoint(tiny_checkpoint)
    with testclient.TestClient(create_app(settings, model=model)) as client, open(path, "rb") as handle:
        answer = client.post("/api/jobs", files={"file": ("bomb.tif", handle)})
        leftovers = [p for p in (tmp_path / "work").rglob("*") if p.is_file()]
    assert answer.status_code == 413
    assert "60000 x 60000 = 3,600,000,000 pixels" in answer.json()["detail"]
    assert leftovers == []
