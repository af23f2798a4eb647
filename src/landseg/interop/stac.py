"""STAC Items with the Machine Learning Model (MLM) extension: written by ``landseg export --stac``, read by
``landseg predict --stac``.

The item describes the exported ONNX graph (``interop/deepness.py``): its input (bands, shape, value
scaling), its per-class probabilities with the classes and their colours (classification extension),
and two ``mlm:model`` assets told apart by ``mlm:artifact_type``: the ONNX file (``onnx``) and, where
the model came from one, the landseg checkpoint (``torch.save``). Hrefs are relative to the item. The
item is plain JSON: writing it needs neither pystac nor stac-model.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import torch

from landseg.checkpoint import LoadedModel, ModelCard
from landseg.errors import ConfigError
from landseg.interop.deepness import deepness_standardization, export_side
from landseg.io.safety import JSON_SIDECAR_LIMIT, inside_folder, read_json_limited
from landseg.io.write import atomic_output
from landseg.predict import deepness as keys

STAC_VERSION = "1.1.0"
MLM_EXTENSION = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
CLASSIFICATION_EXTENSION = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
MODEL_ROLE = "mlm:model"
ONNX_ARTIFACT = "onnx"
CHECKPOINT_ARTIFACT = "torch.save"
ONNX_MEDIA_TYPE = "application/octet-stream; framework=onnx; profile=onnx"
CHECKPOINT_MEDIA_TYPE = "application/octet-stream; framework=pytorch; application=pytorch"
TASK = "semantic-segmentation"


def mlm_item(
    card: ModelCard,
    model: Path,
    item_path: Path,
    side: int,
    *,
    checkpoint: Path | None = None,
    total_parameters: int | None = None,
    item_id: str | None = None,
) -> dict:
    """The STAC Item (a dict) describing the exported graph ``model`` of ``side`` px tiles, saved at ``item_path``."""
    folder = item_path.parent
    schema = card.class_schema()
    bands = card.band_names or [f"band_{b}" for b in card.bands]
    pretrained_source = card.model.get("encoder_weights") or card.training.get("source") or None
    properties = {
        "datetime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "description": f"landseg {card.model.get('arch', 'model')} land-cover segmentation ({schema.name} classes)",
        "mlm:name": item_id or model.stem,
        "mlm:architecture": str(card.model.get("zoo") or card.model.get("arch") or "unknown"),
        "mlm:tasks": [TASK],
        "mlm:framework": "PyTorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:pretrained": pretrained_source is not None,
        "mlm:pretrained_source": None if pretrained_source is None else str(pretrained_source),
        "mlm:batch_size_suggestion": 1,
        "mlm:input": [
            {
                "name": "image",
                "bands": list(bands),
                "input": {
                    "shape": [-1, len(card.bands), side, side],
                    "dim_order": ["batch", "bands", "height", "width"],
                    "data_type": "float32",
                },
                "value_scaling": _value_scaling(card),
                "resize_type": None,
                "description": "raw raster values of the bands in this order, as float32; the graph resizes by the "
                f"model's input scale ({card.input_scale:g}) itself",
            }
        ],
        "mlm:output": [
            {
                "name": "probabilities",
                "tasks": [TASK],
                "result": {
                    "shape": [-1, schema.num_classes, side, side],
                    "dim_order": ["batch", "channel", "height", "width"],
                    "data_type": "float32",
                },
                "classification:classes": [
                    {
                        "value": index,
                        "name": c.name,
                        "description": c.name,
                        "color_hint": "{:02X}{:02X}{:02X}".format(*c.color),
                    }
                    for index, c in enumerate(schema.classes)
                ],
                "description": "softmax probability per class; the class map is their argmax over 'channel'",
            }
        ],
    }
    if total_parameters is not None:
        properties["mlm:total_parameters"] = int(total_parameters)
    assets = {
        "model": {
            "href": _relative_href(model, folder, inside=True),
            "type": ONNX_MEDIA_TYPE,
            "title": "ONNX graph: raw values / 255 in, class probabilities out (Deepness metadata included)",
            "roles": [MODEL_ROLE],
            "mlm:artifact_type": ONNX_ARTIFACT,
        }
    }
    if checkpoint is not None and checkpoint.is_file():
        assets["checkpoint"] = {
            "href": _relative_href(checkpoint, folder, inside=False),
            "type": CHECKPOINT_MEDIA_TYPE,
            "title": "landseg checkpoint (weights and model card)",
            "roles": [MODEL_ROLE, "mlm:weights", "mlm:checkpoint"],
            "mlm:artifact_type": CHECKPOINT_ARTIFACT,
        }
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [MLM_EXTENSION, CLASSIFICATION_EXTENSION],
        "id": item_id or model.stem,
        "geometry": None,
        "properties": properties,
        "links": [],
        "assets": assets,
    }


def write_mlm_item(loaded: LoadedModel, model: str | Path, destination: str | Path, tile: int | None = None) -> Path:
    """Write ``destination``: the MLM item of ``loaded`` as ``export_for_deepness`` wrote it to ``model``
    (with the same ``tile``)."""
    import json

    destination, model = Path(destination), Path(model)
    parameters = sum(p.numel() for p in loaded.network.parameters())
    checkpoint = Path(loaded.path) if loaded.path is not None and Path(loaded.path).suffix.lower() == ".ckpt" else None
    side = export_side(loaded.card, tile)
    item = mlm_item(loaded.card, model, destination, side, checkpoint=checkpoint, total_parameters=parameters)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(destination) as temporary:
        temporary.write_text(json.dumps(item, indent=2) + "\n")
    return destination


def check_item_folder(item_path: str | Path, model: str | Path) -> None:
    """Refuse, before any export, an item that could not name ``model`` by a relative href inside its folder."""
    _relative_href(Path(model), Path(item_path).parent, inside=True)


def model_from_item(item_path: str | Path) -> Path:
    """The model file an MLM item describes: its ``mlm:model`` asset (ONNX first, else a checkpoint), which
    must lie in the item's folder or below it."""
    item_path = Path(item_path)
    item = read_json_limited(item_path, JSON_SIDECAR_LIMIT, error=ConfigError)
    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise ConfigError('not a STAC Item (a JSON object with "type": "Feature")', item_path)
    tasks = item.get("properties", {}).get("mlm:tasks") if isinstance(item.get("properties"), dict) else None
    if isinstance(tasks, list) and not {"semantic-segmentation", "segmentation"} & set(map(str, tasks)):
        raise ConfigError(f"MLM item's mlm:tasks are {tasks}; landseg runs semantic-segmentation models", item_path)
    assets = item.get("assets")
    if not isinstance(assets, dict):
        raise ConfigError("STAC Item has no assets object", item_path)
    models = [a for a in assets.values() if isinstance(a, dict) and MODEL_ROLE in (a.get("roles") or [])]
    if not models:
        raise ConfigError(f"STAC Item has no asset with role {MODEL_ROLE!r}", item_path)
    for wanted in (".onnx", ".ckpt"):
        for asset in models:
            href = asset.get("href")
            if not isinstance(href, str) or not href:
                raise ConfigError(f"an {MODEL_ROLE!r} asset has no href", item_path)
            if Path(href.split("?")[0]).suffix.lower() == wanted or asset.get("mlm:artifact_type") == (
                ONNX_ARTIFACT if wanted == ".onnx" else CHECKPOINT_ARTIFACT
            ):
                return _asset_path(href, item_path)
    found = [a.get("mlm:artifact_type") or a.get("href") for a in models]
    raise ConfigError(f"no {MODEL_ROLE!r} asset is an ONNX file or a landseg checkpoint (found {found})", item_path)


def _asset_path(href: str, item_path: Path) -> Path:
    if "://" in href:
        raise ConfigError(
            f"model asset href {href!r} is a URL; landseg reads model files beside the item only "
            "(download it next to the item and give a relative href)",
            item_path,
        )
    return inside_folder(item_path.parent, href.removeprefix("./"), item_path)


def _value_scaling(card: ModelCard) -> list[dict]:
    """What the graph expects of raw values: Deepness's ``x / 255`` then its standardization, in raw units."""
    normalization = deepness_standardization(card)
    if normalization is None:  # the graph normalizes and resizes inside; it takes raw values / 255
        return [{"type": "scale", "value": keys.INPUT_DIVISOR}]
    return [
        {"type": "z-score", "mean": float(m), "stddev": float(s)}
        for m, s in zip(normalization.mean, normalization.std, strict=False)
    ]


def _relative_href(path: Path, folder: Path, inside: bool) -> str:
    relative = Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve()))
    if inside and ".." in relative.parts:
        raise ConfigError(
            f"the STAC item must be written in the folder of {Path(path).name} or a folder above it, "
            "so that its href stays relative and inside",
            folder,
        )
    return "./" + relative.as_posix() if not relative.parts or relative.parts[0] != ".." else relative.as_posix()
