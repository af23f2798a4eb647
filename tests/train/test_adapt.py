"""Learning from unlabelled images of another place: two synthetic domains that differ by a known colour
shift, and a model trained with and without the shifted domain's images given unlabelled."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tests.helpers import experiment, validation_confusion

from landseg.api import train
from landseg.checkpoint import read_checkpoint
from landseg.classes import IGNORE_INDEX
from landseg.config import AdaptConfig, load_config
from landseg.data.synthetic import generate_scene, write_scene
from landseg.errors import DataError
from landseg.train.adapt import MeanTeacher, cutmix, pseudo_labels
from landseg.train.module import TEACHER_KEY

SHIFT_GAIN = np.array([0.55, 0.8, 1.45])[:, None, None]
SHIFT_OFFSET = np.array([35.0, 25.0, -30.0])[:, None, None]
"""The other place: red duller and lifted, blue much brighter (other light, other ground)."""


def shifted(image: np.ndarray) -> np.ndarray:
    return np.clip(image * SHIFT_GAIN + SHIFT_OFFSET, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory) -> Path:
    """Scenes 000-003 as generated (labelled, training); 004 likewise (validation); 100-101 colour-shifted
    (the place to map: given unlabelled, scored as the ``test`` split)."""
    root = tmp_path_factory.mktemp("domains")
    for seed in (0, 1, 2, 3, 4, 100, 101):
        scene = generate_scene(128, seed=seed)
        image = shifted(scene.image) if seed >= 100 else scene.image
        write_scene(
            replace(scene, image=image),
            root / "images" / f"scene_{seed:03d}.tif",
            root / "masks" / f"scene_{seed:03d}.tif",
        )
    return root


def config_file(root: Path, folder: Path, **adapt) -> Path:
    config = experiment(
        root,
        train_ids=("000", "001", "002", "003"),
        val_ids=("004",),
        data={"split": {"field": "id", "train": ["000", "001", "002", "003"], "val": ["004"], "test": ["100", "101"]}},
        train={
            "crop_size": 64,
            "batch_size": 4,
            "epochs": 6,
            "steps_per_epoch": 25,
            "val_every": 6,
            "seed": 0,
            "onnx_export": False,
            "calibrate": False,
            "optimizer": {"name": "adamw", "lr": 0.01},
            "adapt": {"ramp_steps": 30, **adapt},
        },
        model={"widths": [16, 32]},
    )
    path = folder / "config.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_adapted_model_beats_the_unadapted_one_on_the_shifted_domain(two_domains, tmp_path):
    scores = {}
    for adapted in (False, True):
        folder = tmp_path / ("adapted" if adapted else "plain")
        path = config_file(two_domains, folder, weight=1)
        shifted_images = [str(two_domains / "images" / "scene_1*.tif")] if adapted else []
        result = train(path, folder / "run", adapt_to=shifted_images, progress=False)
        config = load_config(path)
        scores[adapted] = validation_confusion(result.last_checkpoint, config, "test").miou
        rows = list(csv.DictReader((folder / "run" / "history.csv").open()))
        assert ("adapt_learnt_share" in rows[-1]) == adapted
        if adapted:  # the epoch's mean share of unlabelled pixels given a pseudo-label: at least the class quota
            assert 0.15 < float(rows[-1]["adapt_learnt_share"]) <= 1
            assert float(rows[-1]["adapt_loss"]) > 0
        # A resumed run continues with the teacher it had, not a fresh copy of the network.
        assert (TEACHER_KEY in read_checkpoint(result.last_checkpoint)) == adapted
    # Histogram transfer alone (no pseudo-labels): no unlabelled crops are read during training.
    folder = tmp_path / "transfer"
    path = config_file(two_domains, folder)  # the default: histogram transfer alone
    result = train(path, folder / "run", adapt_to=[str(two_domains / "images" / "scene_1*.tif")], progress=False)
    scores["transfer"] = validation_confusion(result.last_checkpoint, load_config(path), "test").miou
    assert TEACHER_KEY not in read_checkpoint(result.last_checkpoint)
    print(
        f"mIoU on the shifted domain: plain {scores[False]:.3f}, adapted {scores[True]:.3f}, "
        f"transfer alone {scores['transfer']:.3f}"
    )
    assert scores["transfer"] > scores[False] + 0.03
    assert scores[True] > scores[False] + 0.03


def test_pseudo_labels_keep_the_confident_and_each_classs_most_confident_pixels():
    # Class 0 is predicted with high confidence everywhere on the left, class 1 with low confidence on the right.
    probabilities = torch.zeros(1, 2, 4, 4)
    probabilities[0, 0, :, :2] = torch.tensor([0.95, 0.97])
    probabilities[0, 1, :, 2:] = torch.tensor([0.55, 0.6])
    probabilities[0, 1, :, :2] = 1 - probabilities[0, 0, :, :2]
    probabilities[0, 0, :, 2:] = 1 - probabilities[0, 1, :, 2:]
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = False
    alone = pseudo_labels(probabilities, valid, threshold=0.9, class_share=0)
    assert (alone[0, :, :2][valid[0, :, :2]] == 0).all() and alone[0, 0, 0] == IGNORE_INDEX
    assert (alone[0, :, 2:] == IGNORE_INDEX).all()
    balanced = pseudo_labels(probabilities, valid, threshold=0.9, class_share=0.5)
    assert (balanced[0, :, 3] == 1).all() and (balanced[0, :, 2] == IGNORE_INDEX).all()


def test_a_sharpened_teacher_labels_pixels_a_focal_loss_left_under_confident():
    # Logits 1.5 apart between two classes: probability 0.82 as they come, 0.95 at temperature 0.5.
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x[:, :1] * 0 + 1.5, x[:, :1] * 0], dim=1)

    weak = torch.zeros(2, 1, 8, 8)
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    shares = {}
    for temperature in (1.0, 0.5):
        config = AdaptConfig(class_share=0, cutmix=0, ramp_steps=0, teacher_temperature=temperature)
        shares[temperature] = MeanTeacher(Fixed(), config).step(Fixed(), weak, weak, valid, 0).learnt_share
    assert shares == {1.0: 0.0, 0.5: 1.0}


def test_cutmix_moves_pixels_and_labels_together():
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    labels = torch.stack([torch.zeros(8, 8, dtype=torch.long), torch.ones(8, 8, dtype=torch.long)])
    mixed, mixed_labels = cutmix(images, labels, probability=1.0, generator=torch.Generator().manual_seed(0))
    pasted = mixed_labels[0] == 1
    assert 0.2 <= pasted.float().mean() <= 0.55
    assert torch.equal(mixed[0, 0][pasted], images[1, 0][pasted])
    assert torch.equal(mixed[0, 0][~pasted], images[0, 0][~pasted])
    assert torch.equal(cutmix(images, labels, 0.0)[0], images)


def test_unlabelled_images_must_be_the_same_kind_of_imagery(two_domains, tmp_path):
    from tests.helpers import write_geotiff

    sixteen_bit = write_geotiff(tmp_path / "sixteen_bit.tif", np.zeros((3, 64, 64), dtype=np.uint16))
    two_bands = write_geotiff(tmp_path / "two_bands.tif", np.zeros((2, 64, 64), dtype=np.uint8))
    path = config_file(two_domains, tmp_path / "run")
    with pytest.raises(DataError, match=r"sixteen_bit.tif: holds uint16 pixels, the labelled images uint8"):
        train(path, tmp_path / "run" / "out", adapt_to=[sixteen_bit], progress=False)
    with pytest.raises(DataError, match=r"two_bands.tif: has 2 bands, but training reads bands \[1, 2, 3\]"):
        train(path, tmp_path / "run" / "out", adapt_to=[two_bands], progress=False)
    with pytest.raises(DataError, match="no file matches it as a pattern"):
        train(path, tmp_path / "run" / "out2", adapt_to=[tmp_path / "nothing_*.tif"], progress=False)
    assert AdaptConfig().threshold == 0.9
