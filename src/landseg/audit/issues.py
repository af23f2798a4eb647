"""Label issues by cleanlab's confident learning, streamed over the images one at a time.

``cleanlab.segmentation.filter.find_label_issues`` needs every image in one ``(N, K, H, W)`` array of one
size; a training set of many sizes, larger than memory and with unlabelled pixels, does not fit it. The
same three steps run here through cleanlab's batch interface (``LabelInspector``), one image per batch
and only the labelled pixels:

1. per-class confident thresholds (``update_confident_thresholds``);
2. every pixel's label quality (self-confidence, ``score_label_quality``) and the estimated number of
   issues; the quality scores go into a fine histogram instead of memory;
3. the estimated number of lowest-quality pixels are the issues, less those whose predicted class is
   their label (as cleanlab's segmentation filter does).

The image's label-quality score is cleanlab's own (``segmentation.rank.get_label_quality_scores``,
softmin over its labelled pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cleanlab.experimental.label_issues_batched import LabelInspector
from cleanlab.segmentation.rank import get_label_quality_scores

from landseg.classes import IGNORE_INDEX

HISTOGRAM_BINS = 1 << 16
"""Resolution of the quality-score cut: the issue count may exceed cleanlab's by the pixels of one bin."""


def labelled_pixels(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels ``(n,)``, probabilities ``(n, K)`` float32 of the labelled pixels, and their ``(H, W)`` mask."""
    keep = labels != IGNORE_INDEX
    flat = np.asarray(probabilities)[:, keep].T.astype(np.float32)
    flat /= np.clip(flat.sum(axis=1, keepdims=True), 1e-12, None)  # float16 storage rounds the sums
    return labels[keep].astype(np.int64), flat, keep


@dataclass
class ImageIssues:
    flagged: np.ndarray
    """``(H, W)`` bool: pixels whose label looks wrong."""
    likely: np.ndarray
    """``(H, W)`` uint8: the predicted class (``IGNORE_INDEX`` where unlabelled)."""
    given_confidence: np.ndarray
    """``(H, W)`` float32: the probability of the given label (0 where unlabelled)."""
    likely_confidence: np.ndarray
    """``(H, W)`` float32: the probability of the predicted class."""
    quality: float
    """cleanlab's label-quality score of the image (0 worst, 1 best); NaN without labelled pixels."""


class IssueFinder:
    """Confident learning over images fed one at a time: ``learn`` them all, ``count`` them all, then ``flag``."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.inspector = LabelInspector(num_class=num_classes, store_results=False, verbose=False, n_jobs=1)
        self.histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self._cutoff: float | None = None

    def learn(self, labels: np.ndarray, probabilities: np.ndarray) -> None:
        """Pass 1: one image into the per-class confident thresholds."""
        given, flat, _ = labelled_pixels(labels, probabilities)
        if len(given):
            self.inspector.update_confident_thresholds(given, flat)

    def count(self, labels: np.ndarray, probabilities: np.ndarray) -> None:
        """Pass 2: one image into the issue count and the histogram of quality scores."""
        given, flat, _ = labelled_pixels(labels, probabilities)
        if not len(given):
            return
        if self.inspector.examples_processed_thresh < 1:
            raise ValueError("IssueFinder.count before any image was learned")
        scores = self.inspector.score_label_quality(given, flat)
        self.histogram += np.histogram(scores, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
        self._cutoff = None

    @property
    def estimated_issues(self) -> int:
        """cleanlab's estimate of the number of mislabelled pixels."""
        if self.inspector.examples_processed_quality < 1:
            return 0
        return int(self.inspector.get_num_issues(silent=True))

    @property
    def cutoff(self) -> float:
        """Pixels of quality below this are the estimated number of lowest-quality ones."""
        if self._cutoff is None:
            wanted = self.estimated_issues
            if wanted <= 0:
                self._cutoff = 0.0
            else:
                cumulative = np.cumsum(self.histogram)
                last_bin = int(np.searchsorted(cumulative, wanted))
                self._cutoff = (min(last_bin, HISTOGRAM_BINS - 1) + 1) / HISTOGRAM_BINS
        return self._cutoff

    def flag(self, labels: np.ndarray, probabilities: np.ndarray) -> ImageIssues:
        """Pass 3: the issues of one image and its label-quality score."""
        given, flat, keep = labelled_pixels(labels, probabilities)
        shape = labels.shape
        flagged = np.zeros(shape, dtype=bool)
        likely = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
        given_confidence = np.zeros(shape, dtype=np.float32)
        likely_confidence = np.zeros(shape, dtype=np.float32)
        if not len(given):
            return ImageIssues(flagged, likely, given_confidence, likely_confidence, float("nan"))
        rows = np.arange(len(given))
        predicted = flat.argmax(axis=1)
        self_confidence = flat[rows, given]
        flagged[keep] = (self_confidence < self.cutoff) & (predicted != given)
        likely[keep] = predicted
        given_confidence[keep] = self_confidence
        likely_confidence[keep] = flat[rows, predicted]
        # cleanlab's per-image score over the labelled pixels, laid out as one 1 x n image (softmin does not
        # depend on where the pixels are).
        quality, _ = get_label_quality_scores(
            given[None, None, :], flat.T[None, :, None, :], method="softmin", verbose=False
        )
        return ImageIssues(flagged, likely, given_confidence, likely_confidence, float(quality[0]))
