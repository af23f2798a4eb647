"""Benchmark: ``landseg change`` on two synthetic class maps of N x N pixels, the second on another grid.

BEFORE is N x N pixels of 10 m in UTM 32N: parcels of 64 x 64 px whose class (0-4, the synthetic
schema) is a hash of the parcel. AFTER is the same landscape with one parcel in seven moved to the next
class, on a 20 m grid whose origin is shifted by N/8 px south-east, so it covers only part of BEFORE
and is warped (nearest neighbour) onto BEFORE's grid. Parcels are whole 20 m pixels and every 10 m
pixel centre lies strictly inside one 20 m pixel, so the warped AFTER is exact and the matrix is known:
it is computed here from the parcel functions, without landseg, and compared cell by cell.

Each size runs ``compare_maps`` (matrix, change COG, polygons, pictures, report) in a fresh process so
its peak RSS (``VmHWM``) is its own. Results: ``benchmarks/results/change_speed.json``.

    nice -n 19 python benchmarks/change_speed.py --sizes 4096 8192     # a few minutes on 2 cores
    python benchmarks/change_speed.py --sizes 512 --results /tmp/c.json  # smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, environment, peak_rss_mb, write_json

CLASSES = 5
PARCEL = 64
ORIGIN = (600_000.0, 5_200_000.0)
STRIP = 1024


def parcel_class(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Class of the 10 m pixel (rows, cols) of BEFORE's grid (any integers, also outside it)."""
    r, c = rows // PARCEL, cols // PARCEL
    return ((r * 7919 + c * 104729 + (r * c) % 13) % CLASSES).astype(np.uint8)


def changed(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    r, c = rows // PARCEL, cols // PARCEL
    return (r * 31 + c * 17) % 7 == 0


def after_class(rows, cols):
    base = parcel_class(rows, cols)
    return np.where(changed(rows, cols), (base + 1) % CLASSES, base).astype(np.uint8)


def write_inputs(folder: Path, n: int) -> tuple[Path, Path, np.ndarray]:
    """Both maps, strip by strip, and the known matrix of their overlap."""
    import rasterio
    from affine import Affine

    shift = n // 8  # AFTER starts this many BEFORE pixels right of and below BEFORE's origin
    before_grid = Affine(10.0, 0, ORIGIN[0], 0, -10.0, ORIGIN[1])
    after_grid = Affine(20.0, 0, ORIGIN[0] + 10.0 * shift, 0, -20.0, ORIGIN[1] - 10.0 * shift)
    profile = dict(
        driver="GTiff",
        count=1,
        dtype="uint8",
        nodata=255,
        crs="EPSG:32632",
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )
    tags = {
        "landseg_schema": json.dumps(
            {
                "name": "synthetic",
                "classes": [
                    {"name": n_, "color": c}
                    for n_, c in zip(
                        ("Field", "Forest", "Water", "Road", "Building"),
                        ("#E6C84F", "#1A7A2E", "#1F77B4", "#555555", "#D62728"),
                        strict=False,
                    )
                ],
            }
        )
    }
    known = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    before_path, after_path = folder / f"before_{n}.tif", folder / f"after_{n}.tif"
    cols = np.arange(n)
    with rasterio.open(before_path, "w", width=n, height=n, transform=before_grid, **profile) as dst:
        dst.update_tags(**tags)
        for top in range(0, n, STRIP):
            rows = np.arange(top, min(top + STRIP, n))[:, None]
            block = parcel_class(rows, cols[None])
            dst.write(block, 1, window=((top, top + len(rows)), (0, n)))
            inside = (rows >= shift) & (cols[None] >= shift) & np.ones_like(block, bool)
            codes = block.astype(np.int64) * CLASSES + after_class(rows, cols[None])
            known += np.bincount(codes[inside], minlength=CLASSES * CLASSES).reshape(CLASSES, CLASSES)
    m = n // 2  # AFTER: N/2 x N/2 pixels of 20 m; the part beyond BEFORE lies outside the overlap
    coarse_cols = np.arange(m)
    with rasterio.open(after_path, "w", width=m, height=m, transform=after_grid, **profile) as dst:
        dst.update_tags(**tags)
        for top in range(0, m, STRIP):
            rows = np.arange(top, min(top + STRIP, m))[:, None]
            # a 20 m pixel holds the 10 m pixels (shift + 2 row, shift + 2 col) and their neighbours
            dst.write(
                after_class(shift + 2 * rows, shift + 2 * coarse_cols[None]), 1, window=((top, top + len(rows)), (0, m))
            )
    return before_path, after_path, known


def measure(before: str, after: str, out: str) -> dict:
    """In the child process: the whole comparison, timed, with peak RSS."""
    from rich.console import Console

    import landseg.change.report  # noqa: F401 - the pictures' imports (matplotlib, and torch through report)
    from landseg.change.run import ChangeOptions, compare_maps

    imports_rss = peak_rss_mb()
    started = time.perf_counter()
    result = compare_maps(before, after, out, options=ChangeOptions(polygons="gpkg"), console=Console(quiet=True))
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "stages": {k: round(v, 2) for k, v in result.stages.items()},
        "pixels": result.summary["pixels"],
        "compared_pixels": result.summary["compared_pixels"],
        "changed_pixels": result.summary["changed_pixels"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_imports_mb": round(imports_rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--results", type=Path, default=RESULTS / "change_speed.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="change_speed_") as work:
        for n in args.sizes:
            folder = Path(work)
            mark = time.perf_counter()
            before, after, known = write_inputs(folder, n)
            generated = time.perf_counter() - mark
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(before), str(after), str(folder / f"out_{n}")],
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            got = np.array(measured.pop("pixels"))
            row = {
                "size": n,
                "after_grid": "20 m, shifted N/8 px (warped)",
                "generate_seconds": round(generated, 1),
                **measured,
                "megapixels_per_second": round(measured["compared_pixels"] / 1e6 / measured["seconds"], 2),
                "matrix_equals_known": bool((got == known).all()),
                "matrix_abs_difference": int(np.abs(got - known).sum()),
            }
            print(json.dumps(row))
            runs.append(row)
            for path in (before, after):
                path.unlink()
    write_json(
        args.results,
        {
            "benchmark": "change_speed",
            "environment": environment(("numpy", "rasterio")),
            "note": "2-core machine shared with other jobs; times are upper bounds",
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
