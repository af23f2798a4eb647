"""The input guard measured both ways, as ``landseg predict`` meets it (``core.lay_out``, which samples the
input like every prediction does): false refusals of every image and 512 x 512 window of a data set given to
a model trained on that data set's pixels, and true refusals of each window rescaled the wrong way.

A model here is a card recording its training pixels as ``landseg train`` records them
(``io.pixel_stats.pixel_stats`` of the training images in their dtype); the guard never runs the network.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from landseg.checkpoint import ModelCard
from landseg.classes import get_schema
from landseg.errors import DataError
from landseg.io.pixel_stats import pixel_stats
from landseg.normalization import Normalization
from landseg.predict import core
from landseg.predict.ensemble import Ensemble
from landseg.predict.networks import Member, TorchNetwork
from landseg.predict.options import PredictOptions

WINDOW = 512
HINT_TOLERANCE = 0.05
"""A hint counts as right within 5 % of the true factor: the guard knows encodings (0-255, 0-10000, 0-1),
not the exact factor a user's conversion applied (x40 reaches 10200, reflectance 10000)."""
SCHEMA = get_schema("synthetic")
HINT = re.compile(r"--input-scale-values \(e\.g\. ([0-9.e+-]+)\)")


# -- quiet scenes: little contrast, ordinary units ------------------------------------------------------
def smooth_field(shape: tuple[int, int], seed: int, cells: int = 8) -> np.ndarray:
    """Values in [0, 1] varying smoothly over ``shape``: swell on the sea, thickness of a haze."""
    coarse = np.random.default_rng(seed).random((cells, cells))
    rows = np.linspace(0, cells - 1, shape[0])
    cols = np.linspace(0, cells - 1, shape[1])
    row_part = np.array([np.interp(cols, np.arange(cells), line) for line in coarse])
    field = np.array([np.interp(rows, np.arange(cells), column) for column in row_part.T]).T
    return (field - field.min()) / max(np.ptp(field), 1e-9)


def open_sea(side: int = 512, low: int = 20, high: int = 44, seed: int = 3) -> np.ndarray:
    """8-bit RGB open water within ``low``-``high`` (the issue's example: 20-44), bluer than red."""
    swell = smooth_field((side, side), seed)
    noise = np.random.default_rng(seed).normal(0, 0.08, (3, side, side))
    tint = np.array([0.5, 0.8, 1.0])[:, None, None]
    return np.clip(low + (high - low) * tint * (swell + noise), low, high).astype(np.uint8)


def haze(scene: np.ndarray, low: int = 90, high: int = 109) -> np.ndarray:
    """A scene under haze: its contrast squeezed into ``low``-``high`` (the issue's example: 90-109)."""
    return (low + scene.astype(np.float64) * (high - low) / 255).round().astype(np.uint8)


# -- encodings: the same pixels stored the ways users store them ---------------------------------------
def _byte_from_reflectance(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels.astype(np.float64) * 255 / 10_000), 0, 255).astype(np.uint8)


ENCODE: dict[str, dict[str, Callable[[np.ndarray], np.ndarray]]] = {
    # data sets stored as 8-bit pixels (photos, true-colour exports)
    "byte": {
        "byte": lambda p: p,
        "counts16": lambda p: p.astype(np.uint16) * 40,
        "unit": lambda p: (p / 255).astype(np.float32),
        "reflectance": lambda p: np.rint(p * (10_000 / 255)).astype(np.uint16),
    },
    # data sets stored as reflectance x 10000 (Sentinel-2, Landsat surface reflectance)
    "reflectance": {
        "byte": _byte_from_reflectance,
        "counts16": lambda p: _byte_from_reflectance(p).astype(np.uint16) * 40,
        "unit": lambda p: (p / 10_000).astype(np.float32),
        "reflectance": lambda p: p,
    },
}


@dataclass(frozen=True)
class Mistake:
    """A model trained on pixels in one encoding, given pixels in another; ``factor`` converts them back."""

    name: str
    training: str
    given: str
    factor: float


MISTAKES = [
    Mistake("x40 as uint16", "byte", "counts16", 1 / 40),
    Mistake("/255 as float32", "byte", "unit", 255.0),
    Mistake("8-bit given to a 16-bit model", "counts16", "byte", 40.0),
    Mistake("0-10000 reflectance given to a 0-1 model", "unit", "reflectance", 1e-4),
]


