"""The prediction options that ``landseg predict`` and ``landseg evaluate`` share, defined once so both
take the same flags with the same defaults (``PredictOptions()``'s) and so score the same maps.

Flags with a fixed set of values are typed with ``predict.choices``' Literals: Typer offers exactly those
values (and lists them in ``--help``), and the code below receives the types it checks against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landseg.errors import ConfigError
from landseg.predict import choices
from landseg.predict.options import PredictOptions

DEFAULTS = PredictOptions()

Checkpoints = Annotated[
    list[Path] | None,
    typer.Option("--checkpoint", "-c", help="A .ckpt or exported .onnx model; repeat for an ensemble."),
]
ZooModels = Annotated[
    list[str] | None,
    typer.Option(
        "--model", "-m", help="A ready model by name (`landseg models` lists them); repeatable, combinable with -c."
    ),
]
Tile = Annotated[int | None, typer.Option(help="Network tile side in pixels (default: the card's).")]
Overlap = Annotated[float, typer.Option(help="Tile overlap fraction in [0, 1).")]
Blend = Annotated[choices.BlendKind, typer.Option(help="Weights of overlapping tiles: uniform, hann or gaussian.")]
BatchSize = Annotated[int, typer.Option(help="Tiles per forward pass (CPU: 1-2; GPU: 8+).")]
TTA = Annotated[choices.TTAMode | None, typer.Option(help="Test-time augmentation: flips or d4.")]
Engine = Annotated[
    choices.Engine, typer.Option(help="auto (ONNX Runtime on CPU when installed), torch or onnxruntime.")
]
Precision = Annotated[
    choices.Precision,
    typer.Option(
        help="auto (int8 where the model's measured guard passes, else fp32), fp32, int8 (ONNX Runtime; "
        "refused without a guard), or bf16 autocast (torch engine; faster, less exact)."
    ),
]
Device = Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1 ...")]
Bands = Annotated[str | None, typer.Option(help="Input bands in the model's order, e.g. 4,3,2.")]
Nodata = Annotated[float | None, typer.Option(help="Input no-data value (default: the file's).")]
MinArea = Annotated[int, typer.Option(help="Regions under this many pixels take their surroundings' class.")]
InputScaleValues = Annotated[
    float,
    typer.Option(
        help="Multiply raw pixels by this first, e.g. 0.0255 for 16-bit "
        "reflectance (0-10000) into a model trained on 8-bit imagery."
    ),
]
AllowInputMismatch = Annotated[
    bool,
    typer.Option(
        "--allow-input-mismatch",
        help="Predict even when the input's dtype or value range is unlike the model's training pixels.",
    ),
]

CloudMask = Annotated[
    choices.CloudMask,
    typer.Option(
        "--cloud-mask",
        help="Pixels under cloud or shadow become no-data: auto (an L2A product's SCL band, else the cloud "
        "model for Sentinel-2 inputs, else none), model (ukis-csmask's network), scl, or none.",
    ),
]


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise ConfigError(f"--bands must be 1-based band numbers separated by commas, got {text!r}") from None


def model_references(checkpoints: list[Path] | None, zoo_models: list[str] | None) -> list[str]:
    """The ensemble's members from ``--checkpoint`` and ``--model``, checkpoints first."""
    from landseg.predict.models import model_references as references

    if not checkpoints and not zoo_models:
        raise ConfigError("no model given: pass --checkpoint FILE or --model NAME (`landseg models` lists the names)")
    return references(checkpoints or [], zoo_models or [])
