"""ONNX segmentation models described by Deepness metadata, run as ensemble members.

Deepness (the QGIS plugin, https://qgis-plugin-deepness.readthedocs.io) reads a model's settings from
the ONNX file's metadata, each value JSON-encoded: ``model_type`` (``"Segmentor"``), ``class_names``
(``{"0": "background", ...}``), ``resolution`` (cm per pixel), ``tiles_size`` (``tile_size`` in the
plugin's code), ``tiles_overlap`` (percent), ``standardization_mean`` / ``standardization_std`` (one
per band), ``seg_thresh`` and ``seg_small_segment``. Its input convention: raster values divided by
255 (8-bit RGB becomes 0-1), then ``(x - mean) / std`` per band, as float32 NCHW; a Segmentor returns
``(N, K, H, W)`` per-class scores in 0-1 (probabilities), or one channel for a binary mask.

``deepness_member`` turns such a file into a ``Member`` of the one inference core: the card's
normalization is the same affine map in raw units (``mean * 255``, ``std * 255``), and the network
returns log-probabilities, which the core's softmax maps back to the model's own probabilities. A
file that ``landseg export`` wrote carries landseg's card as well; its bands, classes and colours are
kept, and only what the exported graph does differently (normalization, input scale, outputs) is
taken from the Deepness keys.
"""

from __future__ import annotations

import colorsys
import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch

from landseg.checkpoint import ModelCard
from landseg.classes import color_hex
from landseg.errors import CheckpointError
from landseg.io.safety import JSON_SIDECAR_LIMIT, parse_json_limited
from landseg.normalization import Normalization
from landseg.predict.networks import Member

MODEL_TYPE = "model_type"
CLASS_NAMES = "class_names"
RESOLUTION = "resolution"
TILES_SIZE = "tiles_size"
TILE_SIZE_CODE = "tile_size"
"""The documentation says ``tiles_size``; the plugin's code reads ``tile_size``: landseg writes and reads both."""
TILES_OVERLAP = "tiles_overlap"
MEAN = "standardization_mean"
STD = "standardization_std"
SEG_THRESH = "seg_thresh"
SEG_SMALL_SEGMENT = "seg_small_segment"
SEGMENTOR = "Segmentor"
GRAPH_METADATA = "landseg_graph"
"""Set to ``"deepness"`` by ``landseg export``: the graph follows Deepness's input and output conventions."""
DEEPNESS_GRAPH = "deepness"
CARD_METADATA = "landseg_card"
"""``predict.onnx.CARD_METADATA``, named here too because ``onnx.py`` imports this module."""
INPUT_DIVISOR = 255.0
"""Deepness divides every raster value by this before standardizing."""


def is_deepness_graph(metadata: Mapping[str, str]) -> bool:
    """The file's graph takes Deepness inputs and returns probabilities (landseg's export, or a Deepness model)."""
    return metadata.get(GRAPH_METADATA) == DEEPNESS_GRAPH or (
        CARD_METADATA not in metadata
        and any(key in metadata for key in (MODEL_TYPE, CLASS_NAMES, TILES_SIZE, TILE_SIZE_CODE, MEAN, STD))
    )


class ProbabilityOutputs:
    """Wraps a network returning probabilities so that it returns their logarithm, as the core expects logits.

    ``softmax(log p) = p`` for probabilities that sum to one, so the core's maps and probabilities are the
    model's own. One channel is a binary mask ``p`` and becomes the two classes ``1 - p`` and ``p``.
    Outputs outside 0-1 are taken as logits and passed on unchanged; either way the winning class stays.
    """

    def __init__(self, network):
        self.network = network
        self.fixed_side = getattr(network, "fixed_side", None)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        scores = self.network(batch).float()
        if scores.ndim == 4 and scores.shape[1] == 1:
            scores = torch.cat([1 - scores, scores], dim=1)
        if scores.numel() and (scores.min() < 0 or scores.max() > 1 + 1e-4):
            return scores
        return scores.clamp_min(1e-12).log()


def deepness_member(network, path: Path, landseg_card: str | None = None) -> Member:
    """A member from an ONNX Runtime ``network`` whose file carries Deepness metadata (see the module);
    ``landseg_card`` is the file's landseg card (JSON) where ``landseg export`` wrote one."""
    card = card_from_metadata(network.metadata, _input_shape(network), _output_shape(network), path, landseg_card)
    return Member(card, ProbabilityOutputs(network), path, engine="onnxruntime")


