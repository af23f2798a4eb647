"""Export a checkpoint to ONNX and run it with ONNX Runtime as an ensemble member.

The exported graph takes ``(batch, bands, tile, tile)`` float32 normalized tiles (any batch, one tile
size: the streaming engine only cuts tiles of one size) and returns logits. The model card travels in
the ONNX file's metadata, so an ``.onnx`` file predicts on its own, exactly like its checkpoint.
Checkpoints that ``landseg predict`` runs with ONNX Runtime are exported once per checkpoint content
and tile size into a cache folder (``$LANDSEG_CACHE``, else ``$XDG_CACHE_HOME/landseg``, else
``~/.cache/landseg``). Needs ``onnx`` and ``onnxscript`` to export and ``onnxruntime`` to run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from landseg.checkpoint import LoadedModel, ModelCard, load_checkpoint
from landseg.errors import CheckpointError, ConfigError
from landseg.io.write import atomic_output
from landseg.predict.networks import Member, OnnxNetwork, require_package

CARD_METADATA = "landseg_card"
TILE_METADATA = "landseg_tile"
OPSET = 18


def export_onnx(checkpoint: str | Path | LoadedModel, destination: str | Path, tile: int | None = None) -> Path:
    """Write ``destination`` (.onnx) for ``tile``-pixel network tiles (default: the card's tile size)."""
    onnx = require_package("onnx", "ONNX export")
    require_package("onnxscript", "ONNX export")
    loaded = checkpoint if isinstance(checkpoint, LoadedModel) else load_checkpoint(checkpoint)
    checkpoint = loaded.path
    side = tile or loaded.card.tile_size
    if side < 1:
        raise ConfigError(f"tile size must be positive, got {side}")
    network = copy.deepcopy(loaded.network).float().eval().to("cpu", memory_format=torch.contiguous_format)
    example = torch.zeros(2, len(loaded.card.bands), side, side)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = Path(scratch) / "model.onnx"
        try:
            torch.onnx.export(
                network, (example,), raw, dynamo=True, verbose=False, input_names=["image"], output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), opset_version=OPSET,
            )
        except Exception as exc:  # noqa: BLE001 - exporter failures come in many types; all mean the same
            problem = f"cannot export to ONNX ({type(exc).__name__}: {str(exc)[:200]})"
            raise CheckpointError(problem, checkpoint) from None
        model = onnx.load(raw)
        onnx.helper.set_model_props(model, {CARD_METADATA: json.dumps(loaded.card.to_dict()), TILE_METADATA: str(side)})
        with atomic_output(destination) as temporary:
            onnx.save(model, temporary)
    return destination


def cache_folder() -> Path:
    if os.environ.get("LANDSEG_CACHE"):
        return Path(os.environ["LANDSEG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "landseg"


def _content_key(path: Path, side: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(f"{side}|{OPSET}|{torch.__version__}".encode())
    return digest.hexdigest()[:20]


def cached_export(checkpoint: str | Path, side: int) -> Path:
    """The ONNX export of ``checkpoint`` for ``side``-pixel tiles, from the cache or made now."""
    checkpoint = Path(checkpoint)
    target = cache_folder() / "onnx" / f"{checkpoint.stem}-{_content_key(checkpoint, side)}.onnx"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(checkpoint, target, side)
    return target


def onnx_member_from_checkpoint(
    checkpoint: str | Path, card: ModelCard, side: int, threads: int | None = None, fall_back: bool = False
) -> Member | None:
    """A checkpoint run by ONNX Runtime; with ``fall_back``, None where it cannot be exported."""
    checkpoint = Path(checkpoint)
    try:
        try:
            network = OnnxNetwork(cached_export(checkpoint, side), threads)
        except OSError:  # no writable cache: export for this run only
            with tempfile.TemporaryDirectory() as scratch:
                exported = export_onnx(checkpoint, Path(scratch) / "model.onnx", side)
                network = OnnxNetwork(exported.read_bytes(), threads)
    except CheckpointError:
        if fall_back:
            return None
        raise
    return Member(card, network, checkpoint, engine="onnxruntime")


def load_onnx_member(path: str | Path, threads: int | None = None) -> Member:
    """An ensemble member run by ONNX Runtime from a ``.onnx`` file written by ``export_onnx``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError("model file does not exist", path)
    try:
        network = OnnxNetwork(path, threads)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise CheckpointError(f"not a readable ONNX model ({str(exc).splitlines()[0][:160]})", path) from None
    card_json = network.metadata.get(CARD_METADATA)
    if card_json is None:
        raise CheckpointError("ONNX model carries no landseg model card; export it with `landseg export`", path)
    return Member(ModelCard.from_dict(json.loads(card_json)), network, path, engine="onnxruntime")
