"""Labelled images in memory, the epoch sampler, and whole validation images.

Pairs are decoded once and kept in their raw dtype (uint8 stays uint8); normalization happens per
crop or image. Training crops (``data/sampling.py``) are keyed by ``epoch * length + i``, which
``EpochSampler`` hands out, so the same seed gives the same crops in any number of workers and after
a resume.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from landseg.classes import IGNORE_INDEX, ClassSchema, UnknownPolicy
from landseg.data.catalog import Sample, load_pair
from landseg.data.exclude import Exclusions


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
    unknown: UnknownPolicy = "error",
    nodata: float | None = None,
    scale: float = 1.0,
    progress: bool = True,
    description: str = "Reading images",
    exclude: Path | None = None,
) -> list[LabelledImage]:
    """``exclude``: a ``landseg audit`` regions file whose regions become ignore pixels (``data/exclude.py``)."""
    from rich.progress import track

    exclusions = Exclusions.read(exclude) if exclude is not None else None
    items = []
    for sample in track(samples, description=description, disable=not progress, transient=True):
        image, mask = load_pair(sample, schema, bands=bands, tolerance=tolerance, unknown=unknown, nodata=nodata)
        if exclusions is not None:
            mask = exclusions.apply(sample.image, mask, image.transform, image.crs)
        items.append(resample_pair(LabelledImage(image.data, mask, sample.name), scale))
    if exclusions is not None and exclusions.polygons and not exclusions.matched_images:
        warnings.warn(f"{exclude}: names none of these {len(samples)} images; no pixel was excluded", stacklevel=2)
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


class WholeImageDataset(Dataset):
    """Validation: whole images at their native resolution in their raw units (as float32, exact for 8- and
    16-bit data), one per batch; the inference core normalizes and rescales them as it does for a file."""

    def __init__(self, items: list[LabelledImage]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        item = self.items[index]
        return torch.from_numpy(item.image.astype(np.float32)), torch.from_numpy(item.mask.astype(np.int64))
