"""Input normalization: one affine map per band, ``(x - mean) / std``, in the raster's own units.

Every scheme the seeds use is one such map: 8-bit to [-1, 1] (seed 002) is mean = std = 127.5;
ImageNet statistics are the familiar means and stds times 255; per-band statistics of a 16-bit
Sentinel-2 archive are whatever ``landseg prepare stats`` measured. Storing it this way in the
checkpoint means prediction needs nothing else to reproduce training's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landseg.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if len(self.mean) != len(self.std):
            raise ConfigError(f"normalization has {len(self.mean)} means but {len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"normalization stds must be positive, got {list(self.std)}")

    @property
    def bands(self) -> int:
        return len(self.mean)

    @classmethod
    def symmetric(cls, bands: int, max_value: float = 255.0) -> "Normalization":
        """``[0, max_value]`` to ``[-1, 1]`` for every band."""
        half = max_value / 2.0
        return cls((half,) * bands, (half,) * bands)

    @classmethod
    def from_unit_stats(cls, mean, std, max_value: float = 255.0) -> "Normalization":
        """Statistics given for inputs scaled to [0, 1] (ImageNet style), applied to raw values."""
        return cls(tuple(m * max_value for m in mean), tuple(s * max_value for s in std))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` raw values to float32; NaN (no-data) becomes 0, the normalized mean."""
        if image.shape[0] != self.bands:
            raise ConfigError(f"image has {image.shape[0]} bands, normalization expects {self.bands}")
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        out = (image.astype(np.float32) - mean) / std
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0, copy=False)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))