def card_from_metadata(
    metadata: Mapping[str, str], input_shape, output_shape, path: Path, landseg_card: str | None = None
) -> ModelCard:
    """The model card of a Deepness model: one clear error per missing or malformed key."""
    reader = _Reader(metadata, path)
    bands = _band_count(input_shape, reader, path)
    mean, std = reader.standardization(bands)
    normalization = Normalization(tuple(m * INPUT_DIVISOR for m in mean), tuple(s * INPUT_DIVISOR for s in std))
    tile = _tile_size(input_shape, reader, path)
    deepness = {
        k: v
        for k, v in (
            ("resolution_cm", reader.number(RESOLUTION, positive=True)),
            ("tiles_overlap_percent", reader.overlap()),
            ("seg_thresh", reader.threshold()),
            ("seg_small_segment", reader.integer(SEG_SMALL_SEGMENT, minimum=0)),
        )
        if v is not None
    }
    if landseg_card is not None:  # landseg's export: its card, with what the graph now does itself
        data = parse_json_limited(landseg_card, JSON_SIDECAR_LIMIT, path, error=CheckpointError)
        if not isinstance(data, dict):
            raise CheckpointError("ONNX model's landseg card is not a JSON object", path)
        card = ModelCard.from_dict(data)
        if reader.has(CLASS_NAMES) and reader.class_names() != card.class_schema().names:
            raise CheckpointError(
                f"Deepness metadata class_names {reader.class_names()} differ from the "
                f"landseg card's classes {card.class_schema().names}",
                path,
            )
        card.normalization = normalization.to_dict()
        card.input_scale = 1.0
        card.tile_size = tile
        card.training = {**card.training, "deepness": deepness}
        if card.calibration is not None:  # the graph divides its logits by the temperature itself
            card.training["deepness"]["temperature_in_graph"] = card.temperature
            card.calibration = None
        return card
    model_type = reader.required(MODEL_TYPE, str)
    if model_type.capitalize() != SEGMENTOR:
        raise CheckpointError(
            f"metadata model_type is {model_type!r}; landseg runs only Deepness {SEGMENTOR!r} models", path
        )
    names = reader.class_names(required=True)
    outputs = output_shape[-3] if len(output_shape) == 4 and isinstance(output_shape[-3], int) else None
    if outputs is not None and outputs != len(names) and not (outputs == 1 and len(names) == 2):
        raise CheckpointError(
            f"metadata class_names names {len(names)} classes but the model returns {outputs} channels", path
        )
    schema = {
        "name": Path(path).stem,
        "description": "classes from Deepness metadata",
        "classes": [{"name": n, "color": c} for n, c in zip(names, default_palette(len(names)), strict=False)],
    }
    return ModelCard(
        model={"arch": "onnx", "source": "deepness"},
        schema=schema,
        normalization=normalization.to_dict(),
        bands=list(range(1, bands + 1)),
        tile_size=tile,
        training={"deepness": deepness},
    )


def default_palette(count: int) -> list[str]:
    """``count`` distinct ``#RRGGBB`` colours, evenly spaced in hue."""
    colours = []
    for index in range(count):
        red, green, blue = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.65, 0.9)
        colours.append(color_hex((round(red * 255), round(green * 255), round(blue * 255))))
    return colours


