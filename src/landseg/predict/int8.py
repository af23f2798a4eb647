"""Which int8 model a checkpoint has, and whether its guard lets prediction run it.

int8 models are made by ``quantize.py`` and cached beside their checkpoint (or in the user cache, for
zoo models and read-only folders) under the checkpoint content's key, like fp32 exports; their card
carries the guard: agreement with fp32 classes and the mIoU change on held-out images.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

from landseg.checkpoint import ModelCard
from landseg.errors import ConfigError
from landseg.predict.models import model_file, zoo_name
from landseg.predict.networks import Member
from landseg.predict.onnx import cache_folder, content_key, export_beside, load_onnx_member

AGREEMENT_BAR = 0.995
"""Share of held-out pixels whose class int8 must keep for ``--precision auto`` to run it."""
MIOU_CHANGE_BAR = -0.005
"""The mIoU change (int8 minus fp32) on held-out labels that ``--precision auto`` accepts, at worst."""


def int8_beside(checkpoint: Path, key: str, side: int) -> Path:
    """``best.ckpt`` -> ``best.<key>.t<side>.int8.onnx``: the int8 model of that checkpoint content."""
    return export_beside(checkpoint, key, side).with_suffix(".int8.onnx")


def find_int8(reference: str | Path, side: int) -> Path | None:
    """The int8 model made from this checkpoint's (or zoo model's) present content for ``side``-pixel
    tiles, beside it or in the user cache, or None."""
    weights = model_file(reference)
    beside = int8_beside(weights, content_key(weights), side)
    for found in (beside, cache_folder() / "onnx" / beside.name):
        if found.is_file():
            return found
    return None


def guard_passes(guard: dict | None) -> bool:
    """Whether a measured guard lets ``--precision auto`` run int8: agreement and mIoU change within the bars."""
    if not guard:
        return False
    change = guard.get("miou_change")
    return guard.get("agreement", 0.0) >= AGREEMENT_BAR and (change is None or change >= MIOU_CHANGE_BAR)


def describe_guard(guard: dict) -> str:
    """One line for messages: ``agreement 99.71 % (99.95 % where fp32 leads by 0.2), mIoU change -0.0012 on
    7 val images``."""
    change = guard.get("miou_change")
    measured = guard.get("measured_on", {})
    text = f"agreement {100 * guard['agreement']:.2f} %"
    if guard.get("agreement_where_confident") is not None:
        text += f" ({100 * guard['agreement_where_confident']:.2f} % where fp32 leads by {guard['confident_margin']:g})"
    text += f", mIoU change {change:+.4f}" if change is not None else ", no labels for an mIoU"
    return f"{text} on {measured.get('images', '?')} {measured.get('split', 'held-out')} images"


def describe_member(member: Member) -> str:
    """``best.ckpt (onnxruntime, int8: agreement 99.71 %, ...)``: what runs, for the console."""
    if member.precision == "int8" and member.card.int8:
        return f"{member.name} ({member.engine}, int8: {describe_guard(member.card.int8)})"
    return f"{member.name} ({member.engine}, {member.precision})"


def int8_member(
    reference: str | Path, card: ModelCard, side: int, precision: str, threads: int | None = None
) -> Member | None:
    """The int8 version of a checkpoint or zoo model as an ensemble member, where ``precision`` takes it:
    ``int8`` whenever one exists (refused where none does), ``auto`` only where its guard passes."""
    found = find_int8(reference, side)
    member = load_onnx_member(found, threads) if found is not None else None
    guard = member.card.int8 if member is not None else None
    name = zoo_name(reference) or Path(reference).name
    if guard is None:
        if precision == "int8":
            source = f"--model {zoo_name(reference)}" if zoo_name(reference) else f"--checkpoint {reference}"
            raise ConfigError(
                f"{name} has no int8 model with a measured guard for {side} px tiles; make one with "
                f"`landseg export {source} --precision int8 --config EXPERIMENT.yaml --onnx OUT.onnx`, "
                "or train with train.int8_export (the default)"
            )
        return None
    assert member is not None  # a guard comes from a found member
    if not guard_passes(guard):
        if precision == "auto":
            return None
        warnings.warn(
            f"{name}: int8 as asked, though its guard misses the bars ({describe_guard(guard)})", stacklevel=2
        )
    return replace(member, card=replace(card, int8=guard), path=model_file(reference), precision="int8")
