"""Benchmark 6: scale-out of ``landseg predict`` on Dask (1 vs 2 local workers on a multi-scene job).

Synthetic, georeferenced 3-band uint8 scenes (``--scenes`` of ``--size`` px, different seeds) and a
checkpoint of the default recipe's architecture (U-Net, EfficientNet-Lite0 encoder, the model of
benchmark 3) are written once into a work folder. Then, in one run:

- ``single``: the single-process command (``predict.run.run_predict``) with PyTorch / ONNX Runtime's
  default threads: the reference output and time;
- ``dask WxT``: ``distributed.predict`` on a fresh ``LocalCluster`` of W worker processes with T network
  threads each: cluster start, then the job end to end (models loaded on the workers, plan, blocks,
  assembly into COGs), repeated ``--repeats`` times in alternating order; the class maps are compared
  with the single-process ones;
- per-tile cost: worker-seconds spent in block tasks per tile (read, network, blend, write), and the
  network alone on the worker (``raw``), from the 1 x 1 runs; the per-scene serial tail (assembly, COG,
  extras) from the run records.

Speed-up = wall(1 worker) / wall(2 workers), each 1 thread; per-worker efficiency = speed-up / 2.
"Cores the workers got" is the workers' CPU time during the job over its wall time: on a shared
machine it shows how much of the 2 cores the job actually had. CPU efficiency = the job's CPU time on
1 worker over its CPU time on 2: what splitting the job across processes costs, whatever the load.
The projection for a real cluster (one core per worker) uses the measured CPU-seconds per tile of the
1-worker job (reading, network, blending, block files, assembly, COG, extras: everything) and the CPU
efficiency of 2 workers; it leaves out the shared file system and the network, which were not measured.

    nice -n 19 python benchmarks/distributed_predict.py            # 8 scenes of 2048 px, about 10 min on 2 cores
    python benchmarks/distributed_predict.py --small --results /tmp/d.json   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import RESULTS, environment, markdown_table, write_json

CATALONIA_KM2 = 32_108
"""Area of Catalonia (seed 001: the whole country, twice a year)."""
ORTHO_GSD_M = 0.25
"""Ground sampling distance of the projection: 25 cm orthophotos."""


def write_scene(folder: Path, name: str, size: int, seed: int) -> Path:
    from landseg.data.synthetic import generate_scene
    from landseg.data.synthetic import write_scene as write_synthetic

    path = folder / f"{name}.tif"
    if not path.exists():
        write_synthetic(generate_scene(size, seed=seed), path, folder / "labels" / f"{name}.tif")
    return path


def raw_tile_seconds(models, tile: int, batch: int, tiles: int) -> float:
    """The worker's own network on in-memory tiles: seconds per tile (run as a Dask task)."""
    import torch

    from landseg.distributed.cluster import worker_ensemble
    from landseg.predict.ensemble import BandPlan

    ensemble = worker_ensemble(models)
    plan = BandPlan([1, 2, 3], [[0, 1, 2]] * len(ensemble.members))
    batch_pixels = np.random.default_rng(0).integers(0, 255, (batch, 3, tile, tile), dtype=np.uint8)
    ensemble.predict(batch_pixels, plan)  # warm-up
    done, started = 0, time.perf_counter()
    with torch.inference_mode():
        while done < tiles:
            ensemble.predict(batch_pixels, plan)
            done += batch
    return (time.perf_counter() - started) / done


def cpu_seconds() -> float:
    """This worker process's CPU time, all threads (run with ``Client.run``)."""
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def class_maps(out: Path, scenes: list[Path]) -> list[np.ndarray]:
    import rasterio

    maps = []
    for scene in scenes:
        with rasterio.open(out / f"{scene.stem}_classes.tif") as source:
            maps.append(source.read(1))
    return maps


