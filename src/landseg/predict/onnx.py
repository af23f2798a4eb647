"""Export a checkpoint to ONNX and run it with ONNX Runtime as an ensemble member.

The exported graph takes ``(batch, bands, tile, tile)`` float32 normalized tiles (any batch, one tile
size: the streaming engine only cuts tiles of one size) and returns logits. The model card travels in
the ONNX file's metadata, so an ``.onnx`` file predicts on its own, exactly like its checkpoint.
Checkpoints that ``landseg predict`` runs with ONNX Runtime are exported once per checkpoint content
and tile size, beside the checkpoint (``best.ckpt`` -> ``best.<key>.t512.onnx``; ``landseg train`` writes
them for its best and last checkpoints), or where that folder is not writable into a cache folder
(``$LANDSEG_CACHE``, else ``$XDG_CACHE_HOME/landseg``, else ``~/.cache/landseg``). Needs ``onnx`` and
``onnxscript`` to export and ``onnxruntime`` to run.
"""

from __future__ import annotations

import copy
import functools
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from landseg.checkpoint import LoadedModel, ModelCard, load_checkpoint
from landseg.errors import CheckpointError, ConfigError, DataError
from landseg.io.safety import JSON_SIDECAR_LIMIT, inside_folder, parse_json_limited
from landseg.io.write import atomic_output
from landseg.predict.deepness import deepness_member, is_deepness_graph
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
    network = copy.deepcopy(loaded.network).float().eval().to("cpu").to(memory_format=torch.contiguous_format)
    example = torch.zeros(2, len(loaded.card.bands), side, side)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = Path(scratch) / "model.onnx"
        try:
            torch.onnx.export(
                network,
                (example,),
                raw,
                dynamo=True,
                verbose=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                opset_version=OPSET,
            )
        except Exception as exc:
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


