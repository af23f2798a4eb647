"""Benchmark 3: whole-scene prediction speed and memory (see ../shared/BENCHMARKS.md).

Synthetic, georeferenced 3-band uint8 GeoTIFFs of N x N pixels (tiled, deflate; landseg's synthetic
landscape mirrored out to the size) are generated once into a work folder, with a checkpoint of the
default recipe's architecture (U-Net, EfficientNet-Lite0 encoder, 5 classes). Each measurement runs in
a fresh process so its peak RSS (``VmHWM``) is its own:

- ``peak``: matrix-multiply peak of this machine (fp32 and bf16 ``torch.mm``), GFLOP/s;
- ``variants``: raw tiles/s of fp32, channels-last, bf16 autocast, ONNX Runtime (and ``--compile``);
- ``raw``: batched forward passes on in-memory tiles by the very network the engine runs (same
  engine, batch, precision and memory layout); tiles/s, and model FLOPs per tile from
  ``torch.utils.flop_counter``. Measured right before and right after each scene on ``--raw-tiles``
  tiles, so that drift in the machine's load hits both alike;
- ``predict``: ``landseg predict`` end to end (``landseg.predict.run.run_predict``: load the model,
  read, normalize, forward, blend, write the class COG, preview and areas);
- ``naive``: the whole image in memory, one fp32 tile at a time, no blending (later tiles overwrite),
  then one GeoTIFF; on the smallest scene (``--naive-tiles`` limits it and extrapolates);
- ``profile``: on the smallest scene, ``predict`` with the network answered from a lookup of one real
  forward pass per batch shape, so what is left is the pipeline's own work, and a cProfile of it (the
  main thread: reading, blending, writing, COG, preview, areas).

Efficiency = raw time for the scene's tile grid (tiles / raw tiles/s) over the end-to-end wall time;
raw tiles/s is measured just before and just after each scene (their spread says how steady the
machine was).

int8 (issue 35) runs beside fp32 in the same run (``--precisions fp32,int8``): the ``quantize`` stage makes
the benchmark model's int8 version as ``landseg export --precision int8`` does, calibrated on tiles of the
top half of the smallest scene and guarded (agreement only: no labels) on its bottom half, and every scene
is then timed at each precision. The headline figures are those of the default engine, the precision
``--precision auto`` picks for that model. The ``fidelity`` stage (``--int8-checkpoints``, trained Dubai
models) measures int8 against fp32 where it matters: Dubai tile 4 (labelled, mIoU change) for each
checkpoint, and Dynamic World and the L1C cloud and shadow model on the real Sentinel-2 samples (each
chip measured by an int8 model calibrated on the other chips; a model that cannot be quantized is
recorded as refused, with the reason).

With ``--agreement CKPT`` (a trained checkpoint) it also predicts real images (default: Dubai tile 4)
in fp32, bf16 and with ONNX Runtime and reports argmax agreement with fp32, and how often the streamed
fp32 map differs from one forward pass over the whole image near tile borders and away from them.

    python benchmarks/predict_speed.py --int8-checkpoints A.ckpt B.ckpt  # 4096, 8192, 16384 px, fp32 and int8
    python benchmarks/predict_speed.py --small --results /tmp/p.json  # smoke run, a minute
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import DATASETS, REPO, package_version, peak_rss_mb
from common import environment as common_environment

CLASSES = 5
SENTINEL2_SAMPLES = ("samples/sen12ms/*_s2_*.tif", "samples/sen1floods11/*_S2Hand.tif")
"""The real Sentinel-2 chips under ``../shared/datasets`` that the zoo models' int8 fidelity is measured on."""
ZOO_FIDELITY = {"dynamic_world": "dynamic-world", "cloud_shadow": "cloud-shadow"}
"""Zoo models whose int8 fidelity is measured on the Sentinel-2 chips: the JSON key and the zoo name."""
MODEL = {"arch": "unet", "num_classes": CLASSES, "encoder": "tu-tf_efficientnet_lite0", "encoder_weights": "offline"}


