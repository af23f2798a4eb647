"""Training-crop augmentation for any band count: random scale, D4, brightness, per-band colour, gamma.

Every random parameter is drawn from the crop's own ``numpy`` generator (seeded by ``(seed, key)``)
and applied with torchvision's functional transforms, so a crop is the same in any worker and after
a resume. With every option at its default only the D4 transform is drawn, as before this module.

Photometric jitter works on raw values divided by the data's maximum (255 for 8-bit images):
brightness and colour multiply, gamma bends ``x ** gamma`` on that [0, 1] scale, and results saturate
at 0 and at the maximum like a sensor does. It therefore assumes non-negative data (reflectance,
digital numbers), not signed data such as SAR backscatter in dB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from landseg.config import AugmentConfig
from landseg.data.transforms import random_d4
from landseg.errors import ConfigError


@dataclass(frozen=True)
class Augmentation:
    flips: bool = True
    rotate90: bool = True
    brightness: float = 0.0
    color: float = 0.0
    gamma: float = 0.0
    scale: tuple[float, float] | None = None
    max_value: float | None = None
    """The data's maximum (e.g. 255), which photometric jitter scales to 1."""

    def __post_init__(self):
        if self.photometric and not self.max_value:
            raise ConfigError(
                "train.augment brightness, color and gamma need the data's maximum value: set "
                "data.normalization.max_value for floating-point images"
            )

    @classmethod
    def from_config(cls, config: AugmentConfig, max_value: float | None) -> Augmentation:
        return cls(
            flips=config.flips,
            rotate90=config.rotate90,
            brightness=config.brightness,
            color=config.color,
            gamma=config.gamma,
            scale=config.scale,
            max_value=max_value,
        )

    @property
    def photometric(self) -> bool:
        return bool(self.brightness or self.color or self.gamma)

    def window_size(self, crop_size: int, rng: np.random.Generator) -> int:
        """Side of the window to cut for a crop of ``crop_size``: ``crop_size / s`` for a random zoom ``s``."""
        if self.scale is None:
            return crop_size
        low, high = self.scale
        zoom = math.exp(rng.uniform(math.log(low), math.log(high)))
        return max(1, round(crop_size / zoom))

    def __call__(self, image: np.ndarray, mask: np.ndarray, crop_size: int, rng: np.random.Generator):
        """A cut window ``(C, h, w)`` / ``(h, w)`` to an augmented crop ``(C, S, S)`` float32 / ``(S, S)`` in
        raw units, ``S = crop_size``."""
        if mask.shape != (crop_size, crop_size):
            image, mask = resize_pair(image, mask, crop_size)
        image, mask = random_d4(image, mask[None], rng, rotate=self.rotate90, flip=self.flips)
        mask = mask[0]
        if self.photometric:
            image = self.jitter(image, rng)
        return image, mask

    def jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        max_value = self.max_value
        if not max_value:
            raise ConfigError("photometric jitter needs the data's maximum value (max_value)")
        bands = image.shape[0]
        gains = np.ones(bands)
        if self.color:
            gains *= rng.uniform(1 - self.color, 1 + self.color, bands)
        if self.brightness:
            gains *= rng.uniform(1 - self.brightness, 1 + self.brightness)
        gamma = rng.uniform(1 - self.gamma, 1 + self.gamma) if self.gamma else 1.0
        unit = torch.from_numpy(np.asarray(image, dtype=np.float32)) / max_value
        # torchvision's brightness kernel takes one or three bands; band by band it takes any number.
        unit = torch.stack(
            [TF.adjust_brightness(band[None], float(gain))[0] for band, gain in zip(unit, gains, strict=False)]
        )
        if gamma != 1.0:
            unit = TF.adjust_gamma(unit, gamma)
        return (unit * max_value).numpy()


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (bilinear, antialiased when shrinking) and mask (exact nearest neighbour) to ``size x size``."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32))
    labels = torch.from_numpy(np.ascontiguousarray(mask))[None]
    pixels = TF.resize(pixels, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    labels = TF.resize(labels, [size, size], interpolation=InterpolationMode.NEAREST_EXACT)
    return pixels.numpy(), labels[0].numpy()
