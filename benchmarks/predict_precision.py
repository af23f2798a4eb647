"""Does the torch engine's bf16 path give the class maps of fp32 on real images?

``landseg predict``'s bf16 path (``--engine torch --precision bf16``: bfloat16 autocast, channels-last)
becomes the default only where its argmax agrees with fp32 on at least 99.5 % of the pixels of real
images. This script predicts each image of a folder (default: the Dubai tile-4 images) with a trained
model (a checkpoint or ``zoo:NAME``) through ``predict_scene`` with predict's default options, once in fp32
and once in bf16, and counts the pixels whose class is the same, image by image and in all.

    python benchmarks/predict_precision.py --checkpoint runs/dubai/checkpoints/best.ckpt
    # writes benchmarks/results/predict_precision.json

The threshold holds per architecture, so each one is measured on its own trained network and images;
``--label`` keeps every measurement under its name in one file (default ``predict_precision_architectures.json``):

    python benchmarks/predict_precision.py --checkpoint zoo:dynamic-world --label dynamic_world \
        --images "../shared/datasets/samples/sen12ms/*_s2_*.tif"
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

from common import DATASETS, RESULTS, environment, markdown_table, write_json

THRESHOLD = 0.995


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="A trained landseg checkpoint, or zoo:NAME.")
    parser.add_argument("--images", default=str(DATASETS / "dubai" / "tile_4" / "images" / "*.jpg"))
    parser.add_argument("--limit", type=int, default=None, help="Only the first N images.")
    parser.add_argument(
        "--label",
        default=None,
        help="Store the result under this name in --results, beside those of other architectures.",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSON output (default predict_precision.json, or predict_precision_architectures.json with --label).",
    )
    args = parser.parse_args(argv)
    results = args.results or RESULTS / (
        "predict_precision_architectures.json" if args.label else "predict_precision.json"
    )
    import numpy as np
    import rasterio
    import torch

    from landseg.predict.engine import PredictOptions, predict_scene
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.models import read_card
    from landseg.train.precision import cpu_bf16_support

    images = sorted(glob.glob(args.images))[: args.limit]
    if not images:
        parser.error(f"no images match {args.images}")
    env = environment(("torch", "segmentation-models-pytorch", "timm"))
    card = read_card(args.checkpoint)
    engines = {name: load_ensemble([args.checkpoint], engine="torch", precision=name) for name in ("fp32", "bf16")}
    # The two precisions' maps are compared pixel for pixel: no cloud mask, which would differ between them too.
    options = PredictOptions(preview=False, areas=False, cloud_mask="none")
    rows, same_total, valid_total, seconds = [], 0, 0, dict.fromkeys(engines, 0.0)
    with tempfile.TemporaryDirectory() as scratch:
        for number, image in enumerate(images):
            maps = {}
            for name, ensemble in engines.items():
                started = time.perf_counter()
                result = predict_scene(image, ensemble, Path(scratch) / f"{name}_{number}", options)
                seconds[name] += time.perf_counter() - started
                with rasterio.open(result.paths["classes"]) as src:
                    maps[name] = src.read(1)
                    nodata = src.nodata
            valid = maps["fp32"] != nodata if nodata is not None else np.ones_like(maps["fp32"], dtype=bool)
            same = int((maps["bf16"] == maps["fp32"])[valid].sum())
            rows.append(
                {
                    "image": Path(image).name,
                    "pixels": int(valid.sum()),
                    "same": same,
                    "agreement": round(same / max(int(valid.sum()), 1), 5),
                }
            )
            same_total, valid_total = same_total + same, valid_total + int(valid.sum())
            print(f"{Path(image).name}: {rows[-1]['agreement']:.4%}", file=sys.stderr)
    agreement = same_total / valid_total
    payload = {
        "benchmark": "bf16 against fp32 class maps (torch engine)",
        "command": "python benchmarks/predict_precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": str(args.checkpoint),
        "architecture": card.model,
        "trained": card.training,
        "tile": card.tile_size,
        "options": "predict defaults (overlap, Hann blend, batch)",
        "images": rows,
        "pixels": valid_total,
        "agreement": round(agreement, 6),
        "threshold": THRESHOLD,
        "bf16_default": agreement >= THRESHOLD,
        "cpu_bf16": cpu_bf16_support(),
        "threads": torch.get_num_threads(),
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "environment": {**env, "load_average_end": environment(())["load_average"]},
    }
    if args.label:
        everything = json.loads(results.read_text()) if results.exists() else {"architectures": {}}
        everything["architectures"][args.label] = payload
        write_json(results, everything)
    else:
        write_json(results, payload)
    print(
        markdown_table(
            ["image", "pixels", "agreement"],
            [[r["image"], f"{r['pixels']:,}", f"{r['agreement']:.4%}"] for r in rows]
            + [["all", f"{valid_total:,}", f"**{agreement:.4%}**"]],
            [False, True, True],
        )
    )
    print(
        f"\nbf16 agrees with fp32 on {agreement:.3%} of {valid_total:,} pixels (threshold {THRESHOLD:.1%}): "
        f"{'bf16 can be the default' if agreement >= THRESHOLD else 'fp32 stays the default'}; time fp32 "
        f"{seconds['fp32']:.0f} s, bf16 {seconds['bf16']:.0f} s (noisy: shared machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
