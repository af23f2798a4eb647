"""One or more trained models applied to raw tiles: bands, normalization, scale, TTA, averaging.

Each member brings its own model card, so members may differ in architecture, band order,
normalization and input scale, as long as they predict the same classes. The ensemble's answer is the
mean of the members' softmax probabilities (each already averaged over its test-time augmentations). A
card's fitted temperature is applied after tiles are blended for a single model (``calibrate``), so that no
pixel changes class, and to each member before averaging for an ensemble (``tempered``).

The networks themselves, and which engine runs them, are ``networks.py``'s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from landseg.calibration import tempered_probabilities
from landseg.classes import ClassSchema
from landseg.errors import CheckpointError, ConfigError
from landseg.normalization import AnyNormalization
from landseg.predict.bands import match_bands
from landseg.predict.int8 import int8_member
from landseg.predict.models import is_onnx_file, is_onnx_zoo_model, load_model, model_file, read_card
from landseg.predict.networks import Engine, Member, Precision, TorchNetwork, check_precision, resolve_engine
from landseg.predict.onnx import load_onnx_member, load_zoo_onnx_member, onnx_member_from_checkpoint
from landseg.predict.tta import TTAMode, softmax_probabilities, tta_transforms


@dataclass(frozen=True)
class BandPlan:
    """The raster bands read once per tile, and where each member finds its own bands among them."""

    read: list[int]
    positions: list[list[int]]
    value_scale: float = 1.0
    """Raw pixels are multiplied by this before each member's normalization (``--input-scale-values``)."""


class Ensemble:
    def __init__(self, members: Sequence[Member], tta: TTAMode | None = None):
        if not members:
            raise ConfigError("no model given: pass at least one --checkpoint or --model")
        self.members = list(members)
        self.schema: ClassSchema = self.members[0].card.class_schema()
        for member in self.members[1:]:
            if member.card.class_schema().names != self.schema.names:
                raise CheckpointError(
                    f"predicts classes {member.card.class_schema().names}, but {self.members[0].path.name} predicts "
                    f"{self.schema.names}: ensemble members must share their classes",
                    member.path,
                )
        for member in self.members:
            if member.card.input_scale <= 0:
                raise CheckpointError(
                    f"model card has input_scale {member.card.input_scale}; it must be positive", member.path
                )
        self.tta = tta
        self.transforms = tta_transforms(tta)

    @property
    def num_classes(self) -> int:
        return self.schema.num_classes

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        """Blended ``(K, h, w)`` probabilities under a single model's temperature, ``softmax(log p / T)``
        per pixel: applied after blending, so that no pixel changes class. An ensemble's members are
        tempered one by one before they are averaged (``_member_probabilities``) instead."""
        temperature = self.members[0].card.temperature
        if len(self.members) > 1 or temperature == 1.0:
            return probabilities
        log_probabilities = np.log(np.maximum(probabilities, np.finfo(np.float32).tiny))
        return tempered_probabilities(log_probabilities, temperature).astype(np.float32)

    @property
    def calibrated(self) -> bool:
        """Whether any member's card carries a fitted temperature."""
        return any(member.card.temperature != 1.0 for member in self.members)

    def uncalibrated(self) -> Ensemble:
        """The same networks without their cards' temperatures: the probabilities before calibration."""
        members = [replace(m, card=replace(m.card, calibration=None)) for m in self.members]
        return Ensemble(members, self.tta)

    def source_tile(self, tile: int | None = None) -> int:
        """Tile side in input pixels: ``tile`` (default the first card's) at the first member's scale."""
        first = self.members[0]
        network_side = first.fixed_side or tile or first.card.tile_size
        if tile is not None and first.fixed_side is not None and tile != first.fixed_side:
            raise ConfigError(
                f"{first.path.name} was exported for {first.fixed_side} px tiles; leave --tile out or export it "
                f"again with --tile {tile}"
            )
        side = max(1, round(network_side / first.card.input_scale))
        for member in self.members[1:]:
            if member.fixed_side is not None and round(side * member.card.input_scale) != member.fixed_side:
                raise ConfigError(
                    f"{member.path.name} was exported for {member.fixed_side} px tiles but the ensemble cuts "
                    f"{side} px tiles; export the members with matching --tile"
                )
        return side

    def plan(
        self,
        band_count: int,
        descriptions: Sequence[str | None],
        source: str | Path,
        bands: Sequence[int] | None = None,
        value_scale: float = 1.0,
    ) -> BandPlan:
        per_member = [
            match_bands(m.card, band_count, descriptions, source, m.path.name, override=bands) for m in self.members
        ]
        read = list(dict.fromkeys(b for member_bands in per_member for b in member_bands))
        return BandPlan(read, [[read.index(b) for b in member_bands] for member_bands in per_member], value_scale)

    def predict(self, raw_tiles: np.ndarray, plan: BandPlan) -> np.ndarray:
        """``(B, len(plan.read), t, t)`` raw pixels to ``(B, K, t, t)`` float32 mean probabilities."""
        side = raw_tiles.shape[-1]
        total: torch.Tensor | None = None
        with torch.inference_mode():
            for member, positions in zip(self.members, plan.positions, strict=False):
                raw = raw_tiles[:, positions]
                if plan.value_scale != 1.0:
                    raw = raw.astype(np.float32) * np.float32(plan.value_scale)
                probabilities = self._member_probabilities(member, raw, side)
                total = probabilities if total is None else total.add_(probabilities)
            if total is None:
                raise ConfigError("an ensemble needs at least one model")
            if len(self.members) > 1:
                total.div_(len(self.members))
        return total.cpu().numpy()

    def _member_probabilities(self, member: Member, raw: np.ndarray, side: int) -> torch.Tensor:
        batch = normalize_batch(raw, member.card.input_normalization()).to(member.device)
        network_side = member.fixed_side or max(1, round(side * member.card.input_scale))
        if network_side != side:
            batch = F.interpolate(
                batch,
                size=(network_side, network_side),
                mode="bilinear",
                align_corners=False,
                antialias=network_side < side,
            )
        if len(self.transforms) == 1:
            probabilities = _softmax(member.network(batch), self.num_classes, batch.shape[-2:])
        else:
            probabilities = softmax_probabilities(member.network, batch, self.num_classes, self.transforms)
        if len(self.members) > 1 and member.card.temperature != 1.0:
            probabilities = tempered(probabilities, member.card.temperature)
        if network_side != side:
            probabilities = F.interpolate(probabilities, size=(side, side), mode="bilinear", align_corners=False)
        return probabilities.float()


