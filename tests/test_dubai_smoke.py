"""Smoke test on the real Dubai data when ../shared/datasets is present (skipped on a user's clone)."""

import json
from pathlib import Path

import numpy as np

from landseg.config import load_config
from landseg.evaluate import evaluate
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
    assert 0.0 <= result.best_miou <= 1.0

    evaluation = evaluate(
        load_ensemble([result.best_checkpoint]), config, "val", tmp_path / "eval", progress=False, overlays=1
    )
    metrics = json.loads(evaluation.metrics_path.read_text())
    assert metrics["images"] == 9
    assert set(metrics["per_class"]) == {"Building", "Land", "Road", "Vegetation", "Water"}
    matrix = np.array(metrics["confusion_matrix"])
    # every labelled pixel of tile 4 is counted once; ignore colours (#9B9B9B, black) are not
    assert 5_000_000 < matrix.sum() < 30_000_000
    assert np.isfinite(metrics["miou"])
