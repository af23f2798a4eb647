"""Benchmark 9: throughput of a zoo model on this machine, in Mpx/s and km² of imagery per core-hour.

- ``network``: the network alone on random normalized tiles (``--tile``, batches of ``--batch``), fp32:
  PyTorch under ``torch.inference_mode`` and ONNX Runtime on the model exported as ``landseg export``
  does; median of ``--repeats`` passes after one warm-up pass (the first pass allocates and picks kernels);
- ``end_to_end``: ``landseg predict --model NAME IMAGE`` in this process with its default options (reading,
  normalization, overlapping tiles, blending, class COG, preview, areas) but no cloud mask, once per engine,
  after a first run that exports and caches the ONNX model and loads the kernels;
- ``cloud_share``: the cloud and shadow mask's cost beside the model: ``--cloud-size`` squared pixels (the
  image mirrored to that size, on its own 10 m UTM grid) predicted with ``--cloud-mask none`` and with
  ``--cloud-mask model`` (ukis-csmask's 6-band L1C network at 30 m); the run record's stage times.

Mpx/s divides by wall time. km² per core-hour divides by the CPU time the process used (at the zoo
model's nominal resolution), which stays fair when other jobs share the machine: wall time then
inflates, CPU time barely does. The load average is recorded before and after.

    python benchmarks/zoo_throughput.py                     # about 3 minutes on 2 cores
    python benchmarks/zoo_throughput.py --smoke --results /tmp/z.json   # plumbing check, not a measurement
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import REPO, RESULTS, environment, write_json

DEFAULT_IMAGE = REPO.parent / "shared" / "datasets" / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"


def median_pass(forward: Callable[[torch.Tensor], object], batch: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one forward pass, after one warm-up pass."""
    with torch.inference_mode():
        forward(batch)
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            forward(batch)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def rates(pixels: int, wall: float, cpu: float, resolution_m: float) -> dict:
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "mpx_per_s": round(pixels / wall / 1e6, 4),
        "km2_per_core_hour": round(pixels / cpu * (resolution_m / 1000.0) ** 2 * 3600, 1),
    }


def network_alone(model: str, tile: int, batch_size: int, repeats: int, threads: int) -> list[dict]:
    from landseg.predict.networks import OnnxNetwork
    from landseg.predict.onnx import export_onnx
    from landseg.zoo import get_zoo_model, load_zoo_model

    entry, loaded = get_zoo_model(model), load_zoo_model(model)
    batch = torch.rand(batch_size, len(entry.bands), tile, tile)
    pixels = batch_size * tile * tile
    rows = [{"engine": "torch", **rates(pixels, *median_pass(loaded.network, batch, repeats), entry.resolution_m)}]
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = export_onnx(loaded, Path(scratch) / f"{model}.onnx", tile=tile)
        session = OnnxNetwork(onnx_path, threads=threads)
        rows.append(
            {"engine": "onnxruntime", **rates(pixels, *median_pass(session, batch, repeats), entry.resolution_m)}
        )
    return [{"tile": tile, "batch": batch_size, "threads": threads, **row} for row in rows]


def end_to_end(model: str, image: Path, engine: str) -> dict:
    """``landseg predict --model`` on ``image``: wall and CPU seconds of the second of two runs."""
    from landseg.predict.models import model_references
    from landseg.predict.options import PredictOptions
    from landseg.predict.run import run_predict
    from landseg.zoo import get_zoo_model

    references = model_references([], [model])
    unmasked = PredictOptions(cloud_mask="none")
    with tempfile.TemporaryDirectory() as warm:
        run_predict([str(image)], references, warm, options=unmasked, engine=engine)
    with tempfile.TemporaryDirectory() as out:
        start, start_cpu = time.perf_counter(), time.process_time()
        summary = run_predict([str(image)], references, out, options=unmasked, engine=engine)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    scene = summary.done[0]
    pixels = scene.width * scene.height
    return {
        "engine": engine,
        "image": str(image),
        "pixels": pixels,
        **rates(pixels, wall, cpu, get_zoo_model(model).resolution_m),
    }


