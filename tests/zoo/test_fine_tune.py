"""Fine-tuning from the zoo (issue 17): ``model.init: dynamic-world`` starts a training run from Dynamic World's
network and weights, its classification layer replaced for another number of classes, and gives a checkpoint
that reads Sentinel-2 scenes as the zoo model does (its bands, its normalization).

The data are synthetic scenes as the 9 bands Dynamic World reads, in L1C-like digital numbers, named B2 ...
B12 on a 10 m grid (``sentinel2_products.sentinel2_like_pixels``); a few steps of training on 64 px scenes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import rasterio
import torch
import yaml
from safetensors.torch import load_file
from tests.helpers import experiment
from tests.zoo.sentinel2_products import DW_BANDS, sentinel2_like_pixels, write_labels, write_sentinel2_like_stack
from typer.testing import CliRunner

from landseg.checkpoint import load_checkpoint
from landseg.cli.main import app
from landseg.config import load_config, parse_config
from landseg.errors import ConfigError, DataError
from landseg.predict import PredictOptions, load_ensemble, predict_scene
from landseg.predict.bands import match_bands
from landseg.train.from_zoo import zoo_start
from landseg.train.run import train
from landseg.zoo import get_zoo_model

DW = get_zoo_model("dynamic-world")
SIZE = 64
SCENES = ("000", "001", "002", "003")
# The synthetic schema's Field, Forest, Water, Road, Building as three classes, and as Dynamic World's codes.
THREE = {
    "name": "three",
    "ignore_codes": [255],
    "classes": [
        {"name": "Vegetation", "color": "#397D49", "code": 0},
        {"name": "Water", "color": "#419BDF", "code": 1},
        {"name": "Built", "color": "#C4281B", "code": 2},
    ],
}
TO_THREE = np.array([0, 0, 1, 2, 2])
TO_DYNAMIC_WORLD = np.array([4, 1, 0, 6, 6])  # Crops, Trees, Water, Built, Built


@pytest.fixture(scope="module")
def sentinel2_scenes(tmp_path_factory) -> Path:
    """Four 64 x 64 scenes: ``images/scene_NNN.tif`` (9 named bands), ``masks3/`` and ``masks9/`` labels."""
    root = tmp_path_factory.mktemp("sentinel2_like")
    for i, name in enumerate(SCENES):
        pixels, labels = sentinel2_like_pixels(SIZE, seed=40 + i)
        write_sentinel2_like_stack(root / "images" / f"scene_{name}.tif", pixels)
        write_sentinel2_like_stack(
            root / "unnamed13" / f"scene_{name}.tif", np.concatenate([pixels[:1], pixels, pixels[:3]]), names=False
        )
        write_labels(root / "masks3" / f"scene_{name}.tif", TO_THREE[labels])
        write_labels(root / "masks9" / f"scene_{name}.tif", TO_DYNAMIC_WORLD[labels])
    return root


def finetune_config(root: Path, schema=THREE, masks: str = "masks3", model=None, data=None, **train_options):
    """Three scenes to train on and one to validate, fine-tuning Dynamic World for a few steps on the CPU."""
    config = experiment(
        root,
        SCENES[:3],
        SCENES[3:],
        name="dw-finetune",
        base_model=model or {"init": "dynamic-world"},
        data={"schema": schema, "masks": masks + "/scene_{id}.tif", **(data or {})},
        train={
            "batch_size": 4,
            "steps_per_epoch": 3,
            "precision": "32-true",
            "accelerator": "cpu",
            "onnx_export": False,
            "optimizer": {"name": "adam", "lr": 0.01},
            **train_options,
        },
    )
    return parse_config(config)


class StartingWeights(L.Callback):
    """The network's weights when training starts, after everything train() does to set it up."""

    def on_train_start(self, trainer, module):
        self.state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}


def test_fine_tuning_to_three_classes_replaces_only_the_head(tmp_path, sentinel2_scenes, caplog):
    caplog.set_level(logging.INFO, logger="landseg.train.run")
    start = StartingWeights()
    result = train(finetune_config(sentinel2_scenes), tmp_path / "run", progress=False, extra_callbacks=[start])

    zoo = load_file(str(DW.weights_path))
    for key, tensor in zoo.items():
        if key.startswith("head."):
            assert start.state[key].shape[0] == 3 and start.state[key].shape[1:] == tensor.shape[1:]
        else:
            assert torch.equal(start.state[key], tensor), key
    assert "except head, replaced (freshly initialised) for 3 classes instead of its 9" in caplog.text

    loaded = load_checkpoint(result.last_checkpoint)
    card = loaded.card
    assert card.model["arch"] == "dynamic_world" and card.model["num_classes"] == 3
    assert card.normalization == DW.normalization and card.normalization["kind"] == "dynamic_world"
    assert card.bands == list(DW.bands) and card.band_names == list(DW_BANDS)
    assert card.training["init"]["zoo_model"] == "dynamic-world" and card.training["init"]["replaced_layers"] == [
        "head"
    ]
    assert card.training["init"]["licence"].startswith("Apache-2.0")
    trained = loaded.network.state_dict()
    assert not torch.equal(trained["head.weight"], start.state["head.weight"])  # it did train
    # Bands are found as the zoo model finds them: by name, else at its indices in the 13-band stack.
    assert match_bands(card, 13, [None] * 13, "x.tif", "m") == list(DW.bands)
    assert match_bands(card, 9, DW_BANDS, "x.tif", "m") == list(range(1, 10))

    # Prediction through the core: a 3-class map of a scene it has not seen.
    pixels, _ = sentinel2_like_pixels(SIZE, seed=50)
    scene = write_sentinel2_like_stack(tmp_path / "new" / "s2.tif", pixels)
    written = predict_scene(
        scene,
        load_ensemble([result.last_checkpoint], engine="torch"),
        tmp_path / "maps",
        PredictOptions(tile=64, probabilities=True),
    )
    with rasterio.open(written.paths["classes"]) as classes, rasterio.open(written.paths["probabilities"]) as probs:
        assert set(np.unique(classes.read(1))) <= {0, 1, 2} and classes.shape == (SIZE, SIZE)
        assert probs.count == 3

    # The run's config.yaml names the network it trained, and trains again as it is.
    again = load_config(tmp_path / "run" / "config.yaml")
    assert again.model.arch == "dynamic_world" and again.model.encoder is None and zoo_start(again) is DW


