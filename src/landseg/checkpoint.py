"""What a checkpoint carries so that prediction needs nothing else: the model card.

Training stores the card as Lightning hyper-parameters (``hyper_parameters["card"]``) next to the
weights (``state_dict`` keys under ``model.``). ``load_checkpoint`` rebuilds the network from the
card alone, so ``predict/`` and ``serve/`` never import ``train/`` or read a training config.

A checkpoint is data, never code: every load is ``torch.load(weights_only=True)``, which accepts
tensors and plain Python values and refuses any pickle that names another callable. landseg's own
checkpoints hold nothing else. The one exception is ``convert_checkpoint`` with ``trust=True``: it
unpickles a checkpoint its user vouches for and writes a copy that loads safely.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath

import torch

from landseg.classes import ClassSchema
from landseg.errors import CheckpointError
from landseg.io.write import atomic_output
from landseg.normalization import AnyNormalization, Normalization

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
    calibration: dict | None = None
    """The fitted temperature and how well it calibrates (``landseg.train.calibrate``); None: uncalibrated."""
    int8: dict | None = None
    """On an int8 model: its guard, measured against fp32 on held-out images (``predict.quantize``)."""

    @property
    def temperature(self) -> float:
        """The temperature the inference core divides log-probabilities by (1: uncalibrated)."""
        return float((self.calibration or {}).get("temperature", 1.0))

    def class_schema(self) -> ClassSchema:
        return ClassSchema.from_dict(self.schema)

    def input_normalization(self) -> AnyNormalization:
        return Normalization.from_dict(self.normalization)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class LoadedModel:
    card: ModelCard
    network: torch.nn.Module
    path: Path


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint the safe loader refused: it names a callable to run while unpickling."""


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
        name = refused.group(1) if "." in refused.group(1) else f"builtins.{refused.group(1)}"  # torch drops it
        raise UnsafeCheckpointError(
            f"checkpoint needs unpickling of {name} (which could run arbitrary code), so landseg "
            f"does not load it; if its source is trusted, `landseg convert-checkpoint --trust {path} SAFE.ckpt` "
            "writes a copy that holds only data",
            path,
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
    state = {k[len(STATE_PREFIX) :]: v for k, v in raw["state_dict"].items() if k.startswith(STATE_PREFIX)}
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the model the card describes ({str(exc)[:200]})", path) from None
    network.eval().to(device)
    return LoadedModel(card=card, network=network, path=path)


# -- converting a trusted checkpoint into one that loads safely ---------------------------------------
KEPT_COUNTERS = ("epoch", "global_step", "validated_at_step")


def convert_checkpoint(source: str | Path, destination: str | Path, trust: bool) -> Path:
    """Write ``destination``: ``source``'s weights, model card and training settings as tensors and plain
    data only, which ``read_checkpoint`` loads without unpickling any code.

    ``source`` is unpickled with ``weights_only=False`` (the only such load in landseg), which runs any
    code it holds: hence ``trust``. Optimizer, scheduler, callback and loop states are left out, so the
    copy predicts, evaluates, serves and exports, but does not ``--resume``.
    """
    source, destination = Path(source), Path(destination)
    if not trust:
        raise CheckpointError(
            "converting unpickles the checkpoint, which runs any code it holds; pass --trust only if you "
            "trust where it comes from",
            source,
        )
    try:
        raw = read_checkpoint(source)  # already data: nothing is unpickled beyond the safe loader
    except UnsafeCheckpointError:
        raw = _unpickle_trusted(source)
    safe = _plain_checkpoint(raw, source)
    with atomic_output(destination) as temporary:
        torch.save(safe, temporary)
        _verify_converted(temporary, source)
    return destination


def _unpickle_trusted(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot unpickle checkpoint ({type(exc).__name__}: {str(exc)[:160]})", path) from None


def _plain_checkpoint(raw, source: Path) -> dict:
    hyper = raw.get("hyper_parameters") if isinstance(raw, Mapping) else None
    if not isinstance(hyper, Mapping) or not isinstance(hyper.get(CARD_KEY), Mapping):
        raise CheckpointError("not a landseg checkpoint (it carries no model card)", source)
    card = _plain(hyper[CARD_KEY], "the model card", source)
    kept_hyper = {CARD_KEY: card}
    if "train" in hyper:
        kept_hyper["train"] = _plain(hyper["train"], "the training settings", source)
    state = raw.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError("checkpoint holds no state_dict of weights", source)
    converted: dict[str, object] = {
        "state_dict": {str(k): _plain_tensor(v) for k, v in state.items() if isinstance(v, torch.Tensor)},
        "hyper_parameters": kept_hyper,
    }
    converted.update({k: int(raw[k]) for k in KEPT_COUNTERS if isinstance(raw.get(k), int)})
    return converted


def _plain_tensor(tensor: torch.Tensor) -> torch.Tensor:
    # Parameters and tensor subclasses pickle through their own classes: store a plain tensor.
    return tensor.detach().cpu().as_subclass(torch.Tensor).clone()


def _plain(value, where: str, source: Path):
    """``value`` as dicts, lists, strings, numbers, booleans and None, or one error saying what is not."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, where, source) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where, source) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)  # numpy and torch scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _plain(item(), where, source)
    raise CheckpointError(
        f"{where} holds a {type(value).__qualname__}, which is not plain data; cannot convert", source
    )


def _verify_converted(temporary: Path, source: Path) -> None:
    try:
        load_checkpoint(temporary)
    except CheckpointError as exc:
        raise CheckpointError(f"the converted copy does not load ({exc.problem})", source) from None
