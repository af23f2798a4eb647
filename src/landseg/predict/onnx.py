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
from landseg.errors import CheckpointError, ConfigError, DataError
from landseg.io.safety import JSON_SIDECAR_LIMIT, inside_folder, parse_json_limited
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
    check_external_data(path)
    try:
        network = OnnxNetwork(path, threads)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise CheckpointError(f"not a readable ONNX model ({str(exc).splitlines()[0][:160]})", path) from None
    card_json = network.metadata.get(CARD_METADATA)
    if card_json is None:
        raise CheckpointError("ONNX model carries no landseg model card; export it with `landseg export`", path)
    card = parse_json_limited(card_json, JSON_SIDECAR_LIMIT, path, error=CheckpointError)
    if not isinstance(card, dict):
        raise CheckpointError("ONNX model's landseg card is not a JSON object", path)
    return Member(ModelCard.from_dict(card), network, path, engine="onnxruntime")


def check_external_data(path: Path) -> None:
    """Refuse an ONNX model whose tensors read external data from outside its own folder.

    ONNX stores large tensors in side files named by relative path, and a crafted model can name
    ``../../home/you/.ssh/id_rsa`` or a link to it; recent ONNX Runtime refuses such paths, older ones
    read them. The graph is parsed without its external data, so nothing is read before the check.
    """
    onnx = require_package("onnx", "checking an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors have no common type
        raise CheckpointError(f"not a readable ONNX model ({str(exc).splitlines()[0][:160]})", path) from None
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        try:
            inside_folder(path.parent, location, path)
        except DataError as exc:
            raise CheckpointError(f"tensor {tensor.name!r} keeps its data outside the model's folder: {exc.problem}; "
                                  "landseg reads external data only from files in that folder", path) from None


def _all_tensors(model):
    """Every tensor of the model: initializers, constants, and those of subgraphs and functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _graph_tensors(graph):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node):
    # protobuf caps message nesting (100 levels), so this recursion is bounded by the parser.
    for attribute in node.attribute:
        yield from [attribute.t] if attribute.HasField("t") else []
        yield from attribute.tensors
        sparse = [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []
        for tensor in [*sparse, *attribute.sparse_tensors]:
            yield from (tensor.values, tensor.indices)
        for graph in [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]:
            yield from _graph_tensors(graph)