def content_key(path: Path) -> str:
    """12 hex digits of the file's content, the opset and torch's version: what an export depends on.
    Remembered per path, size and modification time: loading a model asks for its fp32 and int8 exports."""
    status = Path(path).stat()
    return _hashed_key(str(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _hashed_key(path: str, size: int, modified_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(f"{OPSET}|{torch.__version__}".encode())
    return digest.hexdigest()[:12]


EXPORT_SUFFIX = re.compile(r"\.(?P<key>[0-9a-f]{12})\.t(?P<side>[0-9]+)(\.int8)?\.onnx")


def export_beside(checkpoint: Path, key: str, side: int) -> Path:
    """Where the export of ``checkpoint`` lives beside it: ``best.ckpt`` -> ``best.<key>.t<side>.onnx``."""
    return checkpoint.with_name(f"{checkpoint.stem}.{key}.t{side}.onnx")


def cached_export(
    checkpoint: str | Path, side: int, load: Callable[[], LoadedModel] | None = None, isolate: bool | None = None
) -> Path:
    """The ONNX export of ``checkpoint`` for ``side``-pixel tiles, made once per checkpoint content.

    It lives beside the checkpoint (``export_beside``), so the next run with it starts at once; where that
    folder is not writable, and for weights that are no landseg checkpoint (a zoo model's ``.safetensors``
    inside the installed package, built by ``load``), it goes to the user cache (``cache_folder()/onnx``);
    weights shipped as an ONNX network are returned as they are.
    With ``isolate``, a checkpoint is exported in a child process, so the exporter's memory is returned
    before prediction starts (default: isolated unless ``$LANDSEG_EXPORT_IN_PROCESS`` is set). Exports of
    older contents of the checkpoint beside it are removed.
    """
    checkpoint = Path(checkpoint)
    if checkpoint.suffix == ".onnx":  # a zoo model shipped as an ONNX network is its own export
        return checkpoint
    key = content_key(checkpoint)
    beside = export_beside(checkpoint, key, side)
    in_cache = cache_folder() / "onnx" / beside.name
    build_zoo_model = load if checkpoint.suffix == ".safetensors" else None
    for found in (in_cache,) if build_zoo_model is not None else (beside, in_cache):
        if found.is_file():
            return found
    if build_zoo_model is None and os.access(checkpoint.parent, os.W_OK):
        try:
            _export(checkpoint, beside, side, isolate)
        except OSError:  # a full disk, or permissions os.access misjudged (root on a read-only mount)
            pass
        else:
            remove_stale_exports(checkpoint, key)
            return beside
    in_cache.parent.mkdir(parents=True, exist_ok=True)
    if build_zoo_model is not None:
        export_onnx(build_zoo_model(), in_cache, side)
    else:
        _export(checkpoint, in_cache, side, isolate)
    return in_cache


def _export(checkpoint: Path, destination: Path, side: int, isolate: bool | None) -> Path:
    """``export_onnx``, with ``isolate`` in a child Python process: a fresh interpreter (``-c``, not
    multiprocessing's spawn, which would rerun the caller's own script), whose memory goes back to the
    system when it ends. Its errors come back as the same one-line errors."""
    if isolate is None:
        isolate = not os.environ.get("LANDSEG_EXPORT_IN_PROCESS")
    if not isolate:
        return export_onnx(checkpoint, destination, side)
    command = [sys.executable, "-c", CHILD_EXPORT, str(checkpoint), str(destination), str(side)]
    source = str(Path(__file__).resolve().parents[2])  # the folder holding this landseg, installed or not
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": path})
    if done.returncode == 0:
        return destination
    try:
        reported = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
        raise CheckpointError(
            f"the ONNX export process failed (exit code {done.returncode}) {tail}".strip(), checkpoint
        ) from None
    if reported["kind"] == "OSError":
        raise OSError(reported["errno"], reported["problem"])
    error = ConfigError if reported["kind"] == "ConfigError" else CheckpointError
    raise error(reported["problem"], reported["path"])


CHILD_EXPORT = "import sys; from landseg.predict.onnx import export_in_child; sys.exit(export_in_child(*sys.argv[1:]))"


def export_in_child(checkpoint: str, destination: str, side: str) -> int:
    """The child of ``_export``: exports, and reports an error as one JSON line on stdout."""
    try:
        export_onnx(Path(checkpoint), Path(destination), int(side))
    except (CheckpointError, ConfigError) as exc:
        print(json.dumps({"kind": type(exc).__name__, "problem": exc.problem, "path": exc.path}))
        return 1
    except OSError as exc:
        print(json.dumps({"kind": "OSError", "errno": exc.errno, "problem": str(exc)}))
        return 2
    return 0


def remove_stale_exports(checkpoint: Path, key: str) -> None:
    """Delete the exports beside ``checkpoint`` made from its earlier contents (a ``best.ckpt`` overwritten
    by training); those of its present content, at any tile size, stay."""
    for sibling in checkpoint.parent.glob(f"{glob.escape(checkpoint.stem)}.*.t*.onnx"):
        match = EXPORT_SUFFIX.fullmatch(sibling.name[len(checkpoint.stem) :])
        if match and match["key"] != key:
            sibling.unlink(missing_ok=True)


def onnx_member_from_checkpoint(
    checkpoint: str | Path,
    card: ModelCard,
    side: int,
    threads: int | None = None,
    fall_back: bool = False,
    load: Callable[[], LoadedModel] | None = None,
) -> Member | None:
    """A checkpoint run by ONNX Runtime; with ``fall_back``, None where it cannot be exported."""
    checkpoint = Path(checkpoint)
    try:
        try:
            network = OnnxNetwork(cached_export(checkpoint, side, load), threads)
        except OSError:  # no writable cache: export for this run only
            with tempfile.TemporaryDirectory() as scratch:
                exported = export_onnx(load() if load else checkpoint, Path(scratch) / "model.onnx", side)
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
    except Exception as exc:
        raise CheckpointError(f"not a readable ONNX model ({str(exc).splitlines()[0][:160]})", path) from None
    card_json = network.metadata.get(CARD_METADATA)
    if is_deepness_graph(network.metadata):  # landseg's export for QGIS, or another tool's Deepness model
        return deepness_member(network, path, card_json)
    if card_json is None:
        raise CheckpointError("ONNX model carries no landseg model card; export it with `landseg export`", path)
    card = parse_json_limited(card_json, JSON_SIDECAR_LIMIT, path, error=CheckpointError)
    if not isinstance(card, dict):
        raise CheckpointError("ONNX model's landseg card is not a JSON object", path)
    model_card = ModelCard.from_dict(card)
    return Member(model_card, network, path, engine="onnxruntime", precision="int8" if model_card.int8 else "fp32")


def load_zoo_onnx_member(reference: str, engine: str, threads: int | None = None) -> Member:
    """A zoo model shipped as an ONNX graph (``zoo:cloud-shadow``), run by ONNX Runtime with its zoo card."""
    from landseg.predict.models import zoo_name
    from landseg.zoo import get_zoo_model

    entry = get_zoo_model(str(zoo_name(reference)))
    if engine != "onnxruntime":
        raise ConfigError(
            f"zoo model {entry.name} is an ONNX network and runs with ONNX Runtime only: use --engine auto"
        )
    path = entry.weights_path
    try:
        network = OnnxNetwork(path, threads)
    except Exception as exc:
        raise CheckpointError(f"not a readable ONNX model ({str(exc).splitlines()[0][:160]})", path) from None
    return Member(entry.card(), network, path, engine="onnxruntime")


def check_external_data(path: Path) -> None:
    """Refuse an ONNX model whose tensors read external data from outside its own folder.

    ONNX stores large tensors in side files named by relative path, and a crafted model can name
    ``../../home/you/.ssh/id_rsa`` or a link to it; recent ONNX Runtime refuses such paths, older ones
    read them. The graph is parsed without its external data, so nothing is read before the check.
    """
    onnx = require_package("onnx", "checking an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise CheckpointError(f"not a readable ONNX model ({str(exc).splitlines()[0][:160]})", path) from None
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        try:
            inside_folder(path.parent, location, path)
        except DataError as exc:
            raise CheckpointError(
                f"tensor {tensor.name!r} keeps its data outside the model's folder: {exc.problem}; "
                "landseg reads external data only from files in that folder",
                path,
            ) from None


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
