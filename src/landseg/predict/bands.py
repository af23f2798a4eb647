"""Which bands of an input raster a model reads, in the order it was trained on.

A model card lists the 1-based band indices it was trained on and, when the training data named them,
the band names. A raster whose band descriptions carry all of those names is matched by name, so a file
with the same bands in another order still works; otherwise the indices are used. A raster without
enough bands is refused with a message naming the file, the model and both band lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from landseg.checkpoint import ModelCard
from landseg.errors import ConfigError, DataError


def _normalized(name: str | None) -> str:
    return (name or "").strip().lower()


def match_bands(
    card: ModelCard,
    band_count: int,
    descriptions: Sequence[str | None],
    source: str | Path,
    model_name: str,
    override: Sequence[int] | None = None,
) -> list[int]:
    """1-based indices of the raster's bands in the order the model takes them.

    ``override`` (from ``--bands``) wins; then matching by band name; then the card's indices.
    """
    wanted = len(card.bands)
    if override is not None:
        override = [int(b) for b in override]
        if len(override) != wanted:
            raise ConfigError(
                f"--bands lists {len(override)} band{'s' if len(override) != 1 else ''} but model {model_name} "
                f"reads {wanted}"
            )
        outside = [b for b in override if not 1 <= b <= band_count]
        if outside:
            raise DataError(f"has {band_count} bands; --bands asks for {outside}", source)
        return override
    if card.band_names:
        by_name = {_normalized(d): i + 1 for i, d in enumerate(descriptions) if _normalized(d)}
        found = [by_name.get(_normalized(name)) for name in card.band_names]
        if all(index is not None for index in found):
            return [int(index) for index in found]  # type: ignore[arg-type]
        if any(index is not None for index in found):  # a named stack that lacks some of the bands
            missing = [name for name, index in zip(card.band_names, found, strict=False) if index is None]
            raise DataError(
                f"lacks band{'s' if len(missing) > 1 else ''} {', '.join(missing)} that model {model_name} reads "
                f"(its bands are named {', '.join(d for d in descriptions if d)}); add them, or choose bands with "
                "--bands",
                source,
            )
    needed = max(card.bands)
    if band_count < needed:
        names = f" ({', '.join(card.band_names)})" if card.band_names else ""
        described = [d for d in descriptions if d]
        found_names = f" named {', '.join(described)}" if described else ""
        raise DataError(
            f"has {band_count} band{'s' if band_count != 1 else ''}{found_names}, but model {model_name} reads bands "
            f"{list(card.bands)}{names}: at least {needed} bands expected (or choose them with --bands)",
            source,
        )
    return list(card.bands)
