"""``landseg export`` for Deepness (QGIS): a graph that follows Deepness's conventions, and its metadata.

Deepness feeds a segmentation model float32 NCHW tiles of raster values divided by 255, standardized
by the metadata's ``standardization_mean`` and ``standardization_std``, and reads per-class
probabilities back (``predict/deepness.py`` has the keys and the reading side). The exported graph is
therefore the network with a softmax at its end (its logits divided by the card's fitted temperature first,
so QGIS shows calibrated probabilities; landseg reading the file back does not apply it twice), and:

- where the card's normalization is one mean and std per band and its input scale is 1, Deepness's
  standardization is the card's own (``mean / 255``, ``std / 255``), and the graph starts at the network;
- otherwise (the ``dynamic_world`` log/sigmoid kind, or a model that sees a resized image) that cannot
  be said in Deepness's terms, so the graph *folds* it in: it multiplies back by 255, applies the card's
  normalization, resizes by the input scale, runs the network and resizes the probabilities back, and
  the metadata asks Deepness for no standardization (mean 0, std 1).

Either way the metadata describes exactly what the graph expects. landseg's own card travels beside the
Deepness keys, and ``landseg predict`` reads the file back through the same Deepness path.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from landseg.checkpoint import LoadedModel, ModelCard
from landseg.errors import CheckpointError, ConfigError
from landseg.io.write import atomic_output
from landseg.normalization import Normalization
from landseg.predict import deepness as keys
from landseg.predict.networks import require_package
from landseg.predict.onnx import export_onnx
from landseg.predict.options import PredictOptions

OUTPUT_NAME = "probabilities"


class DeepnessGraph(torch.nn.Module):
    """``(B, C, side, side)`` Deepness inputs to ``(B, K, side, side)`` class probabilities."""

    def __init__(self, network: torch.nn.Module, card: ModelCard, side: int, fold: bool):
        super().__init__()
        self.network = network
        self.fold = fold
        self.normalization = card.input_normalization() if fold else None
        self.side = side
        self.network_side = max(1, round(side * card.input_scale)) if fold else side
        self.temperature = card.temperature

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.normalization is not None:
            batch = self.normalization.apply_torch(batch * keys.INPUT_DIVISOR)
            if self.network_side != self.side:
                batch = F.interpolate(
                    batch,
                    size=(self.network_side, self.network_side),
                    mode="bilinear",
                    align_corners=False,
                    antialias=self.network_side < self.side,
                )
        logits = self.network(batch)
        if logits.shape[-2:] != batch.shape[-2:]:
            logits = F.interpolate(logits, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        probabilities = torch.softmax(logits.float() / self.temperature, dim=1)
        if self.network_side != self.side:
            probabilities = F.interpolate(
                probabilities, size=(self.side, self.side), mode="bilinear", align_corners=False
            )
        return probabilities


def deepness_standardization(card: ModelCard) -> Normalization | None:
    """The card's per-band mean and std when Deepness can apply them itself, on unscaled tiles; None when
    the card's input handling cannot be said that way and the graph has to fold it in."""
    normalization = card.input_normalization()
    if isinstance(normalization, Normalization) and card.input_scale == 1.0:
        return normalization
    return None


def needs_folding(card: ModelCard) -> bool:
    """The card's input handling cannot be said with Deepness's per-band mean and std on unscaled tiles."""
    return deepness_standardization(card) is None


def graph_side(card: ModelCard, tile: int | None = None) -> int:
    """Input tile side of the exported graph: ``tile`` network pixels (default: the card's) in source pixels."""
    network_side = tile or card.tile_size
    if network_side < 1:
        raise ConfigError(f"tile size must be positive, got {network_side}")
    if card.input_scale <= 0:
        raise ConfigError(f"model card has input_scale {card.input_scale}; it must be positive")
    return max(1, round(network_side / card.input_scale))


def export_side(card: ModelCard, tile: int | None = None) -> int:
    """Input tile side of the graph ``export_for_deepness`` writes for ``tile`` network pixels."""
    return graph_side(card, tile) if needs_folding(card) else (tile or card.tile_size)


def deepness_metadata(card: ModelCard, side: int, fold: bool) -> dict[str, str]:
    """The Deepness keys, JSON-encoded as the plugin reads them, for a graph of ``side``-pixel tiles."""
    bands = len(card.bands)
    normalization = deepness_standardization(card)
    if fold:
        mean, std = [0.0] * bands, [1.0] * bands
    elif normalization is None:
        raise ConfigError("this model's input handling has to be folded into the graph; Deepness cannot apply it")
    else:
        mean = [m / keys.INPUT_DIVISOR for m in normalization.mean]
        std = [s / keys.INPUT_DIVISOR for s in normalization.std]
    values = {
        keys.MODEL_TYPE: keys.SEGMENTOR,
        keys.CLASS_NAMES: {str(i): name for i, name in enumerate(card.class_schema().names)},
        keys.TILES_SIZE: side,
        keys.TILE_SIZE_CODE: side,
        keys.TILES_OVERLAP: round(PredictOptions().overlap * 100),
        keys.MEAN: mean,
        keys.STD: std,
        # landseg's map is the most probable class everywhere: no threshold, no small-segment removal.
        keys.SEG_THRESH: 0.0,
        keys.SEG_SMALL_SEGMENT: 0,
    }
    resolution_m = (card.input_stats or {}).get("resolution_m")
    if resolution_m:
        values[keys.RESOLUTION] = round(float(resolution_m) * 100.0, 6)
    metadata = {key: json.dumps(value) for key, value in values.items()}
    metadata[keys.GRAPH_METADATA] = keys.DEEPNESS_GRAPH
    return metadata


def export_for_deepness(loaded: LoadedModel, destination: str | Path, tile: int | None = None) -> Path:
    """Write ``destination`` (.onnx): the Deepness graph of ``loaded`` with Deepness's and landseg's metadata."""
    onnx = require_package("onnx", "ONNX export")
    card = loaded.card
    fold = needs_folding(card)
    side = export_side(card, tile)
    network = loaded.network.float().eval().to("cpu")
    graph = DeepnessGraph(network, card, side, fold).eval()
    destination = Path(destination)
    with tempfile.TemporaryDirectory() as scratch:
        raw = export_onnx(LoadedModel(card, graph, loaded.path), Path(scratch) / "model.onnx", side)
        model = onnx.load(raw)
    _rename_output(model, OUTPUT_NAME)
    props = {p.key: p.value for p in model.metadata_props}
    props.update(deepness_metadata(card, side, fold))
    onnx.helper.set_model_props(model, props)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(destination) as temporary:
        onnx.save(model, temporary)
    return destination


def _rename_output(model, name: str) -> None:
    """Call the graph's one output ``name`` (the exporter calls it logits; here it is probabilities)."""
    if len(model.graph.output) != 1:
        raise CheckpointError(f"exported graph has {len(model.graph.output)} outputs; Deepness takes one")
    old = model.graph.output[0].name
    for node in model.graph.node:
        for index, output in enumerate(node.output):
            if output == old:
                node.output[index] = name
    for info in model.graph.value_info:
        if info.name == old:
            info.name = name
    model.graph.output[0].name = name