# -- a model that only knows its training pixels -------------------------------------------------------
def model_trained_on(images: Iterable[np.ndarray], name: str = "model") -> Ensemble:
    """An ensemble whose card records ``images`` (``(C, H, W)``, one dtype) as its training pixels."""
    images = iter(images)
    first = next(images)
    bands = first.shape[0]
    card = ModelCard(
        model={},
        schema=SCHEMA.to_dict(),
        normalization=Normalization.symmetric(bands).to_dict(),
        bands=list(range(1, bands + 1)),
        tile_size=64,
        input_stats=pixel_stats(chain([first], images), str(first.dtype)).to_dict(),
    )
    network = TorchNetwork(torch.nn.Conv2d(bands, SCHEMA.num_classes, 1), channels_last=False)
    return Ensemble([Member(card, network, Path(f"{name}.ckpt"))])


def refusal(ensemble: Ensemble, pixels: np.ndarray, nodata: float | None, source: str) -> str | None:
    """The one-line message ``landseg predict`` would stop with, or None when it would predict."""
    try:
        core.lay_out(core.ArrayRaster(pixels, nodata), ensemble, PredictOptions(), source)
    except DataError as exc:
        return str(exc)
    return None


def hint(message: str) -> float | None:
    found = HINT.search(message)
    return float(found.group(1)) if found else None


def windows(image: np.ndarray, side: int = WINDOW) -> list[np.ndarray]:
    """Every whole ``side`` x ``side`` window of the image; an image smaller than that is its own window."""
    height, width = image.shape[1:]
    if height < side or width < side:
        return [image]
    return [
        image[:, row : row + side, col : col + side]
        for row in range(0, height - side + 1, side)
        for col in range(0, width - side + 1, side)
    ]


# -- the two measurements -----------------------------------------------------------------------------
@dataclass
class Measurement:
    checked: int = 0
    wrong: list[str] = field(default_factory=list)
    """What went wrong, one line per case: a refusal of good pixels, or a wrong scale let through or
    refused without the right hint."""


def false_refusals(
    name: str, training: Sequence[np.ndarray], images: Sequence[np.ndarray], nodata: float | None
) -> Measurement:
    """Every image and every window of ``images``, given to a model trained on the pixels of ``training``
    (for a real data set, the same images)."""
    model = model_trained_on(training, name)
    result = Measurement()
    for number, image in enumerate(images):
        for part, pixels in enumerate([image, *windows(image)]):
            result.checked += 1
            message = refusal(model, pixels, nodata, f"{name}[{number}].{part}")
            if message is not None:
                result.wrong.append(message)
    return result


def true_refusals(
    name: str, training: Sequence[np.ndarray], images: Sequence[np.ndarray], native: str, nodata: float | None
) -> Measurement:
    """Each window of ``images``, in each wrong encoding, given to a model trained on the pixels of
    ``training`` in the encoding the mistake expects (both stored as ``native``): refused, in one line,
    with the factor that undoes the mistake."""
    result = Measurement()
    encode = ENCODE[native]
    for mistake in MISTAKES:
        model = model_trained_on((encode[mistake.training](image) for image in training), name)
        for label, window in _labelled_windows(name, images):
            result.checked += 1
            message = refusal(model, encode[mistake.given](window), nodata, label)
            problem = _refusal_problem(message, mistake)
            if problem:
                result.wrong.append(f"{label} {mistake.name}: {problem}")
    return result


def _labelled_windows(name: str, images: Sequence[np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    for number, image in enumerate(images):
        for part, window in enumerate(windows(image)):
            yield f"{name}[{number}].{part}", window


def _refusal_problem(message: str | None, mistake: Mistake) -> str | None:
    if message is None:
        return "predicted"
    if "\n" in message or "--allow-input-mismatch" not in message:
        return f"not the one-line message: {message!r}"
    suggested = hint(message)
    if suggested is None or abs(suggested / mistake.factor - 1) > HINT_TOLERANCE:
        return f"hint {suggested}, not {mistake.factor:g}: {message}"
    return None
