"""The two uncertainty measures against their definitions, at their ends and in between."""

from __future__ import annotations

import numpy as np
import pytest

from landseg.errors import ConfigError
from landseg.uncertainty import uncertainty


def test_measures_at_their_ends_and_against_their_definitions():
    rng = np.random.default_rng(3)
    k = 5
    logits = rng.normal(0, 2, size=(k, 40, 30))
    p = np.exp(logits) / np.exp(logits).sum(axis=0)
    p[:, 0, 0] = np.eye(k)[2]  # certain
    p[:, 0, 1] = 1 / k  # undecided among all
    p[:, 0, 2] = [0.5, 0.5, 0, 0, 0]  # a tie of two
    entropy = uncertainty(p, "entropy")
    margin = uncertainty(p, "margin")
    assert entropy.dtype == margin.dtype == np.float32 and entropy.shape == margin.shape == (40, 30)
    assert entropy[0, 0] == pytest.approx(0, abs=1e-6) and margin[0, 0] == pytest.approx(0, abs=1e-6)
    assert entropy[0, 1] == pytest.approx(1, abs=1e-6) and margin[0, 1] == pytest.approx(1, abs=1e-6)
    assert entropy[0, 2] == pytest.approx(np.log(2) / np.log(k), abs=1e-6) and margin[0, 2] == pytest.approx(1)
    safe = np.maximum(p, 1e-30)
    np.testing.assert_allclose(entropy, -(p * np.log(safe)).sum(axis=0) / np.log(k), atol=1e-5)
    ordered = np.sort(p, axis=0)
    np.testing.assert_allclose(margin, 1 - (ordered[-1] - ordered[-2]), atol=1e-6)
    with pytest.raises(ConfigError, match="unknown uncertainty measure 'variance'"):
        uncertainty(p, "variance")
