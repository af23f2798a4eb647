"""Raw rasters to viewable 8-bit RGB, for overlays and reports."""

from __future__ import annotations

import numpy as np


def display_rgb(data: np.ndarray, bands: list[int] | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """``(C, H, W)`` raster values to ``(H, W, 3) uint8``.

    ``bands`` are 0-based indices of the red, green and blue bands (default: the first three, or the
    single band repeated). 8-bit data is shown as it is; other data is stretched between its 2nd and
    98th percentiles of valid pixels, per band, the usual quick-look for 16-bit satellite imagery.
    """
    if bands is None:
        bands = [0, 1, 2] if data.shape[0] >= 3 else [0, 0, 0]
    rgb = data[bands]
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(np.moveaxis(rgb, 0, -1))
    out = np.zeros(rgb.shape, dtype=np.uint8)
    mask = np.isfinite(rgb).all(axis=0)
    if valid is not None:
        mask &= valid
    for i, band in enumerate(rgb.astype(np.float64)):
        values = band[mask]
        if values.size == 0:
            continue
        low, high = np.percentile(values, [2, 98])
        scale = 255.0 / max(high - low, 1e-12)
        out[i] = np.clip((np.nan_to_num(band, nan=low) - low) * scale, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, -1)
