"""int8 models: ONNX Runtime static quantization of a checkpoint's ONNX export, with a measured guard.

The fp32 export (``onnx.cached_export``) is quantized by ONNX Runtime (QDQ format, per-channel int8
weights reduced to 7 bits, uint8 activations: its guide's advice for x86 CPUs where U8S8 saturates). Activation ranges are calibrated
on tiles of the run's own training images exactly as prediction feeds them to the network: the inference
core cuts, resamples and normalizes them while a recording network stands in for the model.

The guard is the int8 model measured against the fp32 one on held-out labelled images, both through the
inference core: the share of pixels whose class is the same (argmax agreement) and the mIoU of each. It
goes on the int8 model's card (``ModelCard.int8``), inside the int8 file, which is cached beside the
checkpoint like the fp32 export (``best.<key>.t512.int8.onnx``). ``--precision int8`` runs it on request;
``--precision auto`` (the default) only where the guard passes (``int8.guard_passes``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from landseg.checkpoint import ModelCard
from landseg.classes import IGNORE_INDEX
from landseg.data.dataset import LabelledImage
from landseg.errors import ConfigError
from landseg.io.write import atomic_output
from landseg.metrics import ConfusionMatrix
from landseg.predict.core import predict_array
from landseg.predict.ensemble import Ensemble
from landseg.predict.int8 import int8_beside
from landseg.predict.models import load_model, model_file, read_card, zoo_name
from landseg.predict.networks import Member, OnnxNetwork, require_package
from landseg.predict.onnx import CARD_METADATA, TILE_METADATA, cache_folder, cached_export, content_key
from landseg.predict.options import PredictOptions
from landseg.predict.streaming import most_likely_class

CALIBRATION_TILES = 64
"""Network tiles the activation ranges are calibrated on, at most (drawn at random from all tiles)."""
CALIBRATION_STRIDE = 4
"""Tiles whose activations are held at once while calibrating, at most."""
KEEP_FP32 = ("none", "first-last")
"""Which convolutions stay in fp32: none, or the first (raw bands in) and the last (class logits out)."""
CONFIDENT_MARGIN = 0.2
"""The guard also reports agreement where fp32's top class leads its second by this much: on the Dubai
models 84-92 % of the pixels int8 changed were near-ties (lead < 0.1), and where fp32 led by 0.2 int8 kept
99.8-99.9 % (BENCHMARKS.md §3). Reported, not a bar: ``int8.guard_passes`` does not read it."""


class RecordingNetwork:
    """Stands in for a model while the inference core runs: keeps a uniform random sample (reservoir) of
    the normalized tiles it is given, at most ``limit``, and answers with zero logits."""

    def __init__(self, side: int, num_classes: int, limit: int, seed: int = 0):
        self.fixed_side: int | None = side
        self.num_classes = num_classes
        self.limit = limit
        self.tiles: list[np.ndarray] = []
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        for tile in batch.detach().cpu().numpy():
            self.seen += 1
            if len(self.tiles) < self.limit:
                self.tiles.append(tile.copy())
            elif (slot := int(self.rng.integers(self.seen))) < self.limit:
                self.tiles[slot] = tile.copy()
        return torch.zeros((batch.shape[0], self.num_classes, *batch.shape[-2:]))


def calibration_tiles(card: ModelCard, images: Sequence[np.ndarray], side: int, limit: int = CALIBRATION_TILES) -> list:
    """Up to ``limit`` normalized ``(C, side, side)`` network tiles of ``images`` (raw units, the card's
    bands in order), as the inference core cuts them for prediction."""
    recorder = RecordingNetwork(side, card.class_schema().num_classes, limit)
    ensemble = Ensemble([Member(card, recorder, Path("<calibration>"))])
    for image in images:
        predict_array(image, ensemble, guard_options(image))
    if not recorder.tiles:
        raise ConfigError("no training image gave a tile to calibrate int8 activations on")
    return recorder.tiles


def guard_options(image: np.ndarray) -> PredictOptions:
    """How calibration and the guard predict an in-memory image: every band in order, any value range."""
    return PredictOptions(bands=tuple(range(1, len(image) + 1)), allow_input_mismatch=True)


def quantize_graph(
    fp32: Path,
    destination: Path,
    tiles: Sequence[np.ndarray],
    keep_fp32: str = "first-last",
    exclude: Sequence[str] = (),
) -> Path:
    """Write the static int8 quantization of the ONNX model ``fp32`` to ``destination`` (a scratch file:
    ``stamp_card`` writes the finished model atomically); the nodes named in ``exclude`` also stay fp32."""
    onnx = require_package("onnx", "int8 quantization")
    quantization = require_package("onnxruntime.quantization", "int8 quantization").quantization
    if keep_fp32 not in KEEP_FP32:
        raise ConfigError(f"unknown keep_fp32 {keep_fp32!r}; choose one of {', '.join(KEEP_FP32)}")
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quantization.shape_inference.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        refuse_float16(model, fp32)
        input_name = model.graph.input[0].name
        reader = tile_reader(input_name, tiles, quantization.CalibrationDataReader)
        quantization.quantize_static(
            str(prepared),
            str(destination),
            reader,
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: with full 8-bit ones the Dubai default model kept 81.2 % of its classes on three
            # tile-4 images, with reduce_range 96.6 % (BENCHMARKS.md §3): the U8S8 saturation ONNX Runtime
            # warns of on x86 CPUs whose kernels it does not run on VNNI.
            reduce_range=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=[*(first_and_last_convolutions(model) if keep_fp32 == "first-last" else []), *exclude],
            # Ranges are reduced every few tiles: otherwise every activation of every tile is held in memory
            # (hundreds of MB per 512 px tile). CalibMaxIntermediateOutputs, meant for this, drops the data
            # instead in ONNX Runtime up to at least 1.32 (microsoft/onnxruntime#18893).
            extra_options={"CalibStridedMinMax": _stride(len(tiles))},
        )
    return destination


def refuse_float16(model, path: Path) -> None:
    """A ``ConfigError`` naming ``path`` where the ONNX ``model`` holds float16 weights (ukis-csmask's cloud
    models): ONNX Runtime's static quantization takes float32 networks only."""
    onnx = require_package("onnx", "int8 quantization")
    if any(weight.data_type == onnx.TensorProto.FLOAT16 for weight in model.graph.initializer):
        raise ConfigError(
            "is a float16 network: ONNX Runtime's static int8 quantization takes float32 networks only", path
        )


