"""Label noise injected by construction, to measure the audit: every function returns the noisy mask and
the pixels it changed, so flagged pixels and regions can be scored against a known truth.

- ``relabel_blobs``: round blobs painted with another class (an annotator's wrong class for an area);
- ``paint_class_as``: every region of one class given another class (a class painted as background);
- ``shift_boundaries``: the whole label layer moved by a few pixels (a misregistered annotation).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from landseg.classes import IGNORE_INDEX


def relabel_blobs(
    mask: np.ndarray, rng: np.random.Generator, share: float, num_classes: int, radius: tuple[int, int] = (6, 14)
) -> tuple[np.ndarray, np.ndarray]:
    """Discs placed at random until about ``share`` of the labelled pixels changed; each disc takes one class
    that is not the majority class under it."""
    noisy = mask.copy()
    changed = np.zeros(mask.shape, dtype=bool)
    labelled = mask != IGNORE_INDEX
    wanted = share * labelled.sum()
    rows, cols = np.ogrid[: mask.shape[0], : mask.shape[1]]
    for _ in range(10_000):
        if changed.sum() >= wanted:
            break
        r = int(rng.integers(radius[0], radius[1] + 1))
        cy, cx = int(rng.integers(0, mask.shape[0])), int(rng.integers(0, mask.shape[1]))
        disc = ((rows - cy) ** 2 + (cols - cx) ** 2 <= r * r) & labelled & ~changed
        if disc.sum() < 0.5 * np.pi * r * r:
            continue
        majority = int(np.bincount(mask[disc], minlength=num_classes).argmax())
        new = int(rng.choice([k for k in range(num_classes) if k != majority]))
        noisy[disc] = new
        changed |= disc & (mask != new)
    return noisy, changed


def paint_class_as(
    mask: np.ndarray, rng: np.random.Generator, source: int, target: int, share: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``share`` of the connected regions of class ``source`` relabelled ``target``."""
    regions, count = ndimage.label(mask == source)
    chosen = np.flatnonzero(rng.random(count) < share) + 1
    changed = np.isin(regions, chosen)
    noisy = mask.copy()
    noisy[changed] = target
    return noisy, changed


def shift_boundaries(mask: np.ndarray, shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The labels moved by ``(rows, columns)`` pixels; the uncovered edge becomes ignore."""
    dy, dx = shift
    noisy = np.full(mask.shape, IGNORE_INDEX, dtype=mask.dtype)
    h, w = mask.shape
    noisy[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    changed = (noisy != mask) & (noisy != IGNORE_INDEX) & (mask != IGNORE_INDEX)
    return noisy, changed
