"""Fixtures shared by the whole test suite: landseg's own synthetic scenes, and the real data sets."""

from pathlib import Path

import pytest

from landseg.data.synthetic import SyntheticScene, generate_scene, make_synthetic_dataset


@pytest.fixture(scope="session", autouse=True)
def private_model_cache(tmp_path_factory):
    """Exported ONNX models are cached per user; the tests keep theirs apart and leave nothing behind."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LANDSEG_CACHE", str(tmp_path_factory.mktemp("landseg_cache")))
        patch.setenv("LANDSEG_EXPORT_IN_PROCESS", "1")  # a spawned exporter costs seconds per checkpoint
        yield


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """Six 96 x 96 georeferenced scenes (seed 0): ``images/scene_000.tif`` ... and ``masks/scene_000.tif`` ...

    Shared by the session: treat it as read-only.
    """
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), n_scenes=6, size=96, seed=0)


@pytest.fixture(scope="session")
def synthetic_scene() -> SyntheticScene:
    """One 128 x 128 RGB scene (seed 0); its arrays are shared by the session: copy before changing them."""
    return generate_scene(128, seed=0)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` next to the repository (real data), or skip where it is absent."""
    path = (Path(__file__).parents[1] / ".." / "shared" / "datasets").resolve()
    if not path.is_dir():
        pytest.skip("../shared/datasets not present")
    return path