def _stride(count: int, most: int = CALIBRATION_STRIDE) -> int:
    """The largest divisor of ``count`` up to ``most``: ONNX Runtime's strided calibration wants one."""
    return max(d for d in range(1, min(count, most) + 1) if count % d == 0)


def tile_reader(input_name: str, tiles: Sequence[np.ndarray], base: type):
    """A ``CalibrationDataReader`` (ONNX Runtime's interface, imported lazily) over ``tiles``, one at a
    time, with the ``len`` and ``set_range`` its strided calibration calls."""

    class TileReader(base):
        def __init__(self):
            self.set_range(0, len(tiles))

        def __len__(self) -> int:
            return len(tiles)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.remaining = iter(tiles[start_index:end_index])

        def get_next(self):
            tile = next(self.remaining, None)
            return None if tile is None else {input_name: tile[None].astype(np.float32)}

    return TileReader()


def first_and_last_convolutions(model) -> list[str]:
    convolutions = [node.name for node in model.graph.node if node.op_type == "Conv"]
    return [convolutions[0], convolutions[-1]] if convolutions else []


def measure_guard(fp32: Member, int8: Member, items: Sequence[LabelledImage]) -> dict:
    """Agreement of int8 with fp32 classes on every valid pixel of ``items`` and on those fp32 is sure of
    (its top class ahead by ``CONFIDENT_MARGIN``), and the mIoU of each where labelled."""
    num_classes = fp32.card.class_schema().num_classes
    confusions = {name: ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX) for name in ("fp32", "int8")}
    same = total = same_sure = sure = 0
    for item in items:
        reference, quantized = (
            predict_array(item.image, Ensemble([member]), guard_options(item.image)) for member in (fp32, int8)
        )
        classes = {
            "fp32": most_likely_class(reference.probabilities),
            "int8": most_likely_class(quantized.probabilities),
        }
        margin = top_margin(reference.probabilities)
        valid = reference.valid if reference.valid is not None else np.ones(item.mask.shape, dtype=bool)
        for name, confusion in confusions.items():
            confusion.update(classes[name][valid], item.mask[valid])
        kept = (classes["fp32"] == classes["int8"])[valid]
        confident = margin[valid] >= CONFIDENT_MARGIN
        same, total = same + int(kept.sum()), total + kept.size
        same_sure, sure = same_sure + int(kept[confident].sum()), sure + int(confident.sum())
    if total == 0:
        raise ConfigError("the held-out images have no valid pixel to measure int8 against fp32 on")
    labelled = confusions["fp32"].total > 0
    miou = {name: confusion.miou if labelled else None for name, confusion in confusions.items()}
    return {
        "agreement": same / total,
        "agreement_where_confident": same_sure / sure if sure else None,
        "confident_share": sure / total,
        "confident_margin": CONFIDENT_MARGIN,
        "miou_fp32": miou["fp32"],
        "miou_int8": miou["int8"],
        "miou_change": miou["int8"] - miou["fp32"] if labelled else None,  # type: ignore[operator]
        "measured_on": {"images": len(items), "pixels": total, "labelled_pixels": confusions["fp32"].total},
    }


