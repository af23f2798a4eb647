"""Where sliding-window tiles go and how much each of their pixels counts when tiles overlap.

Pure geometry, no pixels: the in-memory predictor and a streaming one share it. Tiles cover the image
exactly: the last tile of a row or column sits flush with the image edge instead of hanging past it, so
no tile reads padding unless the whole image is smaller than one tile.
"""

from __future__ import annotations

import numpy as np

from landseg.errors import ConfigError
from landseg.predict.choices import BLEND_KINDS, BlendKind

# Weights are floored here so a pixel that only one tile covers (an image corner) still divides by a
# positive sum; interior pixels are dominated by the tile whose centre is nearest anyway.
MIN_BLEND_WEIGHT = 1e-3
# Standard deviation of the Gaussian window as a fraction of the tile, as nnU-Net uses.
GAUSSIAN_SIGMA_FRACTION = 1 / 8


def tile_stride(tile: int, overlap: float) -> int:
    """Step between tile origins for a fractional ``overlap`` in ``[0, 1)``."""
    if tile < 1:
        raise ConfigError(f"tile size must be a positive number of pixels, got {tile}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"tile overlap must be in [0, 1), got {overlap}")
    return max(1, round(tile * (1.0 - overlap)))


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride`` pixels, the last flush with the end."""
    if length < 1 or tile < 1 or stride < 1:
        raise ConfigError(f"length, tile and stride must be positive, got {length}, {tile}, {stride}")
    last = length - tile
    if last <= 0:
        return [0]
    origins = list(range(0, last, stride))
    origins.append(last)
    return origins


def tile_windows(height: int, width: int, tile: int, overlap: float) -> list[tuple[int, int]]:
    """``(row, col)`` of the top-left corner of every tile, row by row.

    Tiles are ``tile`` pixels square; an image smaller than a tile gets the single window ``(0, 0)``
    and is expected to be padded up to the tile by the caller.
    """
    stride = tile_stride(tile, overlap)
    rows = tile_origins(height, tile, stride)
    cols = tile_origins(width, tile, stride)
    return [(row, col) for row in rows for col in cols]


def blend_weights(tile: int, kind: BlendKind = "hann") -> np.ndarray:
    """``(tile, tile) float32`` weights in ``[MIN_BLEND_WEIGHT, 1]``, peaking at the tile centre.

    Predictions near a tile border see less context and are less reliable, so smooth windows let the
    tile that sees a pixel nearest its centre decide it, and hide the seams between tiles.
    """
    if tile < 1:
        raise ConfigError(f"tile size must be a positive number of pixels, got {tile}")
    if kind == "uniform":
        return np.ones((tile, tile), dtype=np.float32)
    # Imported here: SciPy's signal package takes seconds to import, and the command line and the
    # options' checks need this module's tile arithmetic only.
    from scipy.signal import windows

    if kind == "hann":
        # The symmetric window two samples longer, without its zero end points.
        profile = windows.hann(tile + 2, sym=True)[1:-1]
    elif kind == "gaussian":
        profile = windows.gaussian(tile, std=max(tile * GAUSSIAN_SIGMA_FRACTION, 1e-6), sym=True)
    else:
        raise ConfigError(f"unknown blend {kind!r}; choose one of {', '.join(BLEND_KINDS)}")
    weights = np.outer(profile, profile)
    weights /= weights.max()
    return np.maximum(weights, MIN_BLEND_WEIGHT).astype(np.float32)
