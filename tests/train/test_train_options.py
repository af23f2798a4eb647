"""train() with the recipe options composed: a loss mix with statistical weights, equibatch, photometric
and scale augmentation, SWA, early stopping, gradient clipping and channels_last, on synthetic scenes."""

import json

import numpy as np
import pytest
import torch
import yaml
from tests.helpers import experiment, validation_confusion

from landseg.checkpoint import load_checkpoint, read_checkpoint
from landseg.classes import get_schema
from landseg.config import parse_config
from landseg.data.catalog import build_catalog, load_pair
from landseg.data.sampling import ClassStatistics
from landseg.errors import ConfigError
from landseg.losses import statistical_class_weights
from landseg.train.run import train


def recipe_config(root, **train_options):
    """Four scenes to train on, one to validate; two epochs of two steps of a three-level classic U-Net."""
    train_section = {"batch_size": 5, "epochs": 2, "steps_per_epoch": 2, **train_options}
    config = experiment(
        root,
        ["000", "001", "002", "003"],
        ["004"],
        name="options",
        base_model={"arch": "classic_unet", "widths": [8, 16, 32]},
        train=train_section,
    )
    return parse_config(config)


def test_composed_recipe(tmp_path, synthetic_dataset):
    config = recipe_config(
        synthetic_dataset,
        loss={
            "name": "sum",
            "terms": [
                {"name": "ce", "weight": 0.5, "class_weights": "median_frequency"},
                {"name": "lovasz", "weight": 0.5},
            ],
        },
        sampling={"name": "equibatch"},
        augment={"brightness": 0.2, "gamma": 0.2, "color": 0.1, "scale": [0.8, 1.25]},
        swa={"start_epoch": 1, "cycle_epochs": 1},
        early_stopping={"patience": 3},
        gradient_clip=1.0,
        channels_last=True,
    )
    result = train(config, tmp_path / "run", progress=False)

    # The checkpoint records the weights the statistic gave, the run folder the statistic's name.
    schema = get_schema("synthetic")
    masks = [load_pair(s, schema)[1] for s in build_catalog(config.data).split("train")]
    stats = ClassStatistics.from_masks(masks, schema.num_classes)
    expected = statistical_class_weights("median_frequency", stats.pixels, stats.present_image_pixels)
    stored = read_checkpoint(result.last_checkpoint)["hyper_parameters"]["train"]["loss"]["terms"][0]["class_weights"]
    np.testing.assert_allclose(stored, expected, rtol=1e-6)
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["train"]["loss"]["terms"][0]["class_weights"] == "median_frequency"
    shares = json.loads((tmp_path / "run" / "class_statistics.json").read_text())
    assert [shares[n]["pixels"] for n in schema.names] == stats.pixels.tolist()

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["swa_cycles_averaged"] == 1
    # SWA replaced the weights after the last validation: the final score is the averaged weights' own.
    averaged = validation_confusion(result.last_checkpoint, config)
    assert summary["final_val_miou"] == pytest.approx(averaged.miou, abs=1e-6)
    loaded = load_checkpoint(result.last_checkpoint)
    with torch.no_grad():
        assert loaded.network(torch.zeros(1, 3, 32, 32)).shape == (1, 5, 32, 32)


def test_early_stopping_needs_validation_images(tmp_path, synthetic_dataset):
    config = recipe_config(synthetic_dataset, early_stopping={"patience": 2})
    config.data.split.val = []
    with pytest.raises(ConfigError, match="early_stopping needs validation images"):
        train(config, tmp_path / "run", progress=False)


def test_class_weights_must_fit_the_schema(tmp_path, synthetic_dataset):
    config = recipe_config(synthetic_dataset, loss={"name": "ce", "class_weights": [1.0, 2.0]})
    with pytest.raises(ConfigError, match=r"train\.loss: loss class_weights has 2 values but the schema has 5"):
        train(config, tmp_path / "run", progress=False)