def test_fine_tuning_with_its_nine_classes_keeps_every_weight(tmp_path, sentinel2_scenes, caplog):
    caplog.set_level(logging.INFO, logger="landseg.train.run")
    start = StartingWeights()
    schema = DW.schema_dict() | {"ignore_codes": [255]}
    result = train(
        finetune_config(sentinel2_scenes, schema=schema, masks="masks9", steps_per_epoch=1),
        tmp_path / "run",
        progress=False,
        extra_callbacks=[start],
    )
    zoo = load_file(str(DW.weights_path))
    assert all(torch.equal(start.state[key], tensor) for key, tensor in zoo.items())
    assert torch.equal(start.state["head.weight"], zoo["head.weight"]) and start.state["head.weight"].shape[0] == 9
    assert "every layer starts from its weights (9 classes, as its own)" in caplog.text
    assert load_checkpoint(result.last_checkpoint).card.training["init"]["replaced_layers"] == []


def test_a_13_band_stack_without_names_gives_the_zoo_models_bands(tmp_path, sentinel2_scenes):
    from landseg.io.raster import raster_info
    from landseg.train.from_zoo import zoo_bands

    config = finetune_config(sentinel2_scenes, data={"images": "unnamed13/scene_{id}.tif"})
    info = raster_info(sentinel2_scenes / "unnamed13" / "scene_000.tif")
    assert zoo_bands(DW, config, info.count, info.descriptions) == list(DW.bands)


@pytest.mark.parametrize(
    "model, data, message",
    [
        (
            {"init": "dynamic-world"},
            {"bands": [1, 2, 3]},
            "data.bands lists 3 bands, but model.init dynamic-world reads 9 bands (B2, B3, B4, B5, B6, B7, B8, B11, B12)",
        ),
        (
            {"init": "dynamic-world"},
            {"bands": [1, 2, 3, 4, 5, 6, 7, 9, 8]},
            "data.bands picks bands named B2, B3, B4, B5, B6, B7, B8, B12, B11, but model.init dynamic-world reads",
        ),
        (
            {"init": "dynamic-world"},
            {"images": "five/scene_{id}.tif"},
            "the training images have 5 bands, but model.init dynamic-world reads 9 bands",
        ),
        (
            {"init": "dynamic-world", "arch": "deeplabv3plus"},
            {},
            "model.init dynamic-world fine-tunes its own network (dynamic_world), so model.arch 'deeplabv3plus' contradicts",
        ),
        ({"init": "dynamic-world", "encoder": "resnet34"}, {}, "takes no model.encoder (got 'resnet34')"),
        (
            {"init": "dynamic-world"},
            {"normalization": {"mode": "stats"}},
            "normalizes inputs as dynamic-world does (kind 'dynamic_world'), so data.normalization.mode contradicts it",
        ),
        ({"init": "dynamicworld"}, {}, "unknown zoo model 'dynamicworld'"),
    ],
    ids=["three-bands", "band-order", "five-band-images", "arch", "encoder", "normalization", "unknown"],
)
def test_configs_that_contradict_the_init_are_one_line_config_errors(tmp_path, sentinel2_scenes, model, data, message):
    if "images" in data:
        for name in SCENES:
            pixels, _ = sentinel2_like_pixels(SIZE, seed=40)
            write_sentinel2_like_stack(tmp_path / "five" / f"scene_{name}.tif", pixels[:5], names=False)
            (tmp_path / "masks3").mkdir(exist_ok=True)
            (tmp_path / "masks3" / f"scene_{name}.tif").write_bytes(
                (sentinel2_scenes / "masks3" / f"scene_{name}.tif").read_bytes()
            )
    root = tmp_path if "images" in data else sentinel2_scenes
    with pytest.raises(ConfigError) as error:
        train(finetune_config(root, model=model, data=data), tmp_path / "run", progress=False)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_the_command_says_it_in_one_line(tmp_path, sentinel2_scenes):
    config = tmp_path / "finetune.yaml"
    data = finetune_config(sentinel2_scenes, data={"bands": [2, 3, 4]}).to_yaml_dict()
    data["model"] = {"init": "dynamic-world"}
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data.bands lists 3 bands, but model.init dynamic-world reads 9" in errors[0]


def test_training_images_in_other_units_are_refused(tmp_path):
    for name in SCENES:
        pixels, labels = sentinel2_like_pixels(SIZE, seed=40)
        write_sentinel2_like_stack(tmp_path / "images" / f"scene_{name}.tif", (pixels / 10000).astype(np.float32))
        write_labels(tmp_path / "masks3" / f"scene_{name}.tif", TO_THREE[labels])
    with pytest.raises(DataError, match="the training images have float32 pixels whose brightest band reaches only"):
        train(finetune_config(tmp_path), tmp_path / "run", progress=False)
