"""How unsure a map is, pixel by pixel, from its class probabilities.

Both measures lie in [0, 1], 0 where one class takes all the probability:

- ``entropy``: the Shannon entropy of the probabilities over log K, 1 where all K classes are equally likely;
- ``margin``: one minus the gap between the two most probable classes, 1 where they tie (the margin
  sampling of active learning).

Computed on the (calibrated, where the card has a temperature) probabilities the map is drawn from.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from landseg.errors import ConfigError

UncertaintyMeasure = Literal["entropy", "margin"]
UNCERTAINTY_MEASURES: tuple[str, ...] = get_args(UncertaintyMeasure)
DESCRIPTIONS = {
    "entropy": "uncertainty: entropy of the class probabilities / log(classes)",
    "margin": "uncertainty: 1 - (highest - second highest class probability)",
}
"""The band description of an uncertainty raster: what its values are, for whoever opens it."""


def check_measure(measure: str) -> None:
    if measure not in UNCERTAINTY_MEASURES:
        raise ConfigError(f"unknown uncertainty measure {measure!r}; choose one of {', '.join(UNCERTAINTY_MEASURES)}")


def uncertainty(probabilities: np.ndarray, measure: str) -> np.ndarray:
    """``(K, ...)`` probabilities to float32 uncertainty in [0, 1] of shape ``(...)``."""
    check_measure(measure)
    p = np.asarray(probabilities, dtype=np.float32)
    k = p.shape[0]
    if k < 2:
        return np.zeros(p.shape[1:], dtype=np.float32)
    if measure == "entropy":
        terms = p * np.log(np.maximum(p, np.finfo(np.float32).tiny))
        return np.clip(-terms.sum(axis=0) / np.log(k), 0.0, 1.0).astype(np.float32)
    top_two = np.partition(p, k - 2, axis=0)[k - 2 :]
    return np.clip(1.0 - (top_two[1] - top_two[0]), 0.0, 1.0).astype(np.float32)
