"""Crops of unlabelled images of the place to be mapped, for learning from them (``data.unlabeled``).

The images are never read whole: each crop is one window, read from its file at the training's input
scale (GDAL resamples the window as it reads it, bilinearly), mirrored where the image is smaller than a
crop. A crop comes in two views of one geometry: the *weak* view (a random flip or rotation, as the
labelled crops get) that the teacher labels, and the *strong* view (the weak one with strong colour
jitter) that the network learns those labels on (``landseg.train.adapt``). Crop ``key`` depends on
``(seed, key)`` only, like the labelled crops, so a resumed run draws the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window
from torch.utils.data import Dataset

from landseg.data.augment import Augmentation
from landseg.data.transforms import random_d4
from landseg.errors import ConfigError, DataError
from landseg.io.paths import image_paths
from landseg.io.raster import open_raster
from landseg.normalization import AnyNormalization


@dataclass(frozen=True)
class UnlabeledImage:
    path: Path
    height: int
    width: int
    nodata: float | None


def find_unlabeled(entries: Sequence[str | Path], bands: Sequence[int], dtype: str) -> list[UnlabeledImage]:
    """The images that ``entries`` (files, folders, glob patterns) name, checked to hold ``bands`` in the
    training images' ``dtype``: a mismatch would teach the network pixels in other units."""
    images = []
    for path in image_paths(entries, context="data.unlabeled"):
        with open_raster(path) as dataset:
            if dataset.count < max(bands):
                raise DataError(
                    f"has {dataset.count} bands, but training reads bands {list(bands)}: unlabelled images must "
                    "be the same kind of imagery as the labelled ones",
                    path,
                )
            if dataset.dtypes[0] != dtype:
                raise DataError(
                    f"holds {dataset.dtypes[0]} pixels, the labelled images {dtype}: unlabelled images must be "
                    "in the same units",
                    path,
                )
            images.append(UnlabeledImage(path, dataset.height, dataset.width, dataset.nodata))
    return images