def top_margin(probabilities: np.ndarray) -> np.ndarray:
    """``(h, w)``: how far the most likely of the ``(K, h, w)`` probabilities leads the second."""
    top_two = np.partition(probabilities, probabilities.shape[0] - 2, axis=0)[-2:]
    return top_two[1] - top_two[0]


def quantize_checkpoint(
    reference: str | Path,
    calibration_images: Sequence[np.ndarray],
    held_out: Sequence[LabelledImage],
    side: int | None = None,
    keep_fp32: str = "first-last",
    tiles: int = CALIBRATION_TILES,
    splits: tuple[str, str] = ("train", "val"),
) -> tuple[Path, dict]:
    """Make, measure and cache the int8 model of a checkpoint or zoo model for ``side``-pixel tiles
    (default its card's): calibrated on ``calibration_images``, guarded on ``held_out`` (``splits``
    names both in the card). Returns the int8 file and its guard."""
    ort = require_package("onnxruntime", "int8 quantization")
    card = read_card(reference)
    side = side or card.tile_size
    fp32_path = cached_export(model_file(reference), side, load=partial(load_model, reference))
    weights = model_file(reference)
    destination = int8_beside(weights, content_key(weights), side)
    if zoo_name(reference) or fp32_path.parent != destination.parent:  # never into an installed package
        destination = cache_folder() / "onnx" / destination.name
    # Before calibrating: calibration runs the network over every image, only for quantize_graph to refuse it.
    refuse_float16(require_package("onnx", "int8 quantization").load(str(fp32_path)), fp32_path)
    recorded = calibration_tiles(card, calibration_images, side, tiles)
    with tempfile.TemporaryDirectory() as scratch:
        quantized = quantize_graph(fp32_path, Path(scratch) / "int8.onnx", recorded, keep_fp32)
        fp32 = Member(card, OnnxNetwork(fp32_path), Path(weights), engine="onnxruntime")
        int8 = Member(card, OnnxNetwork(quantized), Path(weights), engine="onnxruntime", precision="int8")
        guard = measure_guard(fp32, int8, held_out)
        guard["measured_on"]["split"] = splits[1]
        guard.update(
            calibrated_on={"split": splits[0], "tiles": len(recorded)},
            tile=side,
            keep_fp32=keep_fp32,
            format="QDQ, per-channel int8 weights in 7 bits (reduce_range), uint8 activations, MinMax ranges",
            onnxruntime=ort.__version__,
        )
        stamp_card(quantized, replace(card, int8=guard), side, destination)
    return destination, guard


def stamp_card(model_path: Path, card: ModelCard, side: int, destination: Path) -> Path:
    """Write ``model_path`` to ``destination`` (atomically) with ``card`` and the tile side in its metadata,
    so that the int8 file predicts on its own like any landseg ONNX model."""
    onnx = require_package("onnx", "int8 quantization")
    model = onnx.load(str(model_path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {CARD_METADATA: json.dumps(card.to_dict()), TILE_METADATA: str(side)})
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(destination) as temporary:
        onnx.save(model, temporary)
    return destination
