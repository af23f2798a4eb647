"""Temperature scaling at the end of training: each checkpoint's temperature, fitted on the validation
images through the inference core, written on its model card.

The validation images go through ``predict_array`` as validation scores them (tile ``val_tile``, overlap
``val_overlap``, the card's scale and normalization), with the checkpoint's weights and no temperature;
the logarithms of the probabilities it returns at labelled pixels (at most ``MAX_PIXELS``, the same share
drawn at random from every image) are what ``calibration.fit_temperature`` fits. The card keeps the
temperature and, on those pixels, the ECE, Brier score and negative log-likelihood before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from landseg.calibration import BINS, CalibrationTally, fit_temperature, tempered_probabilities
from landseg.checkpoint import CARD_KEY, ModelCard, read_checkpoint
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.config import ExperimentConfig, TrainConfig
from landseg.data.catalog import build_catalog
from landseg.data.dataset import LabelledImage, load_labelled_images
from landseg.errors import ConfigError
from landseg.io.write import atomic_output
from landseg.maps.names import check_model_classes
from landseg.predict.core import predict_array
from landseg.predict.ensemble import Ensemble, load_ensemble
from landseg.predict.models import read_card
from landseg.predict.options import PredictOptions

MAX_PIXELS = 1_000_000
"""Labelled validation pixels the temperature is fitted on, at most: one number needs no more."""


def calibrate_on_split(
    paths: Sequence[Path], config: ExperimentConfig, split: str, progress: bool = True
) -> dict[Path, dict]:
    """``landseg calibrate``: fit the temperature of trained checkpoints on a labelled ``split`` of
    ``config`` (images the networks were not trained on, and not the ones they will be scored on), as
    training does on its validation images, and store it on their cards."""
    items = read_split(config, split, read_card(paths[0]), Path(paths[0]), "fit the temperature on", progress)
    return calibrate_checkpoints(paths, items, config.train, split)


def read_split(
    config: ExperimentConfig,
    split: str,
    card: ModelCard,
    model: Path,
    purpose: str,
    progress: bool = True,
    limit: int | None = None,
) -> list[LabelledImage]:
    """The labelled images of ``split`` (at most ``limit``, drawn at random) with the card's bands, at their
    own resolution as prediction reads them; the model's classes must be the config's."""
    samples = build_catalog(config.data).splits.get(split, [])
    if not samples:
        raise ConfigError(f"data.split has no {split!r} images to {purpose}")
    if limit is not None and len(samples) > limit:
        chosen = np.random.default_rng(0).choice(len(samples), limit, replace=False)
        samples = [samples[i] for i in sorted(chosen)]
    schema = get_schema(config.data.schema_)
    check_model_classes(card.class_schema().names, schema.names, model)
    data = config.data
    return load_labelled_images(
        samples,
        schema,
        list(card.bands),
        tolerance=data.size_tolerance,
        unknown=data.unknown_labels,
        nodata=data.nodata,
        progress=progress,
        description=f"Reading {split} images",
    )


def calibrate_checkpoints(
    paths: Sequence[Path], items: list[LabelledImage], tc: TrainConfig, split: str = "val"
) -> dict[Path, dict]:
    """Fit and store the temperature of each checkpoint in ``paths`` on ``items`` (the ``split``'s
    images); checkpoints holding the same weights (best and last of a run whose best is its end) are
    fitted once."""
    fitted: dict[Path, dict] = {}
    done: list[tuple[dict, dict]] = []
    for path in dict.fromkeys(Path(p) for p in paths):
        raw = read_checkpoint(path)
        weights = raw["state_dict"]
        calibration = next((c for w, c in done if _same_weights(w, weights)), None)
        if calibration is None:
            ensemble = load_ensemble([path], engine="torch")
            ensemble.members[0].card.calibration = None  # fitted on the network's own probabilities
            scores, truth = validation_scores(ensemble, items, tc)
            if truth.size == 0:
                continue  # no labelled validation pixel: nothing to fit on, the model stays uncalibrated
            calibration = temperature_card(scores, truth, len(items), split)
            done.append((weights, calibration))
        write_calibration(path, calibration, raw)
        fitted[path] = calibration
    return fitted


def _same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def validation_scores(ensemble: Ensemble, items: list[LabelledImage], tc: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(K, N)`` log-probabilities and ``(N,)`` classes of labelled pixels of the validation images."""
    rng = np.random.default_rng(0)
    per_image = MAX_PIXELS // max(len(items), 1)
    scores, truth = [], []
    for item in items:
        options = PredictOptions(
            tile=tc.val_tile,
            overlap=tc.val_overlap,
            bands=tuple(range(1, len(item.image) + 1)),
            allow_input_mismatch=True,
        )
        predicted = predict_array(item.image, ensemble, options)
        usable = item.mask != IGNORE_INDEX
        if predicted.valid is not None:
            usable &= predicted.valid
        rows, cols = np.nonzero(usable)
        if rows.size > per_image:
            chosen = rng.choice(rows.size, per_image, replace=False)
            rows, cols = rows[chosen], cols[chosen]
        tiny = np.finfo(np.float32).tiny
        scores.append(np.log(np.maximum(predicted.probabilities[:, rows, cols], tiny)))
        truth.append(item.mask[rows, cols].astype(np.int64))
    return np.concatenate(scores, axis=1), np.concatenate(truth)


def temperature_card(scores: np.ndarray, truth: np.ndarray, images: int, split: str = "val") -> dict:
    """The fitted temperature and what it does to the fitting pixels' calibration, as the card stores it."""
    temperature = fit_temperature(scores, truth)
    shown = scores.argmax(axis=0)
    measured: dict[str, dict] = {"ece": {}, "brier": {}, "nll": {}}
    for when, applied in (("before", 1.0), ("after", temperature)):
        probabilities = tempered_probabilities(scores, applied)
        tally = CalibrationTally(len(scores))
        tally.update(probabilities, shown, truth)
        measured["ece"][when], measured["brier"][when] = tally.ece(), tally.brier()
        picked = probabilities[truth, np.arange(truth.size)]
        measured["nll"][when] = float(-np.log(np.maximum(picked, 1e-300)).mean())
    return {
        "method": "temperature scaling",
        "temperature": temperature,
        "fitted_on": {"split": split, "images": images, "pixels": int(truth.size)},
        "binning": f"{BINS} equal-width bins of [0, 1]",
        **measured,
    }


def write_calibration(path: Path, calibration: dict, raw: dict | None = None) -> None:
    """Put ``calibration`` on the card of the checkpoint at ``path`` (``raw``: its contents, when already
    read), rewriting it atomically."""
    raw = read_checkpoint(path) if raw is None else raw
    raw["hyper_parameters"][CARD_KEY]["calibration"] = calibration
    with atomic_output(path) as temporary:
        torch.save(raw, temporary)