class _Reader:
    """Deepness's keys from ONNX metadata, each JSON-decoded and checked, with the key named in every error."""

    def __init__(self, metadata: Mapping[str, str], path: Path):
        self.metadata = metadata
        self.path = path

    def has(self, key: str) -> bool:
        return key in self.metadata

    def fail(self, key: str, problem: str):
        raise CheckpointError(f"Deepness metadata {key!r} {problem}", self.path)

    def value(self, key: str):
        text = self.metadata[key]
        if len(text) > JSON_SIDECAR_LIMIT:
            self.fail(key, f"is larger than {JSON_SIDECAR_LIMIT:,} bytes")
        try:
            return json.loads(text)
        except RecursionError:
            self.fail(key, "is nested too deeply to read")
        except ValueError:
            self.fail(key, f"is not JSON-encoded (got {text[:60]!r}); Deepness reads json.dumps(value)")

    def required(self, key: str, kind: type):
        if key not in self.metadata:
            self.fail(key, "is missing")
        value = self.value(key)
        if not isinstance(value, kind):
            self.fail(key, f"must be a JSON {kind.__name__}, got {value!r:.60}")
        return value

    def number(self, key: str, positive: bool = False) -> float | None:
        if key not in self.metadata:
            return None
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"must be a number, got {value!r:.60}")
        if positive and value <= 0:
            self.fail(key, f"must be positive, got {value}")
        return float(value)

    def integer(self, key: str, minimum: int) -> int | None:
        value = self.number(key)
        if value is None:
            return None
        if value != int(value) or value < minimum:
            self.fail(key, f"must be a whole number of at least {minimum}, got {value:g}")
        return int(value)

    def overlap(self) -> int | None:
        value = self.integer(TILES_OVERLAP, minimum=0)
        if value is not None and value >= 100:
            self.fail(TILES_OVERLAP, f"is a percentage below 100, got {value}")
        return value

    def threshold(self) -> float | None:
        value = self.number(SEG_THRESH)
        if value is not None and not 0 <= value <= 1:
            self.fail(SEG_THRESH, f"must lie in 0-1, got {value:g}")
        return value

    def class_names(self, required: bool = False) -> list[str]:
        if CLASS_NAMES not in self.metadata and not required:
            return []
        names = self.required(CLASS_NAMES, dict)
        try:
            ordered = sorted((int(k), v) for k, v in names.items())
        except (TypeError, ValueError):
            self.fail(CLASS_NAMES, f"must map class indices to names, got keys {sorted(names)[:8]}")
        if not ordered or [k for k, _ in ordered] != list(range(len(ordered))):
            self.fail(CLASS_NAMES, f"must number its classes 0, 1, 2, ... without gaps, got {[k for k, _ in ordered]}")
        if not all(isinstance(v, str) and v for _, v in ordered):
            self.fail(CLASS_NAMES, "must give every class a non-empty name")
        return [v for _, v in ordered]

    def standardization(self, bands: int) -> tuple[list[float], list[float]]:
        present = [k for k in (MEAN, STD) if k in self.metadata]
        if not present:
            return [0.0] * bands, [1.0] * bands
        if len(present) == 1:
            missing = STD if present == [MEAN] else MEAN
            self.fail(missing, f"is missing, but {present[0]!r} is given: Deepness needs both")
        mean, std = self.vector(MEAN, bands), self.vector(STD, bands)
        if any(s <= 0 for s in std):
            self.fail(STD, f"must be positive, got {std}")
        return mean, std

    def vector(self, key: str, bands: int) -> list[float]:
        values = self.value(key)
        if isinstance(values, (int, float)) and not isinstance(values, bool):
            values = [values] * bands
        if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            self.fail(key, f"must be a list of numbers, got {values!r:.60}")
        if len(values) != bands:
            self.fail(key, f"has {len(values)} values but the model takes {bands} bands")
        return [float(v) for v in values]


def _band_count(input_shape, reader: _Reader, path: Path) -> int:
    if len(input_shape) != 4:
        raise CheckpointError(
            f"model input has shape {list(input_shape)}; a Deepness segmentor takes (batch, bands, height, width)", path
        )
    if isinstance(input_shape[1], int) and input_shape[1] > 0:
        return input_shape[1]
    if reader.has(MEAN):
        values = reader.value(MEAN)
        if isinstance(values, list) and values:
            return len(values)
    raise CheckpointError("model input does not fix its band count and no standardization_mean gives it", path)


def _tile_size(input_shape, reader: _Reader, path: Path) -> int:
    side = input_shape[-1] if isinstance(input_shape[-1], int) and input_shape[-1] > 0 else None
    key = TILES_SIZE if reader.has(TILES_SIZE) else TILE_SIZE_CODE
    given = reader.integer(key, minimum=1)
    if side is not None and given is not None and given != side:
        reader.fail(key, f"is {given}, but the model takes {side} px tiles")
    if side is not None:
        return side
    if given is None:
        raise CheckpointError(f"model input does not fix its tile size and metadata {TILES_SIZE!r} is missing", path)
    return given


def _input_shape(network) -> list:
    return list(network.session.get_inputs()[0].shape)


def _output_shape(network) -> list:
    return list(network.session.get_outputs()[0].shape)
