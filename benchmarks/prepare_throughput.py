"""Benchmark 5: data preparation throughput and memory (see ../shared/BENCHMARKS.md).

A synthetic 10-band uint16 GeoTIFF of N x N pixels and a label raster at 10x finer resolution
(10N x 10N, tiled and deflate-compressed, blocky parcels that do not line up with the image grid, with
no-data patches) are generated once into a work folder. Then, each stage in a fresh process so its peak
RSS is its own:

- ``align_mode`` / ``align_nearest``: ``landseg.data.prepare.align_labels`` onto the image grid;
- ``tile``: ``landseg.data.prepare.tile`` cutting 300 px chips (GeoTIFF, deflate) from the image and
  the mode-aligned labels, with the default filters.

MB/s is uncompressed input read per second of wall time (label pixels for align; image and aligned
label pixels for tile). Peak RSS is the stage process's ``ru_maxrss``. Scene sizes run in one go so RSS
can be compared across them: bounded memory means it does not grow with the scene.

    nice -n 19 python benchmarks/prepare_throughput.py                  # 4096 and 8192 px, full run
    python benchmarks/prepare_throughput.py --small --results /tmp/x.json  # smoke run, seconds
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
from common import RESULTS, peak_rss_mb, write_json
from common import environment as common_environment

CHIP = 300
BANDS = 10
FACTOR = 10
CELL = 67
"""Parcel size in label pixels: not a multiple of FACTOR, so majority votes see mixed blocks."""
NODATA_LABEL = 255


# -- inputs ----------------------------------------------------------------------------------------
def write_inputs(folder: Path, size: int, seed: int = 0) -> dict:
    """The image and label rasters for one size, streamed strip by strip; reused when present."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    image_path, label_path = folder / f"image_{size}.tif", folder / f"label_{size * FACTOR}.tif"
    origin, pixel = (300000.0, 4000000.0), 10.0
    env = rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=256)
    started = time.perf_counter()
    with env:
        if not image_path.exists():
            _write_image(image_path, size, from_origin(*origin, pixel, pixel), seed)
        if not label_path.exists():
            _write_label(label_path, size * FACTOR, from_origin(*origin, pixel / FACTOR, pixel / FACTOR), seed)
    return {
        "image": str(image_path),
        "label": str(label_path),
        "generate_s": round(time.perf_counter() - started, 1),
        "image_file_mb": image_path.stat().st_size / 2**20,
        "label_file_mb": label_path.stat().st_size / 2**20,
    }


def _strips(height: int, rows: int):
    for top in range(0, height, rows):
        yield top, min(rows, height - top)


