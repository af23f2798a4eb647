"""The short model card the page shows: classes, what the model was trained on, and how well it did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landseg.checkpoint import LoadedModel, read_checkpoint
from landseg.classes import color_hex
from landseg.predict.networks import Member

VALIDATION_METRIC = "val_miou"
# Provenance that is useful to a user; local paths of the training machine are left out.
TRAINING_FIELDS = ("experiment", "train_images", "val_images", "epochs", "landseg_version")


def validation_miou(raw: dict) -> float | None:
    """Best validation mIoU Lightning's ``ModelCheckpoint`` recorded in the checkpoint, if any."""
    for key, state in (raw.get("callbacks") or {}).items():
        if not (str(key).startswith("ModelCheckpoint") and isinstance(state, dict)):
            continue
        score = state.get("best_model_score")
        if state.get("monitor") == VALIDATION_METRIC and score is not None:
            return float(score)
    return None


def describe_model(model: LoadedModel | Member, raw: dict | None = None) -> dict[str, Any]:
    """Everything ``GET /api/model`` returns; ``raw`` is the checkpoint as read from disk."""
    card = model.card
    zoo_name = card.model.get("zoo")
    if raw is None:  # a zoo model's weights file holds tensors only, no training state
        raw = {} if zoo_name else read_checkpoint(model.path)
    schema = card.class_schema()
    training = {key: card.training[key] for key in TRAINING_FIELDS if key in card.training}
    data_root = card.training.get("data_root")
    if data_root:
        training["data_set"] = Path(str(data_root)).name
    if isinstance(raw.get("global_step"), int):
        training["training_steps"] = raw["global_step"]
    miou = validation_miou(raw)
    if miou is None and isinstance(card.training.get(VALIDATION_METRIC), (int, float)):
        miou = float(card.training[VALIDATION_METRIC])
    return {
        "checkpoint": zoo_name or model.path.name,
        "architecture": card.model.get("arch"),
        "encoder": card.model.get("encoder"),
        "schema": schema.name,
        "schema_description": schema.description,
        "classes": [{"index": i, "name": c.name, "color": color_hex(c.color)} for i, c in enumerate(schema.classes)],
        "bands": list(card.bands),
        "band_names": list(card.band_names) if card.band_names else None,
        "input_scale": card.input_scale,
        "tile_size": card.tile_size,
        "validation_miou": miou,
        "training": training,
    }
