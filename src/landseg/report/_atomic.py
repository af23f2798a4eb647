"""Write report files under a temporary name in the target folder, then rename.

A reader (a browser refreshing ``report.html``, a CI job picking up figures) never sees a half-written
file, and a crash leaves the previous version in place.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write to; on success it replaces ``path``.

    The temporary name keeps the suffix so writers that infer a format from it still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would survive the rename; a plain new file gets the user's umask.
    temp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        yield temp
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def save_figure(figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib ``Figure`` as PNG atomically and return the final path."""
    target = Path(path)
    with atomic_path(target) as temp:
        figure.savefig(temp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return target