def normalize_batch(raw: np.ndarray, normalization: AnyNormalization) -> torch.Tensor:
    """The card's normalization, of whichever kind, on a whole ``(B, C, h, w)`` batch at once."""
    return normalization.apply_torch(torch.from_numpy(np.ascontiguousarray(raw)))


def tempered(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(log p / T)`` over the classes (dim 1): a member's probabilities under its card's fitted
    temperature (``landseg.calibration.fit_temperature``). For one network without test-time augmentation it
    is temperature scaling of its logits; the class of every pixel stays the same."""
    smallest = torch.finfo(probabilities.dtype).tiny
    return torch.softmax(torch.log(probabilities.clamp_min(smallest)) / temperature, dim=1)


def _softmax(logits: torch.Tensor, num_classes: int, size: torch.Size) -> torch.Tensor:
    """``tta.softmax_probabilities`` for the identity alone, without its averaging copy."""
    if logits.ndim != 4 or logits.shape[1] != num_classes:
        raise CheckpointError(
            f"network returned shape {tuple(logits.shape)}; expected (batch, {num_classes} classes, H, W)"
        )
    logits = logits.float()
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return torch.softmax(logits, dim=1)


def load_ensemble(
    models: Sequence[str | Path],
    engine: Engine = "auto",
    tta: TTAMode | None = None,
    device: str | torch.device = "cpu",
    precision: Precision = "auto",
    channels_last: bool = True,
    compile: bool = False,
    threads: int | None = None,
    tile: int | None = None,
) -> Ensemble:
    """Members from model references (``models.py``): landseg checkpoints (``.ckpt``), exported models
    (``.onnx``, always ONNX Runtime) and zoo models (``zoo:NAME``).

    Checkpoints and zoo models run by ONNX Runtime are exported for the network tile of ``tile``
    (default: the first card's tile size) at their own input scale, once, and cached (``onnx.cached_export``).
    With ``precision`` ``auto`` or ``int8``, their int8 versions run where ``int8.int8_member`` takes them.
    """
    check_precision(precision)
    chosen = resolve_engine(engine, device, precision)
    members: list[Member] = []
    source_side = None
    for reference in models:
        if is_onnx_file(reference):
            members.append(load_onnx_member(Path(reference), threads=threads))
            continue
        if is_onnx_zoo_model(reference):
            members.append(load_zoo_onnx_member(str(reference), chosen, threads))
            continue
        loaded = None
        card = read_card(reference) if chosen == "onnxruntime" else (loaded := load_model(reference)).card
        if source_side is None:
            source_side = max(1, round((tile or card.tile_size) / card.input_scale)) if card.input_scale > 0 else 1
        if chosen == "onnxruntime":
            side = max(1, round(source_side * card.input_scale))
            quantized = (
                int8_member(reference, card, side, precision, threads) if precision in ("auto", "int8") else None
            )
            if quantized is not None:
                members.append(quantized)
                continue
            member = onnx_member_from_checkpoint(
                model_file(reference),
                card,
                side,
                threads=threads,
                fall_back=engine == "auto",
                load=functools.partial(load_model, reference),
            )
            if member is not None:
                members.append(member)
                continue
        loaded = loaded or load_model(reference)
        torch_precision: Precision = "bf16" if precision == "bf16" else "fp32"
        network = TorchNetwork(loaded.network, device, torch_precision, channels_last, compile)
        members.append(Member(loaded.card, network, loaded.path, network.device, precision=torch_precision))
    return Ensemble(members, tta)
