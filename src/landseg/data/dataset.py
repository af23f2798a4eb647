"""Torch datasets: random training crops and whole validation images.

Pairs are decoded once and kept in their raw dtype (uint8 stays uint8), normalization happens per
crop. Crops are drawn from ``numpy.random.default_rng([seed, key])`` where the sampler hands out keys
``epoch * length + i``: the same seed gives the same crops in any number of workers and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from landseg.classes import IGNORE_INDEX, ClassSchema
from landseg.data.catalog import Sample, load_pair
from landseg.data.transforms import random_d4
from landseg.normalization import Normalization


@dataclass
class LabelledImage:
    image: np.ndarray
    """``(C, H, W)`` raw values."""
    mask: np.ndarray
    """``(H, W)`` uint8 class indices, ``IGNORE_INDEX`` = no label."""
    name: str

    @property
    def labelled_pixels(self) -> int:
        return int((self.mask != IGNORE_INDEX).sum())


def resample_pair(item: LabelledImage, scale: float) -> LabelledImage:
    """Resample an image (area-averaged when shrinking) and its mask (nearest) by ``scale``."""
    if scale == 1.0:
        return item
    h, w = item.mask.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = torch.from_numpy(item.image.astype(np.float32))[None]
    image = F.interpolate(image, size=size, mode="bilinear", antialias=scale < 1, align_corners=False)[0]
    mask = torch.from_numpy(item.mask)[None, None].float()
    mask = F.interpolate(mask, size=size, mode="nearest")[0, 0].to(torch.uint8)
    return LabelledImage(image.numpy(), mask.numpy(), item.name)


def load_labelled_images(
    samples: list[Sample],
    schema: ClassSchema,
    bands: list[int] | None,
    tolerance: int = 2,
    unknown: str = "error",
    nodata: float | None = None,
    scale: float = 1.0,
    progress: bool = True,
    description: str = "Reading images",
) -> list[LabelledImage]:
    from rich.progress import track

    items = []
    for sample in track(samples, description=description, disable=not progress, transient=True):
        image, mask = load_pair(sample, schema, bands=bands, tolerance=tolerance, unknown=unknown, nodata=nodata)
        items.append(resample_pair(LabelledImage(image.data, mask, sample.name), scale))
    return items


class EpochSampler(Sampler[int]):
    """Hands out ``epoch * length + i``; Lightning calls ``set_epoch`` before every epoch."""

    def __init__(self, length: int):
        self.length = length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        start = self.epoch * self.length
        return iter(range(start, start + self.length))

    def __len__(self) -> int:
        return self.length


class RandomCropDataset(Dataset):
    def __init__(
        self,
        items: list[LabelledImage],
        crop_size: int,
        normalization: Normalization,
        length: int,
        seed: int = 0,
        flips: bool = True,
        rotate90: bool = True,
        min_labelled: float = 0.05,
    ):
        self.items = [it for it in items if it.labelled_pixels > 0]
        if not self.items:
            raise ValueError("no training image has a single labelled pixel")
        self.crop_size = crop_size
        self.normalization = normalization
        self.length = length
        self.seed = seed
        self.flips, self.rotate90 = flips, rotate90
        self.min_labelled = min_labelled
        weights = np.array([it.labelled_pixels for it in self.items], dtype=np.float64)
        self.image_probability = weights / weights.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int):
        rng = np.random.default_rng([self.seed, int(key)])
        for _ in range(10):
            item = self.items[rng.choice(len(self.items), p=self.image_probability)]
            image, mask = self._crop(item, rng)
            if (mask != IGNORE_INDEX).mean() >= self.min_labelled:
                break
        image, mask = random_d4(image, mask[None], rng, rotate=self.rotate90, flip=self.flips)
        image = self.normalization.apply(image)
        return torch.from_numpy(image), torch.from_numpy(mask[0].astype(np.int64))

    def _crop(self, item: LabelledImage, rng: np.random.Generator):
        size = self.crop_size
        h, w = item.mask.shape
        top = int(rng.integers(0, max(h - size, 0) + 1))
        left = int(rng.integers(0, max(w - size, 0) + 1))
        image = item.image[:, top : top + size, left : left + size]
        mask = item.mask[top : top + size, left : left + size]
        ph, pw = size - mask.shape[0], size - mask.shape[1]
        if ph or pw:
            mode = "reflect" if min(mask.shape) > max(ph, pw) else "edge"
            image = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode=mode)
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
        return image, mask


class WholeImageDataset(Dataset):
    """Validation: whole images at the training resolution, one per batch."""

    def __init__(self, items: list[LabelledImage], normalization: Normalization):
        self.items = items
        self.normalization = normalization

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        item = self.items[index]
        image = self.normalization.apply(item.image)
        return torch.from_numpy(image), torch.from_numpy(item.mask.astype(np.int64))
