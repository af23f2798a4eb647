"""Fixtures of the reliability tests: a small clean dataset to break copies of, and a tiny checkpoint."""

import builtins
import os
from pathlib import Path

import pytest
import torch
from reliability_helpers import save_tiny_checkpoint

from landseg.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="session")
def clean_scenes(tmp_path_factory) -> Path:
    """Three 64 x 64 georeferenced RGB scenes (seed 0) with code masks; read-only, copy before breaking."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("clean_scenes"), n_scenes=3, size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 3-band, 5-class (synthetic schema) classic U-Net checkpoint with seeded random weights."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_model") / "tiny.ckpt")


class RunsCommand:
    """Unpickles into ``os.system``: a shell command that leaves ``marker`` behind if it ever runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class EvaluatesCode:
    """Unpickles into ``builtins.eval`` of Python that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(params=[RunsCommand, EvaluatesCode], ids=["os.system", "builtins.eval"])
def malicious(request, tmp_path):
    """A file shaped like a landseg checkpoint whose card unpickles into a call; and its would-be marker."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "shared_model.ckpt"
    torch.save({"epoch": 0, "hyper_parameters": {"card": request.param(marker)}, "state_dict": {}}, path)
    return path, marker
