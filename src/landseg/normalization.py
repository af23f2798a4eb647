"""Input normalization, stored in the model card as a plain dict and applied to raw raster values.

Two kinds exist. ``Normalization`` is one affine map per band, ``(x - mean) / std``, in the raster's
own units; its dict has no ``kind`` key (every checkpoint written before kinds existed is one).
``DynamicWorldNormalization`` is the log, per-band scaling and sigmoid that Dynamic World was trained
with; its dict says ``"kind": "dynamic_world"``. ``normalization_from_dict`` (and
``Normalization.from_dict``, which model cards call) returns whichever kind a dict describes, and both
kinds offer ``apply`` (numpy, one image) and ``apply_torch`` (a batch), so callers never branch on it.

Every affine scheme the seeds use is one such map: 8-bit to [-1, 1] (seed 002) is mean = std = 127.5;
ImageNet statistics are the familiar means and stds times 255; per-band statistics of a 16-bit
Sentinel-2 archive are whatever ``landseg prepare stats`` measured. Storing it this way in the
checkpoint means prediction needs nothing else to reproduce training's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from landseg.errors import ConfigError

if TYPE_CHECKING:
    import torch

# torch is imported inside the torch methods only: data preparation and the CLI's start use the numpy
# side and should not pay for loading torch.

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


MEAN_STD = "mean_std"
DYNAMIC_WORLD = "dynamic_world"


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: ClassVar[str] = MEAN_STD

    def __post_init__(self):
        if len(self.mean) != len(self.std):
            raise ConfigError(f"normalization has {len(self.mean)} means but {len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"normalization stds must be positive, got {list(self.std)}")

    @property
    def bands(self) -> int:
        return len(self.mean)

    @classmethod
    def symmetric(cls, bands: int, max_value: float = 255.0) -> Normalization:
        """``[0, max_value]`` to ``[-1, 1]`` for every band."""
        half = max_value / 2.0
        return cls((half,) * bands, (half,) * bands)

    @classmethod
    def from_unit_stats(cls, mean, std, max_value: float = 255.0) -> Normalization:
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

    def apply_torch(self, batch: torch.Tensor) -> torch.Tensor:
        """``apply`` on a ``(B, C, H, W)`` batch, as float32 on the batch's device; the input is left as it is."""
        import torch

        _check_batch(batch, self.bands)
        shape = (1, -1, 1, 1)
        out = batch.to(torch.float32).sub(_vector(self.mean, batch).view(shape))
        out.div_(_vector(self.std, batch).view(shape))
        return out.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)

    def to_dict(self) -> dict:
        # No kind key: checkpoints keep the format that landseg versions without kinds read.
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> AnyNormalization:
        """The normalization ``data`` describes, of whichever kind its ``kind`` key names (mean/std without one)."""
        if _kind_of(data) != MEAN_STD:
            return normalization_from_dict(data)
        try:
            return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"mean/std normalization needs lists 'mean' and 'std', got {_describe(data)}") from None


@dataclass(frozen=True)
class DynamicWorldNormalization:
    """Dynamic World's input map, per band ``b`` of raw digital numbers ``v``::

        x = log(1 + gain * v)
        z = (x - center[b]) / spread[b]
        out = sigmoid(slope * z + shift)

    The published form ``e = exp(slope * z + shift); out = e / (e + 1)`` is the same sigmoid; written as
    one it cannot overflow to ``inf / inf``. Outputs lie in (0, 1); no-data (NaN, or values below
    ``-1 / gain`` whose log is undefined) becomes 0, as with the mean/std kind.
    """

    center: tuple[float, ...]
    spread: tuple[float, ...]
    gain: float = 0.005
    slope: float = 5.0
    shift: float = -1.0
    kind: ClassVar[str] = DYNAMIC_WORLD

    def __post_init__(self):
        if len(self.center) != len(self.spread):
            raise ConfigError(
                f"dynamic_world normalization has {len(self.center)} centers but {len(self.spread)} spreads"
            )
        if any(s <= 0 for s in self.spread):
            raise ConfigError(f"dynamic_world normalization spreads must be positive, got {list(self.spread)}")
        if self.gain <= 0:
            raise ConfigError(f"dynamic_world normalization gain must be positive, got {self.gain}")

    @property
    def bands(self) -> int:
        return len(self.center)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` raw values to float32 in (0, 1); no-data becomes 0."""
        if image.shape[0] != self.bands:
            raise ConfigError(f"image has {image.shape[0]} bands, normalization expects {self.bands}")
        center = np.asarray(self.center, dtype=np.float32)[:, None, None]
        spread = np.asarray(self.spread, dtype=np.float32)[:, None, None]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            x = np.log1p(image.astype(np.float32) * np.float32(self.gain))
            x[~np.isfinite(x)] = np.nan  # inf would saturate the sigmoid to 1: it is no-data, like NaN
            z = np.float32(self.slope) * ((x - center) / spread) + np.float32(self.shift)
            out = (np.float32(0.5) * np.tanh(np.float32(0.5) * z) + np.float32(0.5)).astype(np.float32, copy=False)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0, copy=False)

    def apply_torch(self, batch: torch.Tensor) -> torch.Tensor:
        """``apply`` on a ``(B, C, H, W)`` batch, as float32 on the batch's device; the input is left as it is."""
        import torch

        _check_batch(batch, self.bands)
        shape = (1, -1, 1, 1)
        out = batch.to(torch.float32).mul(self.gain).log1p_()
        out.masked_fill_(~torch.isfinite(out), float("nan"))  # inf is no-data too, as in ``apply``
        out.sub_(_vector(self.center, batch).view(shape)).div_(_vector(self.spread, batch).view(shape))
        out.mul_(self.slope).add_(self.shift).sigmoid_()
        return out.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "center": list(self.center),
            "spread": list(self.spread),
            "gain": self.gain,
            "slope": self.slope,
            "shift": self.shift,
        }

    @classmethod
    def from_dict(cls, data: dict) -> DynamicWorldNormalization:
        try:
            return cls(
                tuple(float(v) for v in data["center"]),
                tuple(float(v) for v in data["spread"]),
                **{k: float(data[k]) for k in ("gain", "slope", "shift") if k in data},
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"dynamic_world normalization needs lists 'center' and 'spread', got {_describe(data)}"
            ) from None


AnyNormalization = Normalization | DynamicWorldNormalization
KINDS: dict[str, type[Normalization] | type[DynamicWorldNormalization]] = {
    MEAN_STD: Normalization,
    DYNAMIC_WORLD: DynamicWorldNormalization,
}


def normalization_from_dict(data: dict) -> AnyNormalization:
    """A model card's normalization dict to the normalization of its kind."""
    kind = _kind_of(data)
    if kind not in KINDS:
        raise ConfigError(f"unknown normalization kind {kind!r}; kinds: {', '.join(sorted(KINDS))}")
    if kind == MEAN_STD:
        return Normalization.from_dict({k: v for k, v in data.items() if k != "kind"})
    return KINDS[kind].from_dict(data)


def _kind_of(data) -> str:
    if not isinstance(data, dict):
        raise ConfigError(f"normalization must be a mapping, got {type(data).__name__}")
    return str(data.get("kind", MEAN_STD))


def _describe(data: dict) -> str:
    return f"keys {sorted(data)}"


def _check_batch(batch: torch.Tensor, bands: int) -> None:
    if batch.ndim != 4 or batch.shape[1] != bands:
        raise ConfigError(f"batch has shape {tuple(batch.shape)}; normalization expects (B, {bands}, H, W)")


def _vector(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.tensor(values, dtype=torch.float32, device=like.device)
