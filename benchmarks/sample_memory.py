"""Benchmark: ``landseg sample`` on large generated maps, its time and peak memory, flat in map size.

Each map is a uint8 class COG-like GeoTIFF (tiled, deflate) on an equal-area 10 m grid, written strip by
strip: five classes in bands with a rare class and a no-data border, so the two passes of the sampler
(count the strata, then draw) see realistic blocks. Each size is sampled in its own child process (500
points, Olofsson allocation, seed 0) so that its peak RSS (``VmHWM``) is its own; the child also checks
that no point fell on no-data and that the strata's pixel counts are exact.

    python benchmarks/sample_memory.py                      # 4096² and 16384² (the second: minutes, 256 MB map)
    python benchmarks/sample_memory.py --sizes 4096 --results /tmp/s.json   # a quick check
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

STRIP = 512
NODATA = 255


def map_class(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Classes in diagonal bands, a rare class in small squares, no-data in a border of n/64 px."""
    classes = ((rows + cols) * 4 // (2 * n)).astype(np.uint8)
    rare = ((rows // 64) % 16 == 3) & ((cols // 64) % 16 == 5)
    classes = np.where(rare, 4, classes).astype(np.uint8)
    border = n // 64
    outside = (rows < border) | (rows >= n - border) | (cols < border) | (cols >= n - border)
    return np.where(outside, NODATA, classes).astype(np.uint8)


def write_map(folder: Path, n: int) -> tuple[Path, dict[int, int]]:
    import rasterio
    from rasterio.transform import from_origin

    path = folder / f"map_{n}.tif"
    profile = dict(
        driver="GTiff",
        width=n,
        height=n,
        count=1,
        dtype="uint8",
        nodata=NODATA,
        crs="EPSG:6933",
        transform=from_origin(0.0, 5_000_000.0, 10.0, 10.0),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )
    counts: dict[int, int] = {}
    cols = np.arange(n)[None, :]
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, n, STRIP):
            rows = np.arange(top, min(top + STRIP, n))[:, None]
            block = map_class(rows, cols, n)
            dst.write(block, 1, window=((top, top + len(rows)), (0, n)))
            values, found = np.unique(block[block != NODATA], return_counts=True)
            for v, c in zip(values.tolist(), found.tolist(), strict=True):
                counts[v] = counts.get(v, 0) + c
    return path, counts


def measure(map_path: str, out: str) -> dict:
    """In the child process: the whole sample, timed, with peak RSS."""
    import rasterio
    from rasterio.windows import Window

    from landseg.assess.sample import SampleOptions, draw_sample

    imports_rss = peak_rss_mb()
    started = time.perf_counter()
    result = draw_sample(map_path, Path(out), SampleOptions(size=500, seed=0))
    seconds = time.perf_counter() - started
    with rasterio.open(map_path) as source:
        on_nodata = sum(
            int(source.read(1, window=Window(int(c), int(r), 1, 1))[0, 0] == NODATA)
            for r, c in zip(result.points.rows, result.points.cols, strict=True)
        )
    return {
        "seconds": round(seconds, 2),
        "points": len(result.points),
        "points_on_nodata": on_nodata,
        "strata_pixels": {str(s.value): s.pixels for s in result.design.strata},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_imports_mb": round(imports_rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--results", type=Path, default=RESULTS / "sample_memory.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="sample_memory_") as work:
        folder = Path(work)
        for n in args.sizes:
            mark = time.perf_counter()
            map_path, known = write_map(folder, n)
            generated = time.perf_counter() - mark
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(map_path), str(folder / f"points_{n}.gpkg")],
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            counted = {int(k): v for k, v in measured.pop("strata_pixels").items()}
            row = {
                "size": n,
                "map_megabytes_uncompressed": round(n * n / 1e6, 1),
                "generate_seconds": round(generated, 1),
                **measured,
                "strata_counts_exact": counted == known,
                "megapixels_per_second": round(n * n / 1e6 / measured["seconds"], 1),
            }
            print(json.dumps(row))
            runs.append(row)
            map_path.unlink()
    write_json(
        args.results,
        {
            "benchmark": "sample_memory",
            "environment": environment(("numpy", "rasterio")),
            "note": "2-core machine shared with other jobs; times are upper bounds",
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
