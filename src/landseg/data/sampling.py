"""Where training crops come from: uniformly, cycling over the classes, or favouring rare classes.

- ``random``: an image with probability proportional to its labelled pixels, a uniform position
- ``equibatch`` (seed 002, after Berman et al.): crop ``key`` is centred near a random pixel of class
  ``key mod |C|``, so every class is visited at least once every ``|C|`` crops and every batch of at
  least ``|C|`` crops holds every class.
- ``oversample`` (seeds 000 and 001): the seeds wrote extra D4-transformed copies of every chip that
  contains a rare class. Online, the same distribution comes from rejection sampling: a random crop
  without a rare class is kept with probability ``1 / (1 + copies)``, so crops with one are drawn
  ``1 + copies`` times as often, each draw with its own D4 transform.

Each crop is drawn from ``numpy.random.default_rng([seed, key])``: the same seed gives the same crops
in any number of workers and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from landseg.classes import IGNORE_INDEX
from landseg.config import SamplingConfig
from landseg.data.augment import Augmentation
from landseg.data.dataset import LabelledImage
from landseg.errors import ConfigError
from landseg.normalization import Normalization

EQUIBATCH_CELL = 64
"""Class pixels are counted per cell of this many pixels square, to find a class's pixels quickly
without keeping their coordinates."""


@dataclass(frozen=True)
class ClassStatistics:
    """Pixel statistics of the training masks, for class weights and the rare-class set."""

    pixels: np.ndarray
    """``(K,)`` labelled pixels per class."""
    present_image_pixels: np.ndarray
    """``(K,)`` labelled pixels of the images that contain each class (for median-frequency weights)."""
    images: np.ndarray
    """``(K,)`` number of images that contain each class."""

    @classmethod
    def from_masks(cls, masks: Iterable[np.ndarray], num_classes: int) -> ClassStatistics:
        pixels = np.zeros(num_classes, np.int64)
        present_image_pixels = np.zeros(num_classes, np.int64)
        images = np.zeros(num_classes, np.int64)
        for mask in masks:
            counts = np.bincount(mask.ravel(), minlength=256)
            if counts[num_classes:IGNORE_INDEX].any() or counts[IGNORE_INDEX + 1 :].any():
                raise ValueError(f"mask holds class indices beyond the {num_classes} classes")
            counts = counts[:num_classes]
            present = counts > 0
            pixels += counts
            present_image_pixels[present] += counts.sum()
            images += present
        return cls(pixels, present_image_pixels, images)

    @property
    def shares(self) -> np.ndarray:
        return self.pixels / max(int(self.pixels.sum()), 1)

    def rare_classes(self, below: float | None = None) -> list[int]:
        """Classes present in the masks whose share of the labelled pixels is below ``below``
        (default ``1 / K``, the share of every class in a balanced set)."""
        threshold = 1 / len(self.pixels) if below is None else below
        return [c for c, share in enumerate(self.shares) if 0 < share < threshold]

    def to_dict(self, names: list[str]) -> dict:
        return {
            name: {"pixels": int(p), "share": round(float(s), 6), "images": int(i)}
            for name, p, s, i in zip(names, self.pixels, self.shares, self.images, strict=False)
        }


class RandomCrops:
    """An image with probability proportional to its labelled pixels, then a uniform position."""

    attempts = 10
    """Draws before a crop with too few labelled pixels is taken anyway."""

    def __init__(self, items: list[LabelledImage]):
        self.shapes = [item.mask.shape for item in items]
        weights = np.array([item.labelled_pixels for item in items], dtype=np.float64)
        self.image_probability = weights / weights.sum()

    def draw(self, key: int, rng: np.random.Generator, size: int) -> tuple[int, int, int]:
        """``(image index, top, left)`` of a ``size x size`` window (which may overhang small images)."""
        index = int(rng.choice(len(self.shapes), p=self.image_probability))
        height, width = self.shapes[index]
        top = int(rng.integers(0, max(height - size, 0) + 1))
        left = int(rng.integers(0, max(width - size, 0) + 1))
        return index, top, left

    def accept(self, mask: np.ndarray, rng: np.random.Generator) -> bool:
        return True


class EquibatchCrops:
    """Crop ``key`` contains a pixel of the ``key mod n``-th class present in the training masks."""

    attempts = 10

    def __init__(self, items: list[LabelledImage], num_classes: int):
        self.masks = [item.mask for item in items]
        self.cell_counts = [_cell_counts(item.mask, num_classes, EQUIBATCH_CELL) for item in items]
        per_image = np.stack([counts.sum(axis=(1, 2)) for counts in self.cell_counts]).astype(np.float64)
        self.classes = [c for c in range(num_classes) if per_image[:, c].sum() > 0]
        self.image_probability = {c: per_image[:, c] / per_image[:, c].sum() for c in self.classes}

    def class_of(self, key: int) -> int:
        return self.classes[int(key) % len(self.classes)]

    def draw(self, key: int, rng: np.random.Generator, size: int) -> tuple[int, int, int]:
        target = self.class_of(key)
        index = int(rng.choice(len(self.masks), p=self.image_probability[target]))
        mask, counts = self.masks[index], self.cell_counts[index][target]
        cell = int(rng.choice(counts.size, p=counts.ravel() / counts.sum()))
        cell_y, cell_x = divmod(cell, counts.shape[1])
        y0, x0 = cell_y * EQUIBATCH_CELL, cell_x * EQUIBATCH_CELL
        ys, xs = np.nonzero(mask[y0 : y0 + EQUIBATCH_CELL, x0 : x0 + EQUIBATCH_CELL] == target)
        pick = int(rng.integers(len(ys)))
        height, width = mask.shape
        top = _window_covering(y0 + int(ys[pick]), height, size, rng)
        left = _window_covering(x0 + int(xs[pick]), width, size, rng)
        return index, top, left

    def accept(self, mask: np.ndarray, rng: np.random.Generator) -> bool:
        return True


class RareClassOversampling(RandomCrops):
    """Random crops, where a crop without a rare class is kept with probability ``1 / (1 + copies)``."""

    saturated_share = 0.8
    """Above this share of random crops holding a rare class, oversampling has little left to change."""

    def __init__(self, items: list[LabelledImage], rare_classes: list[int], copies: int = 3, min_share: float = 0.0):
        super().__init__(items)
        self.masks = [item.mask for item in items]
        if not rare_classes:
            raise ValueError("rare-class oversampling needs at least one rare class")
        self.rare = np.asarray(rare_classes, dtype=np.int64)
        self.copies = copies
        self.min_share = min_share
        self.attempts = 10 * (1 + copies)

    def has_rare_class(self, mask: np.ndarray) -> bool:
        labelled = mask[mask != IGNORE_INDEX]
        counts = np.bincount(labelled, minlength=int(self.rare.max()) + 1)[self.rare]
        return bool((counts > self.min_share * labelled.size).any())

    def accept(self, mask: np.ndarray, rng: np.random.Generator) -> bool:
        return self.has_rare_class(mask) or rng.random() < 1 / (1 + self.copies)

    def rare_crop_share(self, size: int, draws: int = 400, seed: int = 0) -> float:
        """Estimated share of plain random ``size`` crops that already hold a rare class."""
        rng = np.random.default_rng(seed)
        hits = 0
        for key in range(draws):
            index, top, left = self.draw(key, rng, size)
            hits += self.has_rare_class(self.masks[index][top : top + size, left : left + size])
        return hits / draws

    def saturation_warning(self, size: int, class_names: list[str]) -> str | None:
        """Why oversampling will hardly change the crops (thin, scattered rare classes), or None."""
        share = self.rare_crop_share(size)
        if share <= self.saturated_share:
            return None
        names = ", ".join(class_names[c] for c in self.rare)
        return (
            f"train.sampling oversample: {share:.0%} of random {size} px crops already hold a pixel of a rare "
            f"class ({names}) above min_share {self.min_share:g}, so oversampling changes little; raise "
            "train.sampling.min_share (the share of a crop a rare class must cover) or weight the loss"
        )


CropStrategy = RandomCrops | EquibatchCrops | RareClassOversampling


def crop_strategy(
    config: SamplingConfig, items: list[LabelledImage], class_names: list[str], statistics: ClassStatistics
) -> CropStrategy:
    """The strategy ``train.sampling`` names, over training images that all have labelled pixels."""
    if config.name == "random":
        return RandomCrops(items)
    if config.name == "equibatch":
        return EquibatchCrops(items, len(class_names))
    if config.rare_classes is not None:
        unknown = [name for name in config.rare_classes if name not in class_names]
        if unknown:
            raise ConfigError(f"train.sampling.rare_classes: unknown classes {unknown}; classes: {class_names}")
        rare = [class_names.index(name) for name in config.rare_classes]
    else:
        rare = statistics.rare_classes(config.rare_below)
        if not rare:
            raise ConfigError(
                f"train.sampling oversample: no class of the training masks has a share below "
                f"{config.rare_below or 1 / len(class_names):.3g}; set rare_classes or rare_below"
            )
    return RareClassOversampling(items, rare, copies=config.copies, min_share=config.min_share)


class SampledCropDataset(Dataset):
    """Training crops ``(C, S, S) float32`` normalized, ``(S, S) int64``, drawn by ``strategy`` and
    augmented by ``augmentation``; item ``key`` depends on ``(seed, key)`` only."""

    def __init__(
        self,
        items: list[LabelledImage],
        crop_size: int,
        normalization: Normalization,
        length: int,
        strategy: CropStrategy,
        augmentation: Augmentation,
        seed: int = 0,
        min_labelled: float = 0.05,
        transfer: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ):
        """``transfer``: a change of the augmented crop's raw values before normalization (the histogram
        transfer to unlabelled images, ``data.unlabeled.HistogramTransfer``)."""
        if any(item.labelled_pixels == 0 for item in items):
            raise ValueError("drop training images without labelled pixels before building the strategy")
        self.items = items
        self.crop_size = crop_size
        self.normalization = normalization
        self.length = length
        self.strategy = strategy
        self.augmentation = augmentation
        self.seed = seed
        self.min_labelled = min_labelled
        self.transfer = transfer

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int):
        rng = np.random.default_rng([self.seed, int(key)])
        size = self.augmentation.window_size(self.crop_size, rng)
        for _ in range(self.strategy.attempts):
            index, top, left = self.strategy.draw(key, rng, size)
            image, mask = cut_window(self.items[index], top, left, size)
            if (mask != IGNORE_INDEX).mean() >= self.min_labelled and self.strategy.accept(mask, rng):
                break
        image, mask = self.augmentation(image, mask, self.crop_size, rng)
        if self.transfer is not None:
            image = self.transfer(image, rng)
        image = self.normalization.apply(image)
        return torch.from_numpy(image), torch.from_numpy(mask.astype(np.int64))


def labelled_items(items: list[LabelledImage]) -> list[LabelledImage]:
    kept = [item for item in items if item.labelled_pixels > 0]
    if not kept:
        raise ValueError("no training image has a single labelled pixel")
    return kept


def cut_window(item: LabelledImage, top: int, left: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``size x size`` window at ``(top, left)``; past the image's edge the image is mirrored (or
    repeated, when it is too small to mirror) and the mask is ignore."""
    image = item.image[:, top : top + size, left : left + size]
    mask = item.mask[top : top + size, left : left + size]
    pad_h, pad_w = size - mask.shape[0], size - mask.shape[1]
    if pad_h or pad_w:
        mode: Literal["reflect", "edge"] = "reflect" if min(mask.shape) > max(pad_h, pad_w) else "edge"
        image = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode=mode)
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
    return image, mask


def _cell_counts(mask: np.ndarray, num_classes: int, cell: int) -> np.ndarray:
    """``(K, rows, cols)`` pixels of each class in each ``cell x cell`` block of ``mask``."""
    height, width = mask.shape
    rows, cols = -(-height // cell), -(-width // cell)
    cell_index = (np.arange(height)[:, None] // cell) * cols + np.arange(width)[None, :] // cell
    labelled = mask != IGNORE_INDEX
    flat = mask[labelled].astype(np.int64) * (rows * cols) + cell_index[labelled]
    counts = np.bincount(flat, minlength=num_classes * rows * cols)[: num_classes * rows * cols]
    return counts.reshape(num_classes, rows, cols).astype(np.int32)


def _window_covering(position: int, length: int, size: int, rng: np.random.Generator) -> int:
    """A uniform start of a ``size`` window inside ``[0, length)`` that covers ``position``."""
    if length <= size:
        return 0
    low, high = max(0, position - size + 1), min(position, length - size)
    return int(rng.integers(low, high + 1))
