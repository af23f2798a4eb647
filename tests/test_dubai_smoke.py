"""Smoke test on the real Dubai data when ../shared/datasets is present (skipped on a user's clone)."""

import json
from pathlib import Path

import numpy as np
import pytest
from tests.helpers import validation_confusion

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.config import load_config
from landseg.data.catalog import build_catalog, load_pair
from landseg.evaluate import evaluate
from landseg.metrics import ConfusionMatrix
from landseg.predict import load_ensemble
from landseg.train.run import train

CONFIG = Path(__file__).parents[1] / "configs" / "dubai.yaml"
TINY = [
    "model.arch=classic_unet",
    "model.encoder=null",
    "model.encoder_weights=null",
    "model.widths=[8,16,32]",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.batch_size=2",
    "train.crop_size=64",
    "data.split.train=[tile_1]",
    "data.split.val=[tile_4]",
    "train.val_tile=256",
]


def test_dubai_trains_and_evaluates_on_tile_4(tmp_path, shared_datasets):
    config = load_config(CONFIG, TINY)
    assert config.data.root == (shared_datasets / "dubai").resolve()
    result = train(config, tmp_path / "run", progress=False)
    assert result.best_checkpoint.exists()
    # The score that picked the best checkpoint is that checkpoint's own on tile 4, scored again here.
    assert result.best_miou == pytest.approx(validation_confusion(result.best_checkpoint, config).miou, abs=1e-6)

    evaluation = evaluate(
        load_ensemble([result.best_checkpoint]), config, "val", tmp_path / "eval", progress=False, overlays=1
    )
    metrics = json.loads(evaluation.metrics_path.read_text())
    assert metrics["images"] == 9
    assert set(metrics["per_class"]) == {"Building", "Land", "Road", "Vegetation", "Water"}
    matrix = np.array(metrics["confusion_matrix"])
    # Every labelled pixel of tile 4 is counted once, in its own class's row; ignore colours (#9B9B9B,
    # black) are not counted.
    assert matrix.sum(axis=1).tolist() == labelled_pixels_per_class(config, "val").tolist()
    assert 5_000_000 < matrix.sum() < 30_000_000
    assert metrics["miou"] == pytest.approx(ConfusionMatrix.from_matrix(matrix).miou)


def labelled_pixels_per_class(config, split: str) -> np.ndarray:
    schema = get_schema(config.data.schema_)
    counts = np.zeros(schema.num_classes, dtype=np.int64)
    for sample in build_catalog(config.data).split(split):
        _, truth = load_pair(sample, schema, tolerance=config.data.size_tolerance)
        counts += np.bincount(truth[truth != IGNORE_INDEX], minlength=schema.num_classes)
    return counts