def run_dask(scenes, checkpoint, out, options, engine, workers, threads, reference, raw_tiles) -> dict:
    from landseg.distributed.cluster import EnsembleSource, dask_client, register_ensemble
    from landseg.distributed.predict import run_predict_distributed

    models = EnsembleSource.of([checkpoint], engine=engine, tile=options.tile, threads=threads)
    started = time.perf_counter()
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        cluster_s = time.perf_counter() - started
        started = time.perf_counter()
        register_ensemble(client, models)  # the job finds the models loaded, as on a warm cluster
        load_s = time.perf_counter() - started
        cpu_before = client.run(cpu_seconds)
        started = time.perf_counter()
        summary = run_predict_distributed(
            scenes, [checkpoint], out, client, options, engine=engine, threads=threads, overwrite=True
        )
        job_s = time.perf_counter() - started
        cpu_after = client.run(cpu_seconds)
        worker_cpu_s = sum(cpu_after[w] - cpu_before[w] for w in cpu_after if w in cpu_before)
        raw = None
        if raw_tiles:
            raw = client.submit(
                raw_tile_seconds, models, options.tile, options.batch_size, raw_tiles, pure=False
            ).result()
    records = [json.loads(r.paths["record"].read_text()) for r in summary.done]
    tiles = sum(r["tiles_predicted"] for r in records)
    worker_s = sum(r["stages"]["predict"] for r in records)
    tail_s = sum(sum(v for k, v in r["stages"].items() if k != "predict") for r in records)
    maps = class_maps(out, scenes)
    differing = sum(int((a != b).sum()) for a, b in zip(maps, reference, strict=False))
    return {
        "workers": workers,
        "threads": threads,
        "cluster_start_s": round(cluster_s, 2),
        "model_load_s": round(load_s, 2),
        "job_s": round(job_s, 2),
        "worker_cpu_s": round(worker_cpu_s, 1),
        "cores_used": round(worker_cpu_s / job_s, 2),
        "load_average": os.getloadavg(),
        "tiles": tiles,
        "block_worker_s": round(worker_s, 2),
        "tail_worker_s": round(tail_s, 2),
        "engines": sorted({e for r in records for e in r["engines"]}),
        "raw_s_per_tile": None if raw is None else round(raw, 4),
        "pixels_differing_from_single": differing,
        "failed": len(summary.failed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="Smoke run (not a measurement).")
    parser.add_argument("--scenes", type=int, default=None, help="Scenes in the job (default 8; small: 2).")
    parser.add_argument("--size", type=int, default=None, help="Scene side in px (default 2048; small: 256).")
    parser.add_argument("--tile", type=int, default=None, help="Tile (default 512; small: 128).")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--engine", default="auto", help="auto (ONNX Runtime on CPU), torch or onnxruntime.")
    parser.add_argument("--repeats", type=int, default=None, help="Runs of each cluster shape (default 2; small 1).")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "landseg-bench-dask")
    parser.add_argument("--results", type=Path, default=None, help="JSON output (default benchmarks/results/...).")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from predict_speed import write_checkpoint

    from landseg.predict.engine import PredictOptions
    from landseg.predict.run import run_predict

    count, size = args.scenes or (2 if args.small else 8), args.size or (256 if args.small else 2048)
    tile, repeats = args.tile or (128 if args.small else 512), args.repeats or (1 if args.small else 2)
    results = args.results or RESULTS / ("distributed_predict_small.json" if args.small else "distributed_predict.json")
    env = environment(("torch", "numpy", "onnxruntime", "dask", "distributed", "rasterio"))
    checkpoint = write_checkpoint(args.work / "unet_lite0.ckpt")
    scenes = [write_scene(args.work / "scenes", f"scene_{i}", size, seed=i) for i in range(count)]
    options = PredictOptions(tile=tile, overlap=args.overlap)

    started = time.perf_counter()  # also exports and caches the ONNX model that every later run loads
    run_predict(scenes, [checkpoint], args.work / "single", options, engine=args.engine, overwrite=True)
    single_s = time.perf_counter() - started
    reference = class_maps(args.work / "single", scenes)
    print(f"single process: {single_s:.1f} s", file=sys.stderr)

    shapes = [(1, 1), (2, 1), (1, 2)]
    runs: dict[str, list[dict]] = {f"{w}x{t}": [] for w, t in shapes}
    for repeat in range(repeats):
        order = shapes if repeat % 2 == 0 else shapes[::-1]
        for workers, threads in order:
            raw_tiles = (8 if args.small else 32) if (workers, threads) == (1, 1) else 0
            run = run_dask(
                scenes,
                checkpoint,
                args.work / f"dask_{workers}x{threads}",
                options,
                args.engine,
                workers,
                threads,
                reference,
                raw_tiles,
            )
            runs[f"{workers}x{threads}"].append(run)
            print(f"dask {workers}x{threads}: {run}", file=sys.stderr)

    best = {shape: min(r["job_s"] for r in rs) for shape, rs in runs.items()}
    speedup = best["1x1"] / best["2x1"]
    one = runs["1x1"]
    tiles = one[0]["tiles"]
    worker_s_per_tile = statistics.median(r["block_worker_s"] for r in one) / tiles
    raw_s_per_tile = statistics.median(r["raw_s_per_tile"] for r in one)
    tail_s_per_mpx = statistics.median(r["tail_worker_s"] for r in one) / (count * size * size / 1e6)
    cpu_s_per_tile = statistics.median(r["worker_cpu_s"] for r in one) / tiles
    cpu_efficiency = statistics.median(r["worker_cpu_s"] for r in one) / statistics.median(
        r["worker_cpu_s"] for r in runs["2x1"]
    )
    stride = tile - round(tile * args.overlap)
    country_px = CATALONIA_KM2 * 1e6 / ORTHO_GSD_M**2
    country_tiles = country_px / stride**2
    core_hours = country_tiles * cpu_s_per_tile / 3600
    projection = {
        "area_km2": CATALONIA_KM2,
        "gsd_m": ORTHO_GSD_M,
        "pixels": country_px,
        "tiles": round(country_tiles),
        "cpu_core_hours": round(core_hours, 1),
        "wall_hours": {str(cores): round(core_hours / (cores * cpu_efficiency), 1) for cores in (64, 256, 1024)},
    }
    payload = {
        "environment": {**env, "load_average_end": os.getloadavg()},
        "config": {
            "scenes": count,
            "size": size,
            "tile": tile,
            "overlap": args.overlap,
            "engine": args.engine,
            "batch_size": options.batch_size,
            "block_width": options.block_width,
            "repeats": repeats,
        },
        "single_process_s": round(single_s, 2),
        "runs": runs,
        "best_job_s": best,
        "speedup_2_over_1_worker": round(speedup, 3),
        "per_worker_efficiency": round(speedup / 2, 3),
        "cpu_efficiency_2_workers": round(cpu_efficiency, 3),
        "cpu_s_per_tile": round(cpu_s_per_tile, 4),
        "worker_s_per_tile": round(worker_s_per_tile, 4),
        "raw_network_s_per_tile": raw_s_per_tile,
        "tail_worker_s_per_mpx": round(tail_s_per_mpx, 3),
        "projection": projection,
    }
    write_json(results, payload)
    rows = [["single process (model load included)", "-", "-", "-", f"{single_s:.1f}", "-", "-", "-", "-"]]
    for shape, rs in runs.items():
        workers, threads = shape.split("x")
        rows.append(
            [
                f"dask {workers} worker{'s' if workers != '1' else ''} x {threads} thread{'s' if threads != '1' else ''}",
                f"{statistics.median(r['cluster_start_s'] for r in rs):.1f}",
                f"{statistics.median(r['model_load_s'] for r in rs):.1f}",
                " / ".join(f"{r['job_s']:.1f}" for r in rs),
                f"{best[shape]:.1f}",
                f"{best['1x1'] / best[shape]:.2f}",
                " / ".join(f"{r['worker_cpu_s']:.0f}" for r in rs),
                " / ".join(f"{r['cores_used']:.2f}" for r in rs),
                str(max(r["pixels_differing_from_single"] for r in rs)),
            ]
        )
    print(
        markdown_table(
            [
                "run",
                "cluster start s",
                "model load s",
                "job s (each run)",
                "best job s",
                "speed-up over 1x1",
                "workers' CPU s (each run)",
                "cores the workers got (each run)",
                "class pixels differing from single",
            ],
            rows,
            [False] + [True] * 8,
        )
    )
    print(
        f"\nper-worker efficiency (2 workers, wall): {speedup / 2:.2f}; CPU efficiency {cpu_efficiency:.2f}; "
        f"{cpu_s_per_tile:.3f} CPU-s per tile in all; {worker_s_per_tile:.3f} worker-s per tile in blocks "
        f"(network alone {raw_s_per_tile:.3f} s); tail {tail_s_per_mpx:.3f} worker-s per Mpx"
    )
    print(f"projection: {json.dumps(projection)}")
    print(f"results: {results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