def mirrored_scene(image: Path, size: int, destination: Path) -> Path:
    """``image`` mirrored to ``size`` x ``size`` pixels (no seams), on a 10 m UTM grid, bands kept."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(image) as source:
        pixels, dtype = source.read(), source.dtypes[0]
    reps = -(-size // pixels.shape[1]), -(-size // pixels.shape[2])
    tile = np.concatenate([pixels, pixels[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[:, :, ::-1]], axis=2)
    scene = np.tile(tile, (1, reps[0], reps[1]))[:, :size, :size]
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": len(scene),
        "dtype": dtype,
        "crs": "EPSG:32630",
        "transform": from_origin(500000, 4500000, 10, 10),
        "tiled": True,
    }
    with rasterio.open(destination, "w", **profile) as target:
        target.write(scene)
    return destination


def cloud_share(model: str, image: Path, size: int) -> dict:
    """Stage seconds of ``landseg predict --model`` on a ``size``-square scene without and with the cloud model
    (after the end-to-end runs, which loaded and exported the model); the cloud step's share of the model's
    prediction time."""
    from landseg.predict.engine import predict_scene
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.models import model_references
    from landseg.predict.options import PredictOptions

    ensemble = load_ensemble(model_references([], [model]))
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        scene = mirrored_scene(image, size, Path(scratch) / "scene.tif")
        for mask in ("none", "model"):
            result = predict_scene(scene, ensemble, Path(scratch) / mask, PredictOptions(cloud_mask=mask))
            runs[mask] = {
                "seconds": round(result.seconds, 2),
                "stages": {k: round(v, 2) for k, v in result.stages.items()},
            }
    cloud = runs["model"]["stages"]["cloud_mask"]
    return {
        "size": size,
        "runs": runs,
        "cloud_step_s": cloud,
        "share_of_model_prediction": round(cloud / runs["none"]["stages"]["predict"], 4),
        "share_of_whole_run": round(cloud / runs["model"]["seconds"], 4),
        "cloud_mpx_per_s": round(size * size / cloud / 1e6, 3),
    }


def table(payload: dict) -> str:
    lines = ["| what | engine | Mpx/s (wall) | CPU s | km² per core-hour |", "|---|---|---:|---:|---:|"]
    for row in payload["network"]:
        lines.append(
            f"| network alone, {row['tile']}² tile, batch {row['batch']} | {row['engine']} | "
            f"{row['mpx_per_s']:.3f} | {row['cpu_s']:.2f} | {row['km2_per_core_hour']:,.0f} |"
        )
    for row in payload["end_to_end"]:
        lines.append(
            f"| `landseg predict --model {payload['model']}`, {row['pixels']:,} px | {row['engine']} | "
            f"{row['mpx_per_s']:.3f} | {row['cpu_s']:.2f} | {row['km2_per_core_hour']:,.0f} |"
        )
    share = payload.get("cloud_share")
    if share:
        lines.append(
            f"\ncloud step on {share['size']}² px: {share['cloud_step_s']:.1f} s "
            f"({share['cloud_mpx_per_s']:.2f} Mpx/s), {100 * share['share_of_model_prediction']:.1f} % of the "
            f"model's prediction ({share['runs']['none']['stages']['predict']:.1f} s)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dynamic-world")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="Sentinel-2 file for the end-to-end runs.")
    parser.add_argument("--cloud-size", type=int, default=2048, help="Side of the scene of the cloud-share run.")
    parser.add_argument("--smoke", action="store_true", help="Tiny tiles, one repeat, no end-to-end runs.")
    parser.add_argument(
        "--results", type=Path, default=None, help="JSON output (default benchmarks/results/zoo_throughput.json)."
    )
    args = parser.parse_args(argv)
    if args.smoke and args.results is None:
        parser.error("--smoke needs --results (a smoke run writes nothing under benchmarks/results)")
    torch.set_num_threads(args.threads)
    tile, repeats = (64, 1) if args.smoke else (args.tile, args.repeats)
    payload = {
        "benchmark": "9. Zoo model throughput",
        "smoke": args.smoke,
        "model": args.model,
        "command": "python benchmarks/zoo_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": environment(("torch", "onnxruntime")),
        "network": network_alone(args.model, tile, args.batch, repeats, args.threads),
        "end_to_end": [] if args.smoke else [end_to_end(args.model, args.image, e) for e in ("torch", "onnxruntime")],
        "cloud_share": None if args.smoke else cloud_share(args.model, args.image, args.cloud_size),
    }
    payload["load_average_after"] = os.getloadavg()
    write_json(args.results or RESULTS / "zoo_throughput.json", payload)
    print(table(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
