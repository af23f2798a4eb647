"""Calibration: whether the probabilities landseg writes mean what they say.

``CalibrationTally`` accumulates, over every labelled pixel of an evaluation, what the usual calibration
measures need, in fixed-size counts (like the confusion matrix, so a split of any size is measured in
one pass and tallies of several processes add up):

- **ECE**, top-label expected calibration error (Guo et al., 2017): pixels are put in ``BINS``
  equal-width bins of ``[0, 1]`` by the probability of the class the map shows; ECE is the sum over bins
  of the bin's share of pixels times ``|accuracy - mean probability|`` in it. 0 is perfectly calibrated.
- **Classwise ECE** (Kull et al., 2019): for each class k, every pixel binned by ``p_k``; the same sum
  with the frequency of k in the bin against the mean ``p_k``. Reported per class and as their mean.
- **Brier score** (Brier, 1950, multi-class form): the mean over pixels of ``sum_k (p_k - y_k)^2``,
  0 for certain and right, 2 for certain and wrong.
- **Reliability diagram**: per bin of top-label probability, its pixels, mean probability and accuracy.

The top label is the class of the map as written, not the argmax of the probabilities: both agree except
where the map was cleaned up (``min_area``) or two probabilities tie, and the map is what users get.

``fit_temperature`` fits temperature scaling (Guo et al., 2017): one number T, probabilities become
``softmax(log p / T)``; T > 1 softens an overconfident model, T < 1 sharpens an underconfident one, and
no pixel changes class. Training fits it on the validation images and stores it on the model card
(``landseg.train.calibrate``); the inference core applies it to every member's probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BINS = 15
"""Equal-width probability bins, as Guo et al. (2017) used; stated with every result."""
TEMPERATURES = (0.05, 20.0)
"""The range a fitted temperature is searched in."""


class CalibrationTally:
    """Binned counts of probabilities against truth, accumulated image by image."""

    def __init__(self, num_classes: int, bins: int = BINS):
        if num_classes < 1 or bins < 1:
            raise ValueError(f"need at least one class and one bin, got {num_classes} classes and {bins} bins")
        self.num_classes, self.bins = int(num_classes), int(bins)
        self.top = np.zeros((3, self.bins))
        """Per bin of the shown class's probability: pixels, summed probability, correct pixels."""
        self.per_class = np.zeros((self.num_classes, 3, self.bins))
        """Per class and bin of that class's probability: pixels, summed probability, pixels of the class."""
        self.squared_error = 0.0
        self.pixels = 0

    def update(self, probabilities: np.ndarray, shown: np.ndarray, truth: np.ndarray) -> None:
        """Add pixels: ``probabilities`` ``(K, N)`` in [0, 1], ``shown`` ``(N,)`` the map's classes and
        ``truth`` ``(N,)`` the labels (both class indices; leave unlabelled and no-data pixels out)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        shown, truth = np.asarray(shown).reshape(-1), np.asarray(truth).reshape(-1)
        if probabilities.shape != (self.num_classes, truth.size) or shown.size != truth.size:
            raise ValueError(
                f"need ({self.num_classes}, N) probabilities and N map and truth classes, got "
                f"{probabilities.shape}, {shown.size} and {truth.size}"
            )
        for name, classes in (("map", shown), ("truth", truth)):
            if classes.size and (classes.min() < 0 or classes.max() >= self.num_classes):
                raise ValueError(f"{name} classes must lie in 0..{self.num_classes - 1}")
        pixels = np.arange(truth.size)
        confidence = probabilities[shown, pixels]
        self.top += self._binned(confidence, shown == truth)
        for k in range(self.num_classes):
            self.per_class[k] += self._binned(probabilities[k], truth == k)
        # sum_k (p_k - y_k)^2 = sum_k p_k^2 - 2 p_truth + 1
        self.squared_error += float((probabilities**2).sum() - 2 * probabilities[truth, pixels].sum() + truth.size)
        self.pixels += int(truth.size)

    def _binned(self, probability: np.ndarray, hit: np.ndarray) -> np.ndarray:
        index = np.minimum((probability * self.bins).astype(np.int64), self.bins - 1)
        return np.stack(
            [
                np.bincount(index, minlength=self.bins),
                np.bincount(index, weights=probability, minlength=self.bins),
                np.bincount(index, weights=hit.astype(np.float64), minlength=self.bins),
            ]
        )

    @staticmethod
    def _ece(counts: np.ndarray) -> float:
        pixels, probability, hits = counts
        total = pixels.sum()
        if total == 0:
            return float("nan")
        return float(np.abs(hits - probability).sum() / total)

    def ece(self) -> float:
        """Top-label expected calibration error; NaN before any pixel."""
        return self._ece(self.top)

    def classwise_ece(self) -> np.ndarray:
        """``(K,)`` expected calibration error of each class's probability."""
        return np.array([self._ece(counts) for counts in self.per_class])

    def brier(self) -> float:
        return self.squared_error / self.pixels if self.pixels else float("nan")

    def reliability(self) -> list[dict]:
        """One row per bin: its bounds, pixels, mean top-label probability and accuracy (None when empty)."""
        pixels, probability, hits = self.top
        rows = []
        for b in range(self.bins):
            filled = pixels[b] > 0
            rows.append(
                {
                    "lower": b / self.bins,
                    "upper": (b + 1) / self.bins,
                    "pixels": int(pixels[b]),
                    "mean_probability": float(probability[b] / pixels[b]) if filled else None,
                    "accuracy": float(hits[b] / pixels[b]) if filled else None,
                }
            )
        return rows

    def to_dict(self, class_names: Sequence[str]) -> dict:
        """Everything a report shows, with the binning stated; undefined values (no pixels) are None."""
        classwise = self.classwise_ece()
        return {
            "binning": f"{self.bins} equal-width bins of [0, 1]",
            "pixels": self.pixels,
            "ece": _finite(self.ece()),
            "classwise_ece": {
                name: _finite(value) for name, value in zip(class_names, classwise.tolist(), strict=True)
            },
            "mean_classwise_ece": _finite(float(classwise.mean())) if self.pixels else None,
            "brier": _finite(self.brier()),
            "reliability": self.reliability(),
        }


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined measure is written as null."""
    return None if np.isnan(value) else value


def fit_temperature(log_probabilities: np.ndarray, truth: np.ndarray) -> float:
    """The temperature T that minimises the mean negative log-likelihood of ``softmax(log p / T)`` over
    pixels given as ``(K, N)`` log-probabilities (or logits) and ``(N,)`` true classes.

    The likelihood is concave in 1/T (a log-sum-exp minus a linear term), so a bounded scalar search finds
    its one maximum; T = 1 is among the candidates, so the fit never lowers the likelihood."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    scores = np.asarray(log_probabilities, dtype=np.float64)
    truth = np.asarray(truth).reshape(-1)
    if scores.ndim != 2 or scores.shape[1] != truth.size or truth.size == 0:
        raise ValueError(f"need (K, N) scores and N > 0 true classes, got {scores.shape} and {truth.size}")
    picked = scores[truth, np.arange(truth.size)]

    def negative_log_likelihood(inverse: float) -> float:
        return float(np.mean(logsumexp(inverse * scores, axis=0) - inverse * picked))

    low, high = 1 / TEMPERATURES[1], 1 / TEMPERATURES[0]
    result = minimize_scalar(negative_log_likelihood, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    best = float(result.x) if negative_log_likelihood(result.x) <= negative_log_likelihood(1.0) else 1.0
    return 1 / best


def tempered_probabilities(log_probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` over axis 0 of ``(K, ...)`` log-probabilities, in float64."""
    from scipy.special import softmax

    return softmax(np.asarray(log_probabilities, dtype=np.float64) / temperature, axis=0)
