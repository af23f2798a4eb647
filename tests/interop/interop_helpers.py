"""Tiny checkpoints, scenes and hand-built Deepness models for the interop tests."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
import torch
import typer
from affine import Affine
from onnx import TensorProto, helper

from landseg.checkpoint import CARD_KEY, STATE_PREFIX, ModelCard
from landseg.classes import get_schema
from landseg.models import ModelSpec, build_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SCHEMA = get_schema("synthetic")


def write_checkpoint(
    path: Path,
    normalization: dict,
    input_scale: float = 1.0,
    input_stats: dict | None = None,
    tile: int = 32,
    seed: int = 0,
) -> Path:
    torch.manual_seed(seed)
    spec = ModelSpec(arch="classic_unet", num_classes=SCHEMA.num_classes, encoder=None, widths=[4, 8])
    network = build_model(spec)
    card = ModelCard(
        model=spec.to_dict(),
        schema=SCHEMA.to_dict(),
        normalization=normalization,
        bands=[1, 2, 3],
        band_names=["red", "green", "blue"],
        tile_size=tile,
        input_scale=input_scale,
        input_stats=input_stats,
    )
    state = {STATE_PREFIX + k: v for k, v in network.state_dict().items()}
    torch.save({"hyper_parameters": {CARD_KEY: card.to_dict()}, "state_dict": state}, path)
    return path


def write_scene(path: Path, data: np.ndarray) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs="EPSG:32631",
        transform=Affine(0.5, 0, 400_000.0, 0, -0.5, 4_000_000.0),
    ) as dst:
        dst.write(data)
    return path


class Raw(str):
    """Metadata text written as it is, not JSON-encoded."""


def deepness_model(path: Path, metadata: dict, side: int = 16, classes: int = 4, seed: int = 0) -> Path:
    """A Deepness-style segmentor built by hand: a 1x1 convolution and a softmax, ``(N, 3, side, side)`` in,
    ``(N, classes, side, side)`` probabilities out; ``metadata`` values are JSON-encoded, except ``Raw`` text."""
    weights = np.random.default_rng(seed).normal(0, 2, size=(classes, 3, 1, 1)).astype(np.float32)
    bias = np.random.default_rng(seed + 1).normal(0, 1, size=classes).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
        ],
        "deepness_segmentor",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, side, side])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes, side, side])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel()),
            helper.make_tensor("b", TensorProto.FLOAT, bias.shape, bias),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {k: v if isinstance(v, Raw) else json.dumps(v) for k, v in metadata.items()})
    onnx.save(model, path)
    return path


DEEPNESS_KEYS = {
    "model_type": "Segmentor",
    "class_names": {"0": "background", "1": "field", "2": "forest", "3": "water"},
    "resolution": 50,
    "tiles_size": 16,
    "tiles_overlap": 25,
    "standardization_mean": [0.4, 0.45, 0.5],
    "standardization_std": [0.2, 0.25, 0.3],
    "seg_thresh": 0.5,
    "seg_small_segment": 3,
}


def cli_app() -> typer.Typer:
    from landseg.cli.export import export_command
    from landseg.cli.predict import predict_command

    app = typer.Typer()
    app.command("predict")(predict_command)
    app.command("export")(export_command)
    return app
