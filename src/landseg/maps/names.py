"""Names shared by every command that writes or scores maps: output stems, and the class-name check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from landseg.errors import CheckpointError


def map_stems(images: Sequence[Path], root: Path) -> list[str]:
    """Output stems of images: their file names without suffix, or, where names repeat, their paths under
    ``root`` joined by ``__`` (so ``a/x.tif`` and ``b/x.tif`` give ``a__x`` and ``b__x``)."""
    names = [Path(image).stem for image in images]
    if len(set(names)) == len(names):
        return names

    def from_path(image: Path) -> str:
        image = Path(image)
        relative = image.relative_to(root) if image.is_relative_to(root) else image
        return "__".join(relative.with_suffix("").parts)

    return [from_path(image) for image in images]


def check_model_classes(model_classes: Sequence[str], schema_classes: Sequence[str], model: str | Path) -> None:
    """``CheckpointError`` naming ``model`` unless it predicts exactly the classes of the data's schema."""
    if list(model_classes) != list(schema_classes):
        raise CheckpointError(
            f"model predicts classes {list(model_classes)} but the config's schema has {list(schema_classes)}",
            model,
        )
