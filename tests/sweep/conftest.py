"""A tiny experiment for sweep tests: a 2-level classic U-Net of 4 and 8 channels on the shared synthetic
scenes, one or a few epochs of two steps; a trial is seconds."""

import pytest
import yaml


def tiny_experiment(root, epochs: int = 1) -> dict:
    return {
        "name": "tiny-sweep",
        "data": {
            "root": str(root),
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "masks": "masks/scene_{id}.tif",
            "split": {"field": "id", "train": ["000", "001", "002", "003"], "val": ["004", "005"]},
        },
        "model": {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": [4, 8]},
        "train": {
            "crop_size": 32,
            "batch_size": 2,
            "epochs": epochs,
            "steps_per_epoch": 3,
            "val_tile": 96,
            "scheduler": {"name": "none"},
            "precision": "32-true",
        },
    }


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, synthetic_dataset):
    path = tmp_path_factory.mktemp("sweep_cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(synthetic_dataset)))
    return path


@pytest.fixture(scope="module")
def tiny_config_2_epochs(tmp_path_factory, synthetic_dataset):
    path = tmp_path_factory.mktemp("sweep_cfg2") / "tiny2.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment(synthetic_dataset, epochs=2)))
    return path


@pytest.fixture
def lr_space(tmp_path):
    """A normal learning rate against one that cannot move the weights."""
    path = tmp_path / "space.yaml"
    path.write_text("train.optimizer.lr: {choice: [1e-9, 0.05]}\n")
    return path
