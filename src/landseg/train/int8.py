"""int8 models of trained checkpoints on a data config: calibration tiles from its training images, the
guard measured on a labelled held-out split (``predict.quantize`` does both).

``landseg train`` makes the best checkpoint's at the end (``train.int8_export``); ``landseg export
--precision int8`` makes one for any checkpoint or zoo model and a config naming labelled images, or
unlabelled images given one by one (a zoo model's guard is then agreement alone).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from landseg.classes import IGNORE_INDEX
from landseg.config import ExperimentConfig
from landseg.data.dataset import LabelledImage
from landseg.errors import CheckpointError, ConfigError
from landseg.io.raster import read_image
from landseg.predict.int8 import describe_guard, guard_passes
from landseg.predict.models import model_file, read_card
from landseg.predict.quantize import CALIBRATION_TILES, quantize_checkpoint
from landseg.train.calibrate import read_split

log = logging.getLogger(__name__)


def quantize_on_splits(
    reference: str | Path,
    config: ExperimentConfig,
    held_out: str = "val",
    side: int | None = None,
    keep_fp32: str = "first-last",
    progress: bool = True,
) -> tuple[Path, dict]:
    """The int8 model of a checkpoint or zoo model, calibrated on tiles of up to ``CALIBRATION_TILES``
    images of the config's ``train`` split and guarded on its ``held_out`` split; its file and guard."""
    card, model = read_card(reference), model_file(reference)
    images = read_split(config, "train", card, model, "calibrate int8 on", progress, limit=CALIBRATION_TILES)
    items = read_split(config, held_out, card, model, "measure the int8 guard on", progress)
    return quantize_checkpoint(
        reference, [item.image for item in images], items, side, keep_fp32, splits=("train", held_out)
    )


def quantize_on_images(
    reference: str | Path,
    calibration: Sequence[Path],
    guarded: Sequence[Path],
    side: int | None = None,
    keep_fp32: str = "first-last",
) -> tuple[Path, dict]:
    """The int8 model of a checkpoint or zoo model calibrated on unlabelled ``calibration`` images and
    guarded on other unlabelled images (agreement with fp32 only: no mIoU without labels)."""
    bands = read_card(reference).bands
    images = [read_image(path, bands=bands).data for path in calibration]
    items = []
    for path in guarded:
        pixels = read_image(path, bands=bands).data
        items.append(LabelledImage(pixels, np.full(pixels.shape[1:], IGNORE_INDEX, dtype=np.uint8), Path(path).name))
    return quantize_checkpoint(reference, images, items, side, keep_fp32, splits=("given images", "given images"))


def quantize_for_prediction(
    best: Path, config: ExperimentConfig, val_items: list[LabelledImage], side: int
) -> dict | None:
    """At the end of training: the int8 model of ``best`` beside it, guarded on the validation images
    already read; its path and guard. Best effort, like the fp32 export: a failure leaves fp32 in use."""
    if not val_items:
        log.warning("no int8 model: there are no validation images to measure its guard on")
        return None
    try:
        images = read_split(config, "train", read_card(best), best, "calibrate int8 on", False, limit=CALIBRATION_TILES)
        path, guard = quantize_checkpoint(best, [item.image for item in images], val_items, side)
    except (CheckpointError, ConfigError, OSError, RuntimeError) as exc:  # RuntimeError: ONNX Runtime's own
        log.warning("no int8 model beside %s: %s", best, exc)
        return None
    verdict = "--precision auto runs it" if guard_passes(guard) else "--precision auto keeps fp32"
    log.info("int8 model %s: %s; %s", path.name, describe_guard(guard), verdict)
    return {"path": str(path), "auto_runs_it": guard_passes(guard), **guard}
