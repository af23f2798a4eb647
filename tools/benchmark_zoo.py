"""Throughput of a zoo model's network on this machine: megapixels per second and km² per core-hour.

    .venv/bin/python tools/benchmark_zoo.py [--model dynamic-world] [--threads 2] [--tile 512] [--batch 1 2]

Times the network alone (fp32, ``torch.inference_mode``) on random normalized tiles, after warm-up,
taking the median of several runs; reading rasters, normalization and blending are not included.
Mpx/s is wall-clock time; km² per core-hour divides by the CPU time the process used, which stays
honest on a machine that other jobs share (wall time then inflates, CPU time barely does).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from landseg.zoo import get_zoo_model, load_zoo_model


def seconds_per_batch(network: torch.nn.Module, batch: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one forward pass."""
    with torch.inference_mode():
        network(batch)  # warm-up: first calls allocate and pick kernels
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            network(batch)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def report(model: str, threads: int, tile: int, batch_size: int, repeats: int) -> str:
    entry = get_zoo_model(model)
    network = load_zoo_model(model).network
    batch = torch.rand(batch_size, len(entry.bands), tile, tile)
    wall, cpu = seconds_per_batch(network, batch, repeats)
    pixels = batch_size * tile * tile
    km2_per_core_hour = pixels / cpu * (entry.resolution_m / 1000.0) ** 2 * 3600
    return (f"{model} tile {tile} batch {batch_size} threads {threads}: {wall:.2f} s/batch wall, "
            f"{cpu:.2f} CPU s, {pixels / wall / 1e6:.3f} Mpx/s, {km2_per_core_hour:,.0f} km²/core-hour")


def end_to_end(model: str, image: str, engine: str, threads: int) -> dict:
    """``landseg predict --model`` on ``image`` in this process: wall and CPU seconds of the whole run
    (reading, normalization, network, blending, COG, preview, areas), ONNX export excluded (done first)."""
    import tempfile

    from landseg.predict.models import model_references
    from landseg.predict.run import run_predict

    references = model_references([], [model])
    with tempfile.TemporaryDirectory() as warm:  # export and cache the ONNX model, load kernels
        run_predict([image], references, warm, engine=engine)
    with tempfile.TemporaryDirectory() as out:
        start, start_cpu = time.perf_counter(), time.process_time()
        summary = run_predict([image], references, out, engine=engine)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    scene = summary.done[0]
    pixels = scene.width * scene.height
    resolution = get_zoo_model(model).resolution_m
    return {"engine": engine, "image": image, "pixels": pixels, "threads": threads, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "mpx_per_s": round(pixels / wall / 1e6, 4),
            "km2_per_core_hour": round(pixels / cpu * (resolution / 1000.0) ** 2 * 3600, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dynamic-world")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", help="Also time `landseg predict` end to end on this Sentinel-2 file.")
    parser.add_argument("--json", help="Write the end-to-end results to this JSON file.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for batch_size in args.batch:
        print(report(args.model, args.threads, args.tile, batch_size, args.repeats))
    if args.image:
        import json
        import os
        import platform

        runs = [end_to_end(args.model, args.image, engine, args.threads) for engine in ("torch", "onnxruntime")]
        for run in runs:
            print(run)
        if args.json:
            facts = {"model": args.model, "machine": f"{platform.processor() or platform.machine()}, "
                     f"{os.cpu_count()} logical CPUs", "runs": runs}
            Path(args.json).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
