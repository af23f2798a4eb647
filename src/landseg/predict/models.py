"""Which models a prediction runs: references to landseg checkpoints, ONNX exports and zoo models.

A reference is a plain string, so it pickles to Dask workers and goes into run records as it is: a
file path (``.ckpt`` or ``.onnx``), or ``zoo:NAME`` for a model of ``landseg.zoo`` (``--model NAME``).
Every reference loads into the same ``LoadedModel`` (card and network), so the ensemble, the ONNX
export and the server treat a zoo model exactly like a trained checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from landseg.checkpoint import CARD_KEY, LoadedModel, ModelCard, load_checkpoint, read_checkpoint
from landseg.errors import CheckpointError
from landseg.zoo import get_zoo_model, load_zoo_model

ZOO_PREFIX = "zoo:"


def model_references(checkpoints: Sequence[str | Path] = (), zoo_models: Sequence[str] = ()) -> list[str]:
    """``--checkpoint`` files then ``--model`` names as references; an unknown zoo name fails here."""
    return [str(c) for c in checkpoints] + [ZOO_PREFIX + get_zoo_model(name).name for name in zoo_models]


def zoo_name(reference: str | Path) -> str | None:
    """The zoo model a reference names, or None for a file."""
    text = str(reference)
    return text[len(ZOO_PREFIX) :] if text.startswith(ZOO_PREFIX) else None


def is_onnx_file(reference: str | Path) -> bool:
    return zoo_name(reference) is None and Path(reference).suffix.lower() == ".onnx"


def is_onnx_zoo_model(reference: str | Path) -> bool:
    """A zoo model that ships as an ONNX graph (the cloud models), run by ONNX Runtime as it is."""
    name = zoo_name(reference)
    return name is not None and get_zoo_model(name).runtime == "onnxruntime"


def model_file(reference: str | Path) -> Path:
    """The file whose bytes are the model: the checkpoint, or the zoo model's weights."""
    name = zoo_name(reference)
    return get_zoo_model(name).weights_path if name is not None else Path(reference)


def load_model(reference: str | Path, device: str = "cpu") -> LoadedModel:
    """Card and network (eval mode) of a checkpoint or zoo model."""
    name = zoo_name(reference)
    return load_zoo_model(name, device) if name is not None else load_checkpoint(reference, device)


def read_card(reference: str | Path) -> ModelCard:
    """The model card of a checkpoint or zoo model, without building its network."""
    name = zoo_name(reference)
    if name is not None:
        return get_zoo_model(name).card()
    path = Path(reference)
    raw = read_checkpoint(path)
    card_data = raw.get("hyper_parameters", {}).get(CARD_KEY) if isinstance(raw, dict) else None
    if card_data is None:
        raise CheckpointError("not a landseg checkpoint (it carries no model card)", path)
    return ModelCard.from_dict(card_data)