class UnlabeledCrops(Dataset):
    """``(weak, strong, valid)``: two normalized ``(C, S, S)`` float32 views of one crop and its ``(S, S)``
    valid-pixel mask; images are drawn in proportion to their area."""

    def __init__(
        self,
        images: list[UnlabeledImage],
        bands: Sequence[int],
        crop_size: int,
        scale: float,
        normalization: AnyNormalization,
        strong: Augmentation,
        nodata: float | None = None,
        seed: int = 0,
        length: int = 0,
    ):
        if not images:
            raise ConfigError("data.unlabeled names no images")
        self.images, self.bands, self.crop_size, self.scale = images, list(bands), crop_size, scale
        self.normalization, self.strong, self.nodata = normalization, strong, nodata
        self.seed, self.length = seed, length
        areas = np.array([image.height * image.width for image in images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # A stream of its own, apart from the labelled crop of the same key.
        rng = np.random.default_rng([self.seed, int(key), 1])
        image = self.images[int(rng.choice(len(self.images), p=self.weights))]
        pixels = self.read(image, rng)
        nodata = self.nodata if self.nodata is not None else image.nodata
        valid = np.ones(pixels.shape[1:], dtype=bool) if nodata is None else ~(pixels == nodata).all(axis=0)
        weak, valid_view = random_d4(pixels, valid[None].astype(np.uint8), rng, rotate=True, flip=True)
        strong = self.strong.jitter(weak, rng) if self.strong.photometric else weak
        return (
            torch.from_numpy(self.normalization.apply(np.ascontiguousarray(weak))),
            torch.from_numpy(self.normalization.apply(np.ascontiguousarray(strong))),
            torch.from_numpy(valid_view[0].astype(bool)),
        )

    def pixel_samples(self, windows: int = 32, per_window: int = 4096, seed: int = 0) -> list[np.ndarray]:
        """Random valid pixels of ``windows`` random crops, as they are read for training."""
        rng = np.random.default_rng([self.seed, seed, 2])
        samples = []
        for _ in range(windows):
            image = self.images[int(rng.choice(len(self.images), p=self.weights))]
            pixels = self.read(image, rng)
            nodata = self.nodata if self.nodata is not None else image.nodata
            valid = None if nodata is None else ~(pixels == nodata).all(axis=0)
            samples.append(pixel_sample(pixels, valid, per_window, rng))
        return samples

    def read(self, image: UnlabeledImage, rng: np.random.Generator) -> np.ndarray:
        """A random window of ``crop_size / scale`` source pixels, resampled to ``crop_size`` as it is read."""
        side = max(1, round(self.crop_size / self.scale))
        height, width = min(side, image.height), min(side, image.width)
        top = int(rng.integers(0, image.height - height + 1))
        left = int(rng.integers(0, image.width - width + 1))
        out = (len(self.bands), round(height * self.crop_size / side), round(width * self.crop_size / side))
        with rasterio.Env(GDAL_NUM_THREADS="1"), open_raster(image.path) as dataset:
            pixels = dataset.read(
                self.bands, window=Window(left, top, width, height), out_shape=out, resampling=Resampling.bilinear
            ).astype(np.float32)
        short = (self.crop_size - pixels.shape[1], self.crop_size - pixels.shape[2])
        if short[0] > 0 or short[1] > 0:  # an image smaller than a crop: mirrored, as labelled crops are
            mode: Literal["reflect", "edge"] = "reflect" if min(pixels.shape[1:]) > max(short) else "edge"
            pixels = np.pad(pixels, ((0, 0), (0, max(short[0], 0)), (0, max(short[1], 0))), mode=mode)
        return pixels


QUANTILES = 257
"""Levels of the per-band transfer functions (every 1/256 of the distribution, both ends included)."""


@dataclass(frozen=True)
class HistogramTransfer:
    """Per band, the monotone map that gives the labelled images' value distribution the unlabelled
    images' one (histogram matching of the two domains as wholes, not crop by crop, so a crop of water
    stays darker than one of sand): the labelled crops then look like the place to be mapped."""

    source: np.ndarray
    """``(bands, QUANTILES)`` quantiles of the labelled images, raw units."""
    target: np.ndarray
    """``(bands, QUANTILES)`` quantiles of the unlabelled images."""
    probability: float

    @classmethod
    def between(
        cls, source: Sequence[np.ndarray], target: Sequence[np.ndarray], probability: float
    ) -> HistogramTransfer:
        """From ``(bands, n)`` samples of valid pixels of each domain."""
        levels = np.linspace(0, 1, QUANTILES)
        return cls(
            np.quantile(np.concatenate(list(source), axis=1), levels, axis=1).T,
            np.quantile(np.concatenate(list(target), axis=1), levels, axis=1).T,
            probability,
        )

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.probability:
            return image
        # np.interp needs increasing sample points: constant stretches of a quantile curve are nudged apart.
        return np.stack(
            [
                np.interp(band, _increasing(self.source[b]), self.target[b]).astype(np.float32)
                for b, band in enumerate(np.asarray(image, dtype=np.float32))
            ]
        )


def _increasing(values: np.ndarray) -> np.ndarray:
    return values + np.arange(len(values)) * 1e-6 * max(1.0, float(np.abs(values).max()))


def pixel_sample(image: np.ndarray, valid: np.ndarray | None, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(bands, <= count)`` random valid pixels of a ``(bands, H, W)`` image."""
    flat = image.reshape(image.shape[0], -1)
    positions = np.flatnonzero(valid.ravel()) if valid is not None else np.arange(flat.shape[1])
    if len(positions) > count:
        positions = rng.choice(positions, count, replace=False)
    return flat[:, positions].astype(np.float32)


class AdaptingCrops(Dataset):
    """Labelled crop ``key`` and unlabelled crop ``key`` together: one batch holds both, so the epochs,
    samplers (DDP included) and resumes of the labelled crops carry over unchanged."""

    def __init__(self, labelled: Dataset, unlabelled: UnlabeledCrops):
        self.labelled, self.unlabelled = labelled, unlabelled

    def __len__(self) -> int:
        return len(self.labelled)  # type: ignore[arg-type]

    def __getitem__(self, key: int):
        return (*self.labelled[key], *self.unlabelled[key])