# -- inputs ----------------------------------------------------------------------------------------
def write_checkpoint(path: Path) -> Path:
    import torch

    from landseg.checkpoint import CARD_KEY, STATE_PREFIX, ModelCard
    from landseg.classes import get_schema
    from landseg.models import ModelSpec, build_model
    from landseg.normalization import IMAGENET_MEAN, IMAGENET_STD, Normalization

    if path.exists():
        return path
    torch.manual_seed(0)
    spec = ModelSpec.from_dict(MODEL)
    network = build_model(spec)
    card = ModelCard(
        model=spec.to_dict(),
        schema=get_schema("dubai").to_dict(),
        normalization=Normalization.from_unit_stats(IMAGENET_MEAN, IMAGENET_STD).to_dict(),
        bands=[1, 2, 3],
        band_names=["red", "green", "blue"],
        tile_size=512,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    torch.save(
        {
            "hyper_parameters": {CARD_KEY: card.to_dict()},
            "state_dict": {STATE_PREFIX + k: v for k, v in network.state_dict().items()},
        },
        temporary,
    )
    os.replace(temporary, path)
    return path


def write_scene(folder: Path, size: int, seed: int = 0) -> Path:
    """An N x N scene, written strip by strip from a 2048 px synthetic landscape mirrored outwards."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from landseg.data.synthetic import generate_scene
    from landseg.predict.blocks import reflect_indices

    path = folder / f"scene_{size}.tif"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    pattern = generate_scene(min(size, 2048), seed=seed).image  # (3, s, s) uint8
    side = pattern.shape[-1]
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32632",
        transform=from_origin(300_000.0, 5_200_000.0, 10.0, 10.0),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        predictor=2,
        interleave="pixel",
    )
    temporary = path.with_name(f".{path.stem}.partial.tif")
    columns = reflect_indices(np.arange(size), side)
    with rasterio.Env(GDAL_CACHEMAX=256), rasterio.open(temporary, "w", **profile) as dst:
        for top in range(0, size, 512):
            rows = reflect_indices(np.arange(top, min(top + 512, size)), side)
            dst.write(pattern[:, rows][:, :, columns], window=Window(0, top, size, len(rows)))
    os.replace(temporary, path)
    return path


# -- stages (each in its own process) ---------------------------------------------------------------
def run_stage(stage: str, settings: dict) -> dict:
    command = [sys.executable, __file__, "--stage", stage, "--settings", json.dumps(settings)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def stage_peak(settings: dict) -> dict:
    import torch

    n, result = settings["matmul_size"], {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        repeats, started = 0, time.perf_counter()
        while time.perf_counter() - started < 3.0:
            torch.mm(a, b)
            repeats += 1
        result[f"matmul_{name}_gflops"] = round(2 * n**3 * repeats / (time.perf_counter() - started) / 1e9, 1)
    return result


def stage_raw(settings: dict) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from landseg.checkpoint import load_checkpoint
    from landseg.predict.ensemble import load_ensemble

    loaded = load_checkpoint(settings["checkpoint"])
    tile, batch = settings["tile"], settings["batch_size"]
    member = load_ensemble(
        [settings["checkpoint"]], engine=settings["engine"], precision=settings["precision"], tile=tile
    ).members[0]
    network = member.network
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        loaded.network(torch.zeros(1, 3, tile, tile))
    tiles = torch.randn(batch, 3, tile, tile)
    with torch.inference_mode():
        network(tiles)  # warm-up: oneDNN picks its kernels on the first call
        done, started = 0, time.perf_counter()
        while done < settings["raw_tiles"]:
            torch.softmax(network(tiles).float(), dim=1)
            done += batch
        seconds = time.perf_counter() - started
    return {
        "tiles": done,
        "wall_s": round(seconds, 2),
        "tiles_per_s": round(done / seconds, 3),
        "gflop_per_tile": round(counter.get_total_flops() / 1e9, 3),
        "engine": member.engine,
        "precision": member.precision,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def stage_variants(settings: dict) -> dict:
    """Raw tiles/s of the ways to run the model on this CPU, the engine's choices among them."""
    import torch

    from landseg.checkpoint import load_checkpoint
    from landseg.predict.ensemble import TorchNetwork

    tile, batch = settings["tile"], settings["batch_size"]
    tiles = torch.randn(batch, 3, tile, tile)
    variants = {
        "fp32": lambda net: TorchNetwork(net, precision="fp32", channels_last=False),
        "fp32_channels_last": lambda net: TorchNetwork(net, precision="fp32", channels_last=True),
    }
    if settings["bf16"]:
        variants["bf16"] = lambda net: TorchNetwork(net, precision="bf16", channels_last=False)
        variants["bf16_channels_last"] = lambda net: TorchNetwork(net, precision="bf16", channels_last=True)
    if settings.get("compile"):
        variants["bf16_channels_last_compiled"] = lambda net: TorchNetwork(net, precision="bf16", compile=True)
    onnx_path = Path(settings["work"]) / f"unet_lite0_{tile}.onnx"
    if package_version("onnxruntime") and package_version("onnxscript"):
        from landseg.predict.onnx import OnnxNetwork, export_onnx

        if not onnx_path.exists():
            export_onnx(settings["checkpoint"], onnx_path, tile)
        variants["onnxruntime_fp32"] = lambda net: OnnxNetwork(onnx_path)
    result = {}
    for name, make in variants.items():
        network = make(load_checkpoint(settings["checkpoint"]).network)
        with torch.inference_mode():
            started = time.perf_counter()
            network(tiles)
            first = time.perf_counter() - started
            done, started = 0, time.perf_counter()
            while done < settings["raw_tiles"]:
                network(tiles)
                done += batch
            result[name] = {
                "tiles_per_s": round(done / (time.perf_counter() - started), 3),
                "first_batch_s": round(first, 2),
            }
    return result


def stage_predict(settings: dict) -> dict:
    from landseg.predict.engine import PredictOptions
    from landseg.predict.run import run_predict

    options = PredictOptions(tile=settings["tile"], overlap=settings["overlap"], batch_size=settings["batch_size"])
    started = time.perf_counter()
    summary = run_predict(
        [settings["scene"]],
        [settings["checkpoint"]],
        settings["out"],
        options,
        engine=settings["engine"],
        precision=settings["precision"],
        overwrite=True,
    )
    seconds = time.perf_counter() - started
    result = summary.done[0]
    record = json.loads(result.paths["record"].read_text())
    return {
        "precision": record["precisions"][0],
        "wall_s": round(seconds, 2),
        "tiles_predicted": record["tiles_predicted"],
        "tiles_in_grid": record["tiles_in_grid"],
        "stages_s": record["stages"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


class _Lookup:
    """A network stand-in that answers each batch shape with one real forward pass, computed once."""

    def __init__(self, network):
        self._network, self._answers = network, {}

    def __getattr__(self, name):
        return getattr(self._network, name)

    def __call__(self, batch):
        key = tuple(batch.shape)
        if key not in self._answers:
            self._answers[key] = self._network(batch)
        return self._answers[key].clone()


def stage_profile(settings: dict) -> dict:
    """``predict`` with every network replaced by ``_Lookup``: the wall time left is the pipeline's own work
    (read, normalize, softmax, blend, write, COG, preview, areas). A second, cProfiled run breaks down the
    main thread, where all of it runs except normalize and softmax (in the forward thread)."""
    import cProfile
    import pstats

    import landseg.predict.ensemble as ensemble_module

    real_load = ensemble_module.load_ensemble

    def load_with_lookups(*args, **kwargs):
        ensemble = real_load(*args, **kwargs)
        for member in ensemble.members:
            member.network = _Lookup(member.network)
        return ensemble

    ensemble_module.load_ensemble = load_with_lookups
    timed = stage_predict(settings)
    profiler = cProfile.Profile()
    profiler.enable()
    stage_predict({**settings, "out": settings["out"] + "_profiled"})
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    top = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:15]
    return {
        "wall_s": timed["wall_s"],
        "stages_s": timed["stages_s"],
        "tiles_in_grid": timed["tiles_in_grid"],
        "main_thread_top_tottime": [
            {
                "function": f"{Path(file).name}:{line}({name})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
            for (file, line, name), (_, calls, tottime, cumtime, _) in top
        ],
    }


def stage_naive(settings: dict) -> dict:
    import torch

    from landseg.checkpoint import load_checkpoint
    from landseg.io.raster import read_image
    from landseg.io.write import write_index_geotiff
    from landseg.predict.tiling import tile_windows

    started = time.perf_counter()
    loaded = load_checkpoint(settings["checkpoint"])
    image = read_image(settings["scene"])
    normalized = loaded.card.input_normalization().apply(image.data)
    tile = settings["tile"]
    # Reflected at the bottom and right only as far as a scene smaller than one tile needs.
    pad_h, pad_w = max(0, tile - normalized.shape[1]), max(0, tile - normalized.shape[2])
    padded = np.pad(normalized, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
    windows = tile_windows(*padded.shape[1:], tile, settings["overlap"])
    limit = settings.get("naive_tiles") or len(windows)
    classes = np.zeros(padded.shape[1:], dtype=np.uint8)
    forward_started = time.perf_counter()
    with torch.inference_mode():
        for row, col in windows[:limit]:
            logits = loaded.network(torch.from_numpy(padded[None, :, row : row + tile, col : col + tile]))
            classes[row : row + tile, col : col + tile] = logits[0].argmax(0).numpy()
    forward = time.perf_counter() - forward_started
    out = Path(settings["out"]) / "naive_classes.tif"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_index_geotiff(
        out, classes[: image.shape[0], : image.shape[1]], image.crs, image.transform, loaded.card.class_schema()
    )
    measured = time.perf_counter() - started
    # With a tile limit, the untimed tiles are charged at the timed tiles' mean forward time.
    wall = measured + forward / limit * (len(windows) - limit)
    return {
        "wall_s": round(wall, 2),
        "measured_s": round(measured, 2),
        "tiles": len(windows),
        "tiles_run": limit,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def stage_agreement(settings: dict) -> dict:
    """Class maps of real images from a trained checkpoint: bf16 and ONNX Runtime against fp32, and the
    streamed fp32 map against one forward pass over the whole image, near tile borders and away from them."""
    import tempfile

    import rasterio
    import torch

    from landseg.io.raster import read_image
    from landseg.predict.blocks import scene_grid
    from landseg.predict.engine import PredictOptions, predict_scene
    from landseg.predict.ensemble import load_ensemble

    checkpoint, images = settings["checkpoint"], sorted(settings["images"])
    engines = {
        "fp32": load_ensemble([checkpoint], engine="torch", precision="fp32"),
        "bf16": load_ensemble([checkpoint], engine="torch", precision="bf16"),
    }
    if package_version("onnxruntime") and package_version("onnxscript"):
        engines["onnxruntime"] = load_ensemble([checkpoint], engine="onnxruntime")
    options = PredictOptions(overlap=settings["overlap"], preview=False, areas=False)
    totals = {name: [0, 0] for name in engines if name != "fp32"}
    seam = {"near": [0, 0], "away": [0, 0]}
    with tempfile.TemporaryDirectory() as scratch:
        for number, image in enumerate(images):
            maps = {}
            for name, ensemble in engines.items():
                result = predict_scene(image, ensemble, Path(scratch) / f"{name}_{number}", options)
                with rasterio.open(result.paths["classes"]) as src:
                    maps[name] = src.read(1)
            valid = maps["fp32"] != 255
            for name in totals:
                totals[name][0] += int((maps[name] == maps["fp32"])[valid].sum())
                totals[name][1] += int(valid.sum())
            member = engines["fp32"].members[0]
            loaded = read_image(image, bands=member.card.bands)
            with torch.inference_mode():
                batch = torch.from_numpy(member.card.input_normalization().apply(loaded.data))[None]
                one_pass = member.network(batch)[0].float().argmax(0).numpy()
            height, width = one_pass.shape
            grid = scene_grid(height, width, engines["fp32"].source_tile(), settings["overlap"])
            near = _near_tile_borders(grid, height, width)
            disagree = maps["fp32"] != one_pass
            for key, mask in (("near", near & valid), ("away", ~near & valid)):
                seam[key][0] += int(disagree[mask].sum())
                seam[key][1] += int(mask.sum())
    return {
        "images": [Path(p).name for p in images],
        "pixels": totals.get("bf16", [0, 0])[1],
        "agreement_with_fp32": {name: round(a / n, 5) for name, (a, n) in totals.items()},
        "one_pass_disagreement_near_tile_borders": round(seam["near"][0] / max(seam["near"][1], 1), 5),
        "one_pass_disagreement_away_from_borders": round(seam["away"][0] / max(seam["away"][1], 1), 5),
    }


def _near_tile_borders(grid, height: int, width: int) -> np.ndarray:
    """Pixels within a quarter stride of a border of some tile covering them."""
    near = np.zeros((height, width), dtype=bool)
    band = max(1, grid.stride // 4)
    for edges, axis in ((grid.rows, 0), (grid.cols, 1)):
        for origin in edges:
            for edge in (origin, origin + grid.tile):
                low, high = max(edge - band, 0), min(edge + band, height if axis == 0 else width)
                if low < high:
                    if axis == 0:
                        near[low:high] = True
                    else:
                        near[:, low:high] = True
    return near


def stage_quantize(settings: dict) -> dict:
    """The benchmark model's int8 version, beside its checkpoint: calibrated on the top half of the
    scene, its guard (agreement with fp32; no labels) measured on the bottom half."""
    import rasterio
    from rasterio.windows import Window

    from landseg.classes import IGNORE_INDEX
    from landseg.data.dataset import LabelledImage
    from landseg.predict.int8 import guard_passes
    from landseg.predict.quantize import quantize_checkpoint

    with rasterio.open(settings["scene"]) as source:
        half = source.height // 2
        top = source.read(window=Window(0, 0, source.width, half))
        bottom = source.read(window=Window(0, half, source.width, source.height - half))
    unlabelled = np.full(bottom.shape[1:], IGNORE_INDEX, dtype=np.uint8)
    started = time.perf_counter()
    path, guard = quantize_checkpoint(
        settings["checkpoint"], [top], [LabelledImage(bottom, unlabelled, "bottom half")], settings["tile"]
    )
    return {
        "file": Path(path).name,
        "seconds": round(time.perf_counter() - started, 1),
        "auto_runs_it": guard_passes(guard),
        **guard,
    }


def stage_fidelity(settings: dict) -> dict:
    """int8 against fp32 for trained Dubai checkpoints (calibrated on the training tiles of
    ``configs/dubai.yaml``, measured on tile 4) and for the zoo models of ``ZOO_FIDELITY`` on the real Sentinel-2 samples."""
    from landseg.config import load_config
    from landseg.errors import ConfigError
    from landseg.predict.int8 import guard_passes
    from landseg.train.int8 import quantize_on_images, quantize_on_splits

    os.environ["LANDSEG_CACHE"] = settings["cache"]  # the zoo models' int8 files stay out of the user's cache
    result: dict = {"dubai_default": []}
    config = load_config(REPO / "configs" / "dubai.yaml")
    for checkpoint in settings["checkpoints"]:
        started = time.perf_counter()
        _, guard = quantize_on_splits(checkpoint, config, "val", progress=False)
        seconds = round(time.perf_counter() - started, 1)
        result["dubai_default"].append(
            {"checkpoint": checkpoint, "seconds": seconds, "auto_runs_it": guard_passes(guard), **guard}
        )
        print(f"int8 Dubai {checkpoint}: {result['dubai_default'][-1]}", file=sys.stderr)
    chips = [Path(chip) for chip in settings["sentinel2"]]
    for key, zoo_name in ZOO_FIDELITY.items():
        result[key] = []
        for chip in chips:
            others = [other for other in chips if other != chip]
            try:
                _, guard = quantize_on_images(f"zoo:{zoo_name}", others, [chip])
            except ConfigError as exc:  # the cloud models ship as float16 networks, which it cannot quantize
                result[key] = {"refused": str(exc)}
                print(f"int8 {zoo_name}: refused: {exc}", file=sys.stderr)
                break
            result[key].append({"chip": chip.name, "auto_runs_it": guard_passes(guard), **guard})
            print(f"int8 {zoo_name} {chip.name}: {guard['agreement']:.5f}", file=sys.stderr)
    return result


STAGES = {
    "quantize": stage_quantize,
    "fidelity": stage_fidelity,
    "peak": stage_peak,
    "raw": stage_raw,
    "predict": stage_predict,
    "naive": stage_naive,
    "profile": stage_profile,
    "agreement": stage_agreement,
    "variants": stage_variants,
}


# -- report ------------------------------------------------------------------------------------------
def environment() -> dict:
    """``common.environment``, the CPU's bf16 instructions (they decide whether bf16 autocast can pay off)
    and the inference stack."""
    import rasterio

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    env = common_environment(("torch", "onnxruntime"))
    env["load_average_start"] = env.pop("load_average")
    return {
        **env,
        "cpu_bf16": [f for f in flags if "bf16" in f or f.startswith("amx")],
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
    }


def table(rows: list[dict], naive: dict | None) -> str:
    lines = [
        "| scene | precision | tiles (grid / run) | raw forward s | predict s | efficiency | raw spread | "
        "model GFLOP/s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']}² | {r['precision']} | {r['tiles_in_grid']} / {r['tiles_predicted']} | {r['raw_s']:.0f} | "
            f"{r['predict_s']:.0f} | {r['efficiency']:.3f} | {r['raw']['spread']:.0%} | "
            f"{r['gflops_end_to_end']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    if naive:
        lines.append(
            f"| {naive['size']}² naive | fp32 (torch) | {naive['tiles']} / {naive['tiles_run']} | - | "
            f"{naive['wall_s']:.0f} | - | - | - | {naive['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="Smoke run on small scenes (not a measurement).")
    parser.add_argument("--sizes", default=None, help="Comma-separated scene sizes (default 4096,8192,16384).")
    parser.add_argument("--tile", type=int, default=None, help="Tile (default 512; small: 128).")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=2, help="Tiles per forward pass (the engine's default).")
    parser.add_argument("--engine", default="auto", help="Engine: auto, torch or onnxruntime.")
    parser.add_argument("--precisions", default="fp32,int8", help="Precisions timed side by side: fp32, int8, bf16.")
    parser.add_argument(
        "--int8-checkpoints",
        nargs="*",
        type=Path,
        default=[],
        help="Trained Dubai checkpoints: int8 fidelity on tile 4.",
    )
    parser.add_argument(
        "--profile-sizes", default="", help="Also profile the pipeline at these sizes (comma-separated)."
    )
    parser.add_argument("--raw-tiles", type=int, default=None, help="Tiles timed per raw measurement (default 64).")
    parser.add_argument("--compile", action="store_true", help="Also time torch.compile (slow to compile).")
    parser.add_argument("--naive-tiles", type=int, default=None, help="Limit the naive loop to this many tiles.")
    parser.add_argument(
        "--agreement",
        type=Path,
        default=None,
        help="A trained checkpoint: also compare bf16 and ONNX Runtime with fp32 on real images.",
    )
    parser.add_argument(
        "--agreement-images", default=str(REPO.parent / "shared" / "datasets" / "dubai" / "tile_4" / "images" / "*.jpg")
    )
    parser.add_argument("--agreement-only", action="store_true", help="Only the agreement check.")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "landseg-bench-predict")
    parser.add_argument("--results", type=Path, default=None, help="JSON output (default benchmarks/results/...).")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(STAGES[args.stage](json.loads(args.settings))))
        return 0
    sizes = [int(s) for s in (args.sizes or ("512,1024" if args.small else "4096,8192,16384")).split(",")]
    precisions = args.precisions.split(",")
    profile_sizes = {int(s) for s in args.profile_sizes.split(",") if s}
    tile = args.tile or (128 if args.small else 512)
    raw_tiles = args.raw_tiles or (8 if args.small else 64)
    results = args.results or REPO / "benchmarks" / "results" / (
        "predict_speed_small.json" if args.small else "predict_speed.json"
    )
    env = environment()

    def agreement_check() -> dict | None:
        if not args.agreement:
            return None
        import glob

        result = run_stage(
            "agreement",
            {"checkpoint": str(args.agreement), "overlap": args.overlap, "images": glob.glob(args.agreement_images)},
        )
        print(f"agreement: {result}", file=sys.stderr)
        return {**result, "checkpoint": str(args.agreement)}

    if args.agreement_only:
        print(json.dumps(agreement_check(), indent=2))
        return 0
    checkpoint = write_checkpoint(args.work / "unet_lite0.ckpt")
    base = {
        "checkpoint": str(checkpoint),
        "tile": tile,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "engine": args.engine,
        "raw_tiles": raw_tiles,
        # bf16 matmuls run at 0.3 GFLOP/s on some CPUs without native bf16 kernels: 2048² takes a minute each.
        "matmul_size": 512 if args.small else 2048,
    }
    peak = run_stage("peak", base)
    print(f"matmul peak: {peak}", file=sys.stderr)
    # Where bf16 matrix products run far below fp32 (no bf16 kernels reached: 0.3 GFLOP/s on this machine on
    # 2026-12-04), bf16 cannot pay off and timing it at 512 px takes most of an hour: it is left out.
    bf16 = peak["matmul_bf16_gflops"] >= peak["matmul_fp32_gflops"] / 2
    variants = run_stage(
        "variants", {**base, "precision": "fp32", "work": str(args.work), "compile": args.compile, "bf16": bf16}
    )
    print(f"variants: {variants}", file=sys.stderr)
    quantized = None
    if "int8" in precisions:
        quantized = run_stage("quantize", {**base, "scene": str(write_scene(args.work, sizes[0]))})
        print(f"int8: {quantized}", file=sys.stderr)
    # The default engine is what ``--precision auto`` picks for this model: int8 where its guard passes.
    default = "int8" if quantized and quantized["auto_runs_it"] else "fp32"
    rows: list[dict] = []
    naive, profiles, fidelity = None, [], None

    def headline() -> dict:
        """The figures the targets are judged on, for each precision: the worst scene for efficiency and
        memory, and the speed-up over the naive loop on the smallest scene."""
        figures = {}
        for precision in precisions:
            mine = [row for row in rows if row["precision"] == precision]
            if not mine:
                continue
            figures[precision] = {
                "efficiency": min(row["efficiency"] for row in mine),
                "speedup_vs_naive": round(naive["wall_s"] / mine[0]["predict_s"], 2) if naive else None,
                "peak_rss_mb": max(row["peak_rss_mb"] for row in mine),
                "rss_growth_largest_over_smallest": round(mine[-1]["peak_rss_mb"] / mine[0]["peak_rss_mb"], 3),
            }
        return figures

    def save(complete: bool, agreement: dict | None = None) -> None:
        """The results so far, rewritten after every scene so an interrupted run keeps its numbers."""
        figures = headline()
        chosen = figures.get(default) or next(iter(figures.values()))
        payload = {
            "benchmark": "3. Whole-scene prediction speed and memory",
            "small": args.small,
            "complete": complete,
            "command": " ".join(["python", "benchmarks/predict_speed.py", *sys.argv[1:]]),
            "config": {
                "sizes": sizes,
                "tile": tile,
                "overlap": args.overlap,
                "batch_size": args.batch_size,
                "precisions": precisions,
                "engine": args.engine,
                "raw_tiles": raw_tiles,
                "model": MODEL,
                "naive_tiles": args.naive_tiles,
            },
            "environment": {**env, "load_average_end": os.getloadavg()},
            "matmul_peak": peak,
            "variants": variants,
            "int8_model": quantized,
            "default_precision": default,
            "scenes": rows,
            "naive": naive,
            "profile": profiles[0] if profiles else None,
            "profiles": profiles,
            "agreement": agreement,
            "int8_fidelity": fidelity,
            "by_precision": figures,
            # Top level: the default engine's figures (``--precision auto`` for this model).
            "rss_growth_largest_over_smallest": chosen["rss_growth_largest_over_smallest"],
            "efficiency": chosen["efficiency"],
            "speedup_vs_naive": chosen["speedup_vs_naive"],
            "peak_rss_mb": chosen["peak_rss_mb"],
        }
        results.parent.mkdir(parents=True, exist_ok=True)
        temporary = results.with_name(f".{results.name}.partial")
        temporary.write_text(json.dumps(payload, indent=2))
        os.replace(temporary, results)

    for size in sizes:
        scene = write_scene(args.work, size)
        for precision in precisions:
            rows.append(time_scene(size, scene, {**base, "precision": precision}, args.work))
            print(f"{size}² {precision}: {rows[-1]}", file=sys.stderr)
            save(complete=False)
        if naive is None:
            naive = run_stage(
                "naive",
                {**base, "scene": str(scene), "out": str(args.work / f"naive_{size}"), "naive_tiles": args.naive_tiles},
            )
            naive = {"size": size, **naive}
            print(f"naive {size}²: {naive}", file=sys.stderr)
        if not profiles or size in profile_sizes:
            profiles.append(profile_scene(size, scene, {**base, "precision": default}, args.work, rows))
            print(f"profile {size}²: {profiles[-1]}", file=sys.stderr)
        save(complete=False)
    if args.int8_checkpoints:
        fidelity = run_stage(
            "fidelity",
            {
                "checkpoints": [str(path) for path in args.int8_checkpoints],
                "sentinel2": sorted(str(path) for pattern in SENTINEL2_SAMPLES for path in DATASETS.glob(pattern)),
                "cache": str(args.work / "cache"),
            },
        )
    save(complete=True, agreement=agreement_check())  # the checks that time nothing come last
    print(table(rows, naive))
    print("\n| model run as | tiles/s | vs fp32 |\n|---|---:|---:|")
    for name, value in variants.items():
        ratio = value["tiles_per_s"] / variants["fp32"]["tiles_per_s"]
        print(f"| {name} | {value['tiles_per_s']:.2f} | {ratio:.2f}x |")
    print(f"\ndefault precision {default}; by precision: {json.dumps(headline())}")
    print(
        f"matmul peak {peak['matmul_fp32_gflops']:.0f} GFLOP/s fp32, {peak['matmul_bf16_gflops']:.0f} bf16. "
        f"CPU: {env['cpu']} ({env['cpu_count']} cores), torch {env['torch']}, commit {env['git_commit'][:10]}"
        f"{' (dirty)' if env['git_dirty'] else ''}, load {env['load_average_start'][0]:.1f}."
    )
    return 0


def time_scene(size: int, scene: Path, settings: dict, work: Path) -> dict:
    """``predict`` on one scene at ``settings``' precision, between two raw measurements of the same network."""
    before = run_stage("raw", settings)
    run = run_stage("predict", {**settings, "scene": str(scene), "out": str(work / f"out_{size}")})
    after = run_stage("raw", settings)
    # Raw speed is measured just before and just after the scene, and averaged per tile, so that a
    # change in the machine's load during the run shows up as spread instead of as efficiency.
    seconds_per_tile = (1 / before["tiles_per_s"] + 1 / after["tiles_per_s"]) / 2
    raw = {
        **before,
        "tiles_per_s": round(1 / seconds_per_tile, 3),
        "before": before["tiles_per_s"],
        "after": after["tiles_per_s"],
        "spread": round(abs(before["tiles_per_s"] - after["tiles_per_s"]) * seconds_per_tile, 3),
        "load_average": os.getloadavg(),
    }
    raw_s = run["tiles_in_grid"] / raw["tiles_per_s"]
    return {
        "size": size,
        "precision": run["precision"],
        "tiles_in_grid": run["tiles_in_grid"],
        "tiles_predicted": run["tiles_predicted"],
        "raw_tiles_per_s": raw["tiles_per_s"],
        "raw_s": round(raw_s, 2),
        "predict_s": run["wall_s"],
        "efficiency": round(raw_s / run["wall_s"], 4),
        "efficiency_per_tile_run": round(run["tiles_predicted"] / raw["tiles_per_s"] / run["wall_s"], 4),
        "gflops_raw": round(raw["gflop_per_tile"] * raw["tiles_per_s"], 1),
        "gflops_end_to_end": round(raw["gflop_per_tile"] * run["tiles_in_grid"] / run["wall_s"], 1),
        "peak_rss_mb": run["peak_rss_mb"],
        "stages_s": run["stages_s"],
        "raw": raw,
    }


def profile_scene(size: int, scene: Path, settings: dict, work: Path, rows: list[dict]) -> dict:
    """The pipeline's own work on a scene (``stage_profile``), against the forward time of the same
    scene at that precision."""
    profile = run_stage("profile", {**settings, "scene": str(scene), "out": str(work / f"profile_{size}")})
    row = next(r for r in rows if r["size"] == size and r["precision"] == settings["precision"])
    return {
        "size": size,
        "precision": settings["precision"],
        **profile,
        "pipeline_s_per_tile": round(profile["wall_s"] / profile["tiles_in_grid"], 4),
        "forward_s_per_tile": round(1 / row["raw_tiles_per_s"], 4),
        "pipeline_over_forward": round(profile["wall_s"] / row["raw_s"], 4),
        "model_time_share": round(row["raw_s"] / row["predict_s"], 4),
        "pipeline_share": round(profile["wall_s"] / row["predict_s"], 4),
    }


if __name__ == "__main__":
    sys.exit(main())
