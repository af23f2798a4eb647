"""Which image files a list of entries names: files, folders (searched recursively) and glob patterns.

``landseg predict`` reads its scenes this way, and training its unlabelled images (``data.unlabeled``), so
both accept the same things and refuse the same mistakes.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from pathlib import Path

from landseg.errors import DataError

IMAGE_SUFFIXES = {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".vrt", ".img"}


def images_in(folder: Path) -> list[Path]:
    """Image files under ``folder``; a Sentinel-2 ``.SAFE`` folder counts as one image, its band files as none."""
    products = sorted(p for p in folder.rglob("*.SAFE") if p.is_dir())
    found = [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(product in p.parents for product in products)
    ]
    return sorted(found + products)


def image_paths(
    entries: Sequence[str | Path], keep: Callable[[Path], bool] = lambda path: True, context: str = ""
) -> list[Path]:
    """The images ``entries`` name, in order, without repeats. A ``.SAFE`` folder is one image; other folders
    and glob patterns give the images ``keep`` accepts, and must give one. ``context`` starts each error."""
    prefix = f"{context}: " if context else ""
    paths: list[Path] = []
    for entry in entries:
        candidate = Path(entry)
        if candidate.is_dir() and candidate.suffix.lower() == ".safe":
            paths.append(candidate)
        elif candidate.is_dir():
            found = [p for p in images_in(candidate) if keep(p)]
            if not found:
                raise DataError(f"{prefix}folder holds no images (.tif, .jpg, .png, ...)", candidate)
            paths += found
        elif candidate.exists():
            paths.append(candidate)
        else:
            matches = [Path(p) for p in sorted(glob.glob(str(entry), recursive=True))]
            matches = [p for p in matches if p.is_file() and keep(p)]
            if not matches:
                raise DataError(f"{prefix}no such file, and no file matches it as a pattern", entry)
            paths += matches
    return list(dict.fromkeys(paths))
