"""Fixtures of the web app's tests: a small checkpoint, its loaded model, and images in every format."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from serve_helpers import save_test_checkpoint

from landseg.checkpoint import load_checkpoint
from landseg.data.synthetic import generate_scene, write_scene


@pytest.fixture(scope="session")
def serve_checkpoint(tmp_path_factory) -> Path:
    return save_test_checkpoint(tmp_path_factory.mktemp("serve_model") / "tiny.ckpt")


@pytest.fixture(scope="session")
def serve_model(serve_checkpoint):
    """The loaded test model, shared read-only by the session (inference only)."""
    return load_checkpoint(serve_checkpoint)


@pytest.fixture(scope="session")
def serve_images(tmp_path_factory) -> dict[str, Path]:
    """One 96 x 96 synthetic scene as GeoTIFF (UTM, 0.5 m), PNG, JPEG and a 1-band grey PNG."""
    folder = tmp_path_factory.mktemp("serve_images")
    scene = generate_scene(96, seed=3)
    geotiff, _ = write_scene(scene, folder / "scene.tif", folder / "scene_mask.tif")
    rgb = np.moveaxis(scene.image, 0, -1)
    Image.fromarray(rgb).save(folder / "scene.png")
    Image.fromarray(rgb).save(folder / "scene.jpg", quality=92)
    Image.fromarray(rgb[..., 0]).save(folder / "grey.png")
    with rasterio.open(geotiff) as src:
        assert src.crs is not None
    return {"geotiff": geotiff, "png": folder / "scene.png", "jpeg": folder / "scene.jpg", "grey": folder / "grey.png"}
