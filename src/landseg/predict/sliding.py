"""Sliding-window prediction of a whole in-memory image: tiles in batches, blended probabilities.

The pieces are kept apart so a streaming engine can reuse them on image strips: ``tile_windows`` and
``blend_weights`` (``tiling.py``) say where tiles go, ``predict_tile_batch`` runs the network on a
stack of tiles, and ``BlendAccumulator`` adds weighted tile probabilities into a canvas.
``predict_probabilities`` only cuts tiles from an array and glues these together.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from landseg.errors import ConfigError
from landseg.predict.tiling import BlendKind, blend_weights, tile_windows
from landseg.predict.tta import TTAMode, Transform, softmax_probabilities, tta_transforms


class BlendAccumulator:
    """Weighted sums of tile probabilities over a ``(K, H, W)`` canvas, and the weights' sum."""

    def __init__(self, num_classes: int, height: int, width: int, weights: np.ndarray):
        self.weights = weights
        self.sums = np.zeros((num_classes, height, width), dtype=np.float32)
        self.weight_sums = np.zeros((height, width), dtype=np.float32)

    def add(self, row: int, col: int, probabilities: np.ndarray) -> None:
        """Add one ``(K, tile, tile)`` tile whose top-left corner is at ``(row, col)``."""
        tile_h, tile_w = probabilities.shape[-2:]
        weights = self.weights[:tile_h, :tile_w]
        self.sums[:, row : row + tile_h, col : col + tile_w] += probabilities * weights
        self.weight_sums[row : row + tile_h, col : col + tile_w] += weights

    def result(self) -> np.ndarray:
        """Blended probabilities, divided in place to spare a canvas-sized copy: call it once, last."""
        if not (self.weight_sums > 0).all():
            raise RuntimeError("some pixels were not covered by any tile")
        return np.divide(self.sums, self.weight_sums, out=self.sums)


def predict_tile_batch(
    network: torch.nn.Module,
    tiles: np.ndarray,
    num_classes: int,
    device: str | torch.device = "cpu",
    transforms: list[Transform] | None = None,
) -> np.ndarray:
    """``(B, C, t, t)`` normalized tiles to ``(B, K, t, t)`` float32 softmax probabilities."""
    batch = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).to(device)
    with torch.inference_mode():
        probabilities = softmax_probabilities(network, batch, num_classes, transforms or tta_transforms(None))
    return probabilities.cpu().numpy()


def pad_to_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """Reflect-pad ``(C, H, W)`` at the bottom and right so both sides are at least ``tile``."""
    pad_h = max(0, tile - image.shape[-2])
    pad_w = max(0, tile - image.shape[-1])
    if not pad_h and not pad_w:
        return image
    return np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")


def predict_probabilities(
    network: torch.nn.Module,
    image: np.ndarray,
    num_classes: int,
    tile: int = 512,
    overlap: float = 0.5,
    blend: BlendKind = "hann",
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    tta: TTAMode | None = None,
    progress: bool = False,
) -> np.ndarray:
    """``(K, H, W)`` float32 softmax probabilities of ``network`` over a normalized ``(C, H, W)`` image.

    ``network`` must already be on ``device`` and in eval mode; it maps ``(B, C, tile, tile)`` to
    ``(B, K, h, w)`` logits. Overlapping tiles are averaged with ``blend`` weights.
    """
    if image.ndim != 3:
        raise ConfigError(f"image must be (bands, height, width), got shape {image.shape}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    transforms = tta_transforms(tta)
    height, width = image.shape[-2:]
    padded = pad_to_tile(image.astype(np.float32, copy=False), tile)
    windows = tile_windows(padded.shape[-2], padded.shape[-1], tile, overlap)
    accumulator = BlendAccumulator(num_classes, padded.shape[-2], padded.shape[-1], blend_weights(tile, blend))

    with _progress_bar(len(windows), enabled=progress) as (bar, task):
        for start in range(0, len(windows), batch_size):
            batch_windows = windows[start : start + batch_size]
            tiles = np.stack([padded[:, r : r + tile, c : c + tile] for r, c in batch_windows])
            probabilities = predict_tile_batch(network, tiles, num_classes, device, transforms)
            for (row, col), tile_probabilities in zip(batch_windows, probabilities):
                accumulator.add(row, col, tile_probabilities)
            bar.advance(task, len(batch_windows))
    return np.ascontiguousarray(accumulator.result()[:, :height, :width])


@contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[tuple[Progress, TaskID]]:
    """A rich progress bar over tiles; a disabled one draws nothing but takes the same calls."""
    columns = (TextColumn("Predicting"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"), TimeRemainingColumn())
    with Progress(*columns, transient=True, disable=not enabled) as bar:
        yield bar, bar.add_task("predict", total=total)
