"""Fixtures of the reliability tests: a small clean dataset to break copies of, and a tiny checkpoint."""

from pathlib import Path

import pytest

from landseg.data.synthetic import make_synthetic_dataset

from reliability_helpers import save_tiny_checkpoint


@pytest.fixture(scope="session")
def clean_scenes(tmp_path_factory) -> Path:
    """Three 64 x 64 georeferenced RGB scenes (seed 0) with code masks; read-only, copy before breaking."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("clean_scenes"), n_scenes=3, size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 3-band, 5-class (synthetic schema) classic U-Net checkpoint with seeded random weights."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_model") / "tiny.ckpt")
