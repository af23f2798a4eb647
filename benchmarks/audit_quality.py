"""Benchmark 8: how well ``landseg audit`` finds label noise injected at known places.

Synthetic scenes (``landseg.data.synthetic``) with one kind of noise each (``landseg.audit.noise``):
relabelled blobs (about 5 % of the labelled pixels), Buildings painted as Field (half of the building
regions), and the whole label layer shifted by 3 px. Half the scenes (noisy too, all kinds mixed) train
one model with the demo's recipe for a few CPU minutes; the audit (``--checkpoint``, the model did not
see them) covers the other half, and each kind of noise is scored on its own scenes:

- pixels: precision and recall of the pixels in the reported regions (and of cleanlab's raw flags,
  before the minimum region size) against the changed pixels;
- regions: a reported region is right when at least half its pixels changed; an injected region (a
  4-connected area of changed pixels of at least ``min_region`` px) is found when at least half its
  pixels are in reported regions;
- baseline: "the prediction disagrees with the label", with the same probabilities and the same
  minimum region size (and raw, pixel by pixel).

    python benchmarks/audit_quality.py                            # about 10 minutes on a 2-core CPU
    python benchmarks/audit_quality.py --smoke --out /tmp/a.json  # plumbing check, not a measurement
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, environment, format_number, markdown_table, write_json

KINDS = ("blobs", "class_painted", "shifted")


def make_data(root: Path, scenes_per_kind: int, size: int, seed: int) -> dict[str, dict]:
    """Twice ``scenes_per_kind`` scenes per kind with their noisy masks written in place; the changed pixels
    and the kind per image key (scenes 0, 2, 4... train, 1, 3, 5... are audited)."""
    import rasterio

    from landseg.audit.noise import paint_class_as, relabel_blobs, shift_boundaries
    from landseg.data.synthetic import BUILDING, FIELD, SCHEMA, make_synthetic_dataset

    make_synthetic_dataset(root, n_scenes=2 * scenes_per_kind * len(KINDS), size=size, seed=seed)
    rng = np.random.default_rng(seed + 1)
    truth: dict[str, dict] = {}
    for i, mask_path in enumerate(sorted((root / "masks").glob("scene_*.tif"))):
        kind = KINDS[(i // 2) % len(KINDS)]
        with rasterio.open(mask_path, "r+") as dataset:
            mask = dataset.read(1)
            if kind == "blobs":
                noisy, changed = relabel_blobs(mask, rng, 0.05, SCHEMA.num_classes, radius=(6, 12))
            elif kind == "class_painted":
                noisy, changed = paint_class_as(mask, rng, BUILDING, FIELD, share=0.5)
            else:
                noisy, changed = shift_boundaries(mask, (3, 3))
            dataset.write(noisy, 1)
        truth[f"images/{mask_path.name}"] = {"kind": kind, "changed": changed}
    return truth


def config_dict(root: Path, seed: int, smoke: bool, scenes: int) -> dict:
    model = (
        {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": [8, 16, 32]}
        if smoke
        else {
            "arch": "unet",
            "encoder": "tu-tf_efficientnet_lite0",
            "encoder_weights": "offline",
            "extra": {"decoder_channels": [128, 64, 32, 16, 16]},
        }
    )
    return {
        "name": "audit-benchmark",
        "data": {
            "root": str(root),
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "masks": "masks/scene_{id}.tif",
            "split": {
                "field": "id",
                "train": [f"{i:03d}" for i in range(0, scenes, 2)],
                "val": [f"{i:03d}" for i in range(1, scenes, 2)],
            },
        },
        "model": model,
        "train": {
            "crop_size": 128 if smoke else 192,
            "batch_size": 8,
            "epochs": 1 if smoke else 1000,
            "steps_per_epoch": 4 if smoke else 25,
            "optimizer": {"name": "adamw", "lr": 2e-3},
            "scheduler": {"name": "cosine"},
            "seed": seed,
            "val_tile": 256,
            "precision": "32-true",
            "onnx_export": False,
        },
    }


def pixel_scores(flagged: np.ndarray, changed: np.ndarray) -> dict:
    hits = int((flagged & changed).sum())
    return {
        "precision": hits / flagged.sum() if flagged.sum() else None,
        "recall": hits / changed.sum() if changed.sum() else None,
        "flagged_pixels": int(flagged.sum()),
        "changed_pixels": int(changed.sum()),
    }


def region_scores(reported: np.ndarray, changed: np.ndarray, min_region: int) -> dict:
    """``reported``: region numbers (0 = none); injected regions are the changed areas of ``min_region`` px."""
    from landseg.audit.regions import label_regions

    right = sum(1 for n in range(1, int(reported.max(initial=0)) + 1) if changed[reported == n].mean() >= 0.5)
    injected = label_regions(changed, min_region)
    found = sum(1 for n in range(1, int(injected.max(initial=0)) + 1) if (reported[injected == n] > 0).mean() >= 0.5)
    count, total = int(reported.max(initial=0)), int(injected.max(initial=0))
    return {
        "precision": right / count if count else None,
        "recall": found / total if total else None,
        "reported": count,
        "injected": total,
    }


def merge(scores: list[dict], kind: str) -> dict:
    """Pooled precision and recall over images (pixel or region counts summed)."""
    if kind == "pixels":
        flagged = sum(s["flagged_pixels"] for s in scores)
        changed = sum(s["changed_pixels"] for s in scores)
        hits_p = sum((s["precision"] or 0) * s["flagged_pixels"] for s in scores)
        return {
            "precision": hits_p / flagged if flagged else None,
            "recall": hits_p / changed if changed else None,
            "flagged_pixels": flagged,
            "changed_pixels": changed,
        }
    reported = sum(s["reported"] for s in scores)
    injected = sum(s["injected"] for s in scores)
    right = sum((s["precision"] or 0) * s["reported"] for s in scores)
    found = sum((s["recall"] or 0) * s["injected"] for s in scores)
    return {
        "precision": right / reported if reported else None,
        "recall": found / injected if injected else None,
        "reported": reported,
        "injected": injected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes-per-kind", type=int, default=3, help="audited scenes per kind (as many train)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--minutes", type=float, default=7.0, help="training time of the model")
    parser.add_argument("--min-region", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny data and model, seconds of training")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default results/audit_quality.json)")
    args = parser.parse_args()
    if args.smoke:
        args.scenes_per_kind, args.size, args.minutes = 1, 96, 0.1

    import shapely
    from affine import Affine
    from rasterio import features

    from landseg.audit import audit
    from landseg.audit.issues import IssueFinder
    from landseg.audit.probabilities import cache_probabilities
    from landseg.audit.regions import label_regions
    from landseg.classes import IGNORE_INDEX, get_schema
    from landseg.config import parse_config
    from landseg.data.catalog import build_catalog
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.options import PredictOptions
    from landseg.train.run import train

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="audit_quality_") as folder:
        work = Path(folder)
        truth = make_data(work / "data", args.scenes_per_kind, args.size, args.seed)
        scenes = 2 * args.scenes_per_kind * len(KINDS)
        config = parse_config(config_dict(work / "data", args.seed, args.smoke, scenes))
        # Validation images would be the audited ones: the model trains without validation, its last weights.
        training_config = config.model_copy(deep=True)
        training_config.data.split.val = None
        trained = train(training_config, work / "run", max_minutes=args.minutes, progress=False)
        train_seconds = time.monotonic() - started
        result = audit(
            config,
            work / "audit",
            split="val",
            checkpoints=[trained.last_checkpoint],
            min_region=args.min_region,
            engine="torch",
            progress=False,
        )
        audit_seconds = time.monotonic() - started - train_seconds

        # The reported regions, back on each image's pixel grid.
        with open(result.regions_csv, newline="") as handle:
            rows = list(csv.DictReader(handle))
        # The probabilities again (the audit does not keep them), for cleanlab's raw flags and the baseline.
        schema = get_schema("synthetic")
        samples = build_catalog(config.data).split("val")
        cached = cache_probabilities(
            config,
            schema,
            samples,
            [s.name for s in samples],
            load_ensemble([trained.last_checkpoint], engine="torch"),
            "model",
            work / "scratch",
            PredictOptions(),
            progress=False,
        )
        finder = IssueFinder(schema.num_classes)
        for image in cached:
            finder.learn(image.labels(), image.probabilities())
        for image in cached:
            finder.count(image.labels(), image.probabilities())
        scores: dict[str, dict[str, list]] = {k: {} for k in KINDS}
        for image in cached:
            labels = image.labels()
            changed = truth[image.key]["changed"] & (labels != IGNORE_INDEX)
            kind = truth[image.key]["kind"]
            polygons = [shapely.from_wkt(r["pixel_wkt"]) for r in rows if r["image"] == image.key]
            reported = np.zeros(labels.shape, dtype=np.int32)
            for number, polygon in enumerate(polygons, start=1):
                inside = features.geometry_mask([polygon], labels.shape, Affine.identity(), invert=True)
                reported[inside] = number
            issues = finder.flag(labels, image.probabilities())
            disagree = (issues.likely != labels) & (labels != IGNORE_INDEX)
            baseline_regions = label_regions(disagree, args.min_region)
            per_image = {
                "audit_pixels": pixel_scores(reported > 0, changed),
                "cleanlab_raw_pixels": pixel_scores(issues.flagged, changed),
                "baseline_pixels": pixel_scores(baseline_regions > 0, changed),
                "baseline_raw_pixels": pixel_scores(disagree, changed),
                "audit_regions": region_scores(reported, changed, args.min_region),
                "baseline_regions": region_scores(baseline_regions, changed, args.min_region),
            }
            for name, value in per_image.items():
                scores[kind].setdefault(name, []).append(value)
    results = {
        kind: {
            name: merge(values, "regions" if name.endswith("regions") else "pixels") for name, values in by_name.items()
        }
        for kind, by_name in scores.items()
    }
    blobs = results["blobs"]["audit_pixels"]
    target = {
        "blob_precision_at_least": 0.8,
        "blob_recall_at_least": 0.5,
        "met": bool(
            blobs["precision"] is not None
            and blobs["precision"] >= 0.8
            and blobs["recall"] >= 0.5
            and blobs["precision"] > (results["blobs"]["baseline_pixels"]["precision"] or 0)
        ),
    }
    table_rows = []
    for kind in KINDS:
        for name in (
            "audit_pixels",
            "cleanlab_raw_pixels",
            "baseline_pixels",
            "baseline_raw_pixels",
            "audit_regions",
            "baseline_regions",
        ):
            s = results[kind][name]
            table_rows.append([kind, name, format_number(s["precision"]), format_number(s["recall"])])
    payload = {
        "benchmark": "audit_quality",
        "smoke": args.smoke,
        "settings": {
            "audited_scenes_per_kind": args.scenes_per_kind,
            "training_scenes": scenes // 2,
            "size": args.size,
            "train_minutes": args.minutes,
            "min_region": args.min_region,
            "seed": args.seed,
            "probabilities": "one model trained on the other scenes (--checkpoint)",
            "noise": {
                "blobs": "5 % of labelled pixels, discs of radius 6-12 px",
                "class_painted": "half of the Building regions labelled Field",
                "shifted": "labels shifted 3 px down and right",
            },
        },
        "results": results,
        "target": target,
        "audit_summary": {
            k: result.summary[k]
            for k in (
                "flagged_pixels",
                "labelled_pixels",
                "regions",
                "estimated_issues_cleanlab",
                "self_confidence_cutoff",
            )
        },
        "train_seconds": round(train_seconds, 1),
        "train_epochs": trained.epochs,
        "audit_seconds": round(audit_seconds, 1),
        "audit_warnings": result.warnings,
        "total_seconds": round(time.monotonic() - started, 1),
        "environment": environment(("torch", "numpy", "cleanlab")),
    }
    out = args.out or RESULTS / "audit_quality.json"
    write_json(out, payload)
    print(markdown_table(["noise", "flags", "precision", "recall"], table_rows, [False, False, True, True]))
    print(f"target met: {target['met']}; {payload['total_seconds']} s; {out}")


if __name__ == "__main__":
    sys.exit(main())
