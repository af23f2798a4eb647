"""Saving matplotlib figures the way every report file is written: atomically."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from landseg.io.write import atomic_output


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``figure`` as PNG under a temporary name next to ``path``, rename it, return ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as temp:
        figure.savefig(temp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return target