def _write_image(path: Path, size: int, transform, seed: int) -> None:
    import rasterio
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    levels = rng.integers(200, 4000, (BANDS, size // 64 + 1, size // 64 + 1)).astype(np.uint16)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=BANDS,
        dtype="uint16",
        crs="EPSG:32652",
        transform=transform,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        predictor=2,
        interleave="pixel",
    )
    temporary = path.with_name(f".{path.stem}.partial.tif")
    with rasterio.open(temporary, "w", **profile) as dst:
        for top, rows in _strips(size, 512):
            cells = levels[:, top // 64 : (top + rows - 1) // 64 + 1]
            block = np.repeat(np.repeat(cells, 64, axis=1), 64, axis=2)[:, top % 64 : top % 64 + rows, :size]
            noise = rng.integers(0, 64, block.shape, dtype=np.uint16)
            dst.write(block + noise, window=Window(0, top, size, rows))
        dst.descriptions = tuple(f"B{i + 1}" for i in range(BANDS))
    os.replace(temporary, path)


def _write_label(path: Path, size: int, transform, seed: int) -> None:
    import rasterio
    from rasterio.windows import Window

    rng = np.random.default_rng(seed + 1)
    cells = rng.choice(
        np.array([0, 1, 2, 3, 4, NODATA_LABEL], dtype=np.uint8),
        p=[0.4, 0.25, 0.15, 0.08, 0.07, 0.05],
        size=(size // CELL + 1, size // CELL + 1),
    )
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="uint8",
        crs="EPSG:32652",
        transform=transform,
        nodata=NODATA_LABEL,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )
    temporary = path.with_name(f".{path.stem}.partial.tif")
    rows_per_strip = 2048
    with rasterio.open(temporary, "w", **profile) as dst:
        for top, rows in _strips(size, rows_per_strip):
            first, last = top // CELL, (top + rows - 1) // CELL
            strip = np.repeat(np.repeat(cells[first : last + 1], CELL, axis=0), CELL, axis=1)
            offset = top - first * CELL
            dst.write(strip[offset : offset + rows, :size], 1, window=Window(0, top, size, rows))
    os.replace(temporary, path)


# -- stages (each in its own process) ---------------------------------------------------------------
def run_stage(stage: str, inputs: dict, work: Path) -> dict:
    """Run ``stage`` in a child process; its wall time, bytes read and peak RSS."""
    command = [sys.executable, __file__, "--stage", stage, "--inputs", json.dumps(inputs), "--work", str(work)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def stage_main(stage: str, inputs: dict, work: Path) -> dict:
    import rasterio

    from landseg.classes import get_schema
    from landseg.data.prepare import align_labels, parse_prepare_config, tile
    from landseg.data.prepare.run import GDAL_CACHE_MB

    size = int(inputs["size"])
    started = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        if stage.startswith("align_"):
            method = stage.removeprefix("align_")
            result = align_labels(
                inputs["image"],
                inputs["label"],
                work / f"aligned_{method}_{size}.tif",
                get_schema("synthetic"),
                method=method,
            )
            read_bytes, detail = result.source_bytes, {"windows": result.windows}
        else:
            config = parse_prepare_config(
                {
                    "out": str(work / f"chips_{size}"),
                    "schema": "synthetic",
                    "input": {"scenes": [{"image": inputs["image"], "label": str(work / f"aligned_mode_{size}.tif")}]},
                    "tiling": {"size": CHIP},
                }
            )
            result = tile(config, overwrite=True)
            read_bytes = size * size * (BANDS * 2 + 1)
            detail = {"chips": result.report.candidates, "kept": result.report.kept}
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    return {
        "stage": stage,
        "size": size,
        "wall_s": round(seconds, 2),
        "input_mb": round(read_bytes / 2**20, 1),
        "mb_per_s": round(read_bytes / 2**20 / seconds, 1),
        "peak_rss_mb": round(peak, 1),
        **detail,
    }


# -- report ------------------------------------------------------------------------------------------
def environment() -> dict:
    """``common.environment`` (without importing torch: it would add its memory to every stage forked
    after it) and the GDAL stack."""
    import rasterio

    return {
        **common_environment(("numpy", "torch")),
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| scene (image px) | stage | input MB (uncompressed) | wall s | MB/s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']}² ({r['size'] * FACTOR}² labels) | {r['stage']} | {r['input_mb']:,.0f} | "
            f"{r['wall_s']:.1f} | {r['mb_per_s']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="Smoke run on tiny scenes (not a measurement).")
    parser.add_argument("--sizes", default=None, help="Comma-separated image sizes (default 4096,8192; small 128,256).")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "landseg-bench-prepare")
    parser.add_argument("--results", type=Path, default=None, help="JSON output (default benchmarks/results/...).")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(stage_main(args.stage, json.loads(args.inputs), args.work)))
        return 0
    sizes = [int(s) for s in (args.sizes or ("128,256" if args.small else "4096,8192")).split(",")]
    results = args.results or RESULTS / ("prepare_throughput_small.json" if args.small else "prepare_throughput.json")
    env, rows, inputs_by_size = environment(), [], {}
    for size in sizes:
        inputs = write_inputs(args.work, size)
        inputs_by_size[size] = inputs
        print(
            f"inputs {size}²: generated in {inputs['generate_s']} s (0 = reused), image file "
            f"{inputs['image_file_mb']:.0f} MB, label file {inputs['label_file_mb']:.0f} MB",
            file=sys.stderr,
        )
        for stage in ("align_mode", "align_nearest", "tile"):
            rows.append(run_stage(stage, {**inputs, "size": size}, args.work))
            print(f"  {stage}: {rows[-1]}", file=sys.stderr)
    biggest = [r for r in rows if r["size"] == max(sizes)]
    smallest = [r for r in rows if r["size"] == min(sizes)]
    rss_growth = max(b["peak_rss_mb"] / s["peak_rss_mb"] for b, s in zip(biggest, smallest, strict=False))
    payload = {
        "benchmark": "5. Data preparation throughput",
        "small": args.small,
        "command": "python benchmarks/prepare_throughput.py" + (" --small" if args.small else ""),
        "config": {
            "sizes": sizes,
            "bands": BANDS,
            "dtype": "uint16",
            "label_factor": FACTOR,
            "chip": CHIP,
            "label_parcel_px": CELL,
            "compression": "deflate",
            "gdal_cache_mb": 256,
        },
        "environment": env,
        "inputs": {str(k): v for k, v in inputs_by_size.items()},
        "stages": rows,
        "rss_growth_largest_over_smallest": round(rss_growth, 3),
        "label_in_memory_mb_largest": round((max(sizes) * FACTOR) ** 2 / 2**20, 1),
    }
    write_json(results, payload)
    print(table(rows))
    print(
        f"\npeak RSS, largest over smallest scene: {rss_growth:.2f}x; the largest label raster alone is "
        f"{payload['label_in_memory_mb_largest']:,.0f} MB uncompressed. "
        f"CPU: {env['cpu']} ({env['cpu_count']} cores), "
        f"GDAL {env['gdal']}, commit {env['git_commit'][:10]}{' (dirty)' if env['git_dirty'] else ''}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
