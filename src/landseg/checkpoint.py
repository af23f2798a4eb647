"""What a checkpoint carries so that prediction needs nothing else: the model card.

Training stores the card as Lightning hyper-parameters (``hyper_parameters["card"]``) next to the
weights (``state_dict`` keys under ``model.``). ``load_checkpoint`` rebuilds the network from the
card alone, so ``predict/`` and ``serve/`` never import ``train/`` or read a training config.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from landseg.classes import ClassSchema
from landseg.errors import CheckpointError
from landseg.normalization import Normalization

CARD_KEY = "card"
STATE_PREFIX = "model."


@dataclass
class ModelCard:
    model: dict
    """``ModelSpec.to_dict()``."""
    schema: dict
    """``ClassSchema.to_dict()``."""
    normalization: dict
    """``Normalization.to_dict()``, applied to the selected bands in raw units."""
    bands: list[int]
    """1-based band indices read from every input raster, in model-input order."""
    band_names: list[str] | None = None
    input_scale: float = 1.0
    """Images are resampled by this factor before the model sees them (seed 002 found 0.5 best)."""
    tile_size: int = 512
    """Default sliding-window tile for prediction (the training crop or larger)."""
    training: dict = field(default_factory=dict)
    """Free-form provenance: data set, epochs, validation mIoU, landseg version."""
    input_stats: dict | None = None
    """``io.pixel_stats.PixelStats.to_dict()`` of the training pixels: dtype, per-band ranges, resolution.
    Inputs are checked against it; cards older than it skip the check."""

    def class_schema(self) -> ClassSchema:
        return ClassSchema.from_dict(self.schema)

    def input_normalization(self) -> Normalization:
        return Normalization.from_dict(self.normalization)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class LoadedModel:
    card: ModelCard
    network: torch.nn.Module
    path: Path


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError("checkpoint does not exist", path)
    if path.stat().st_size == 0:
        raise CheckpointError("checkpoint is empty (0 bytes)", path)
    try:
        # Only tensors and plain data: a pickle that names any other callable is refused, never run.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused is None:  # not a refusal: bytes that are no checkpoint pickle at all
            raise CheckpointError("checkpoint is truncated or corrupt (not a readable pickle)", path) from None
        raise CheckpointError(
            f"checkpoint needs unpickling of {refused.group(1)} (which could run arbitrary code), so landseg "
            "does not load it; if you trust its source, load it once with torch.load(weights_only=False) and "
            "save only its state_dict and hyper_parameters", path,
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint is truncated or corrupt ({str(exc).splitlines()[0][:160]})", path) from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the trained network from a landseg checkpoint, in eval mode."""
    from landseg.models import ModelSpec, build_model

    path = Path(path)
    raw = read_checkpoint(path)
    card_data = raw.get("hyper_parameters", {}).get(CARD_KEY) if isinstance(raw, dict) else None
    if card_data is None:
        raise CheckpointError("not a landseg checkpoint (it carries no model card)", path)
    card = ModelCard.from_dict(card_data)
    # The trained weights replace any pretrained ones: never download or unpack them again here.
    spec = ModelSpec.from_dict({**card.model, "encoder_weights": None})
    network = build_model(spec)
    state = {k[len(STATE_PREFIX):]: v for k, v in raw["state_dict"].items() if k.startswith(STATE_PREFIX)}
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the model the card describes ({str(exc)[:200]})", path) from None
    network.eval().to(device)
    return LoadedModel(card=card, network=network, path=path)
