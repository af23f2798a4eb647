"""Every file in configs/ parses and names its seed; every seed recipe trains two steps as written, on
synthetic scenes saved in its data set's layout, file formats and label encoding (slow)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from landseg.checkpoint import load_checkpoint
from landseg.classes import get_schema
from landseg.config import ExperimentConfig, load_config
from landseg.data.synthetic import generate_scene
from landseg.losses import build_loss, resolve_class_weights
from landseg.models import ModelSpec
from landseg.train.run import train

CONFIGS = Path(__file__).parents[2] / "configs"
SEED_CONFIGS = sorted(CONFIGS.glob("seed*.yaml"))
# ``*_prepare.yaml`` files configure ``landseg prepare``, not training.
EXPERIMENT_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.stem.endswith("_prepare"))


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: p.stem)
def test_every_config_parses(path):
    config = load_config(path)
    schema = get_schema(config.data.schema_)
    spec = config.model.for_data(schema.num_classes, len(config.data.bands or [1, 2, 3]))
    assert ModelSpec.from_dict(spec.to_dict()) == spec  # as a checkpoint's card stores it
    counts = np.arange(1, schema.num_classes + 1)
    build_loss(resolve_class_weights(config.train.loss, counts, counts * 3), schema.num_classes)
    assert set(config.train.sampling.rare_classes or []) <= set(schema.names)


def test_there_is_a_recipe_for_every_seed():
    assert {p.name[:7] for p in SEED_CONFIGS} == {f"seed00{i}" for i in range(5)}
    for path in SEED_CONFIGS:
        header = path.read_text().splitlines()[0]
        assert re.match(rf"# Seed {path.name[4:7]} \(.+\), sections? ", header), path.name


def write_in_layout(config: ExperimentConfig, root: Path, size: int = 96) -> None:
    """Synthetic scenes under ``root`` as ``config.data`` expects them: its path templates, its split
    fields, its image format and band count, its schema's codes or mask colours."""
    data = config.data
    schema = get_schema(data.schema_)
    fields = re.findall(r"\{(\w+)\}", data.images)
    if data.split.field:
        groups = [g for part in (data.split.train, data.split.val, data.split.test) for g in part or []]
        samples = [
            {data.split.field: g, **{f: f"{g}_{i}" for f in fields if f != data.split.field}}
            for g in groups
            for i in range(2)
        ]
    else:
        samples = [dict.fromkeys(fields, f"chip{i:02d}") for i in range(10)]
    bands = max(data.bands) if data.bands else 3
    # The five synthetic classes become five classes spread over the schema.
    classes = np.linspace(0, schema.num_classes - 1, 5).round().astype(int)
    for number, values in enumerate(samples):
        scene = generate_scene(size, seed=100 + number, bands=bands)
        image_path, mask_path = root / data.images.format(**values), root / data.masks.format(**values)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        write_image(image_path, scene.image)
        indices = classes[scene.labels]
        if schema.has_codes:
            write_image(mask_path, np.array([c.code for c in schema.classes], np.uint8)[indices][None])
        else:
            colours = np.array([c.mask_color for c in schema.classes], np.uint8)
            write_image(mask_path, colours[indices].transpose(2, 0, 1))


def write_image(path: Path, array: np.ndarray) -> None:
    if path.suffix == ".tif":
        profile = dict(
            driver="GTiff",
            width=array.shape[2],
            height=array.shape[1],
            count=array.shape[0],
            dtype="uint8",
            crs="EPSG:32632",
            transform=from_origin(500000, 5200000, 1, 1),
        )
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array)
    else:
        Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)).save(path, quality=95)


@pytest.mark.slow
@pytest.mark.parametrize("path", SEED_CONFIGS, ids=lambda p: p.stem)
def test_seed_recipe_trains_as_written(path, tmp_path):
    smoke = [
        "train.epochs=1",
        "train.steps_per_epoch=2",
        "train.batch_size=2",
        "train.crop_size=64",
        "train.val_tile=64",
        "train.val_every=1",
        f"data.root={tmp_path / 'data'}",
        "train.onnx_export=false",
    ]  # the recipe's training is under test; exports are tested in test_precision
    written = load_config(path)
    if written.model.encoder_weights == "imagenet":
        smoke.append("model.encoder_weights=null")  # no downloads here
    if written.train.swa is not None:
        smoke += ["train.swa.start_epoch=0", "train.swa.cycle_epochs=1"]
    config = load_config(path, smoke)
    write_in_layout(config, config.data.root)
    result = train(config, tmp_path / "run", progress=False)
    loaded = load_checkpoint(result.last_checkpoint)
    assert loaded.card.class_schema().name == written.data.schema_
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    if written.train.swa is not None:
        assert summary["swa_cycles_averaged"] == 1
    statistics = json.loads((tmp_path / "run" / "class_statistics.json").read_text())
    assert sum(c["pixels"] for c in statistics.values()) > 0
