"""``audit()``: ``landseg audit`` without the command line.

1. out-of-sample probabilities: K fold models trained here (``folds.py``), or given checkpoints (with a
   warning when they trained on the audited images); cached one image at a time (``probabilities.py``);
2. cleanlab's confident learning in three streamed passes over the cache (``issues.py``);
3. per image its label-quality score, per class its share of flagged pixels, per region its given and
   likely class and size (``regions.py``); the ranked CSVs, GeoPackage, confusion plot (``outputs.py``)
   and the gallery of the worst images (``gallery.py``); ``audit.json`` sums it up.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import track

from landseg.audit.folds import assign_folds, train_fold_models
from landseg.audit.gallery import display_image, render_issue_figure, write_gallery
from landseg.audit.issues import IssueFinder
from landseg.audit.outputs import (
    CLASS_COLUMNS,
    IMAGE_COLUMNS,
    REGION_COLUMNS,
    class_rows,
    plot_given_vs_likely,
    region_rows,
    write_regions_geopackage,
)
from landseg.audit.probabilities import AuditImage, cache_probabilities, training_overlap
from landseg.audit.regions import Region, describe_regions, label_regions
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.config import ExperimentConfig
from landseg.data.catalog import build_catalog
from landseg.errors import ConfigError, DataError
from landseg.io.raster import read_image
from landseg.io.write import atomic_output, write_rows_csv
from landseg.maps.names import check_model_classes, map_stems
from landseg.metrics import ConfusionMatrix
from landseg.predict.choices import Engine
from landseg.predict.ensemble import load_ensemble, read_card
from landseg.predict.options import DEFAULT_OPTIONS, PredictOptions

SCRATCH = ".audit_scratch"


@dataclass
class AuditResult:
    out_dir: Path
    images_csv: Path
    regions_csv: Path
    classes_csv: Path
    confusion_plot: Path
    gallery: Path
    summary_path: Path
    regions_gpkg: Path | None
    summary: dict
    images: list[dict]
    """Ranked rows of images.csv, worst first."""
    warnings: list[str] = field(default_factory=list)
    quarantined: list[DataError] = field(default_factory=list)


def audit(
    config: ExperimentConfig,
    out_dir: Path,
    split: str = "train",
    checkpoints: Sequence[Path] | None = None,
    folds: int | None = None,
    minutes_per_fold: float | None = None,
    seed: int = 0,
    min_region: int = 16,
    gallery: int = 12,
    options: PredictOptions = DEFAULT_OPTIONS,
    engine: Engine = "auto",
    device: str = "cpu",
    progress: bool = True,
) -> AuditResult:
    if bool(checkpoints) == bool(folds):
        raise ConfigError("give either --checkpoint (a trained model) or --folds K (train K models out-of-fold)")
    if min_region < 1:
        raise ConfigError(f"--min-region must be at least 1 pixel, got {min_region}")
    schema = get_schema(config.data.schema_)
    catalog = build_catalog(config.data)
    samples = catalog.split(split)
    stems = map_stems([sample.image for sample in samples], config.data.root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / SCRATCH
    warnings: list[str] = []
    quarantined: list[DataError] = []
    options = options.class_map_only()
    options.check()
    images: list[AuditImage] = []
    try:
        if folds:
            assignment = assign_folds(samples, folds, seed)
            audited = {s.image for s in samples}
            validation = [s for s in catalog.splits.get("val", []) if s.image not in audited]
            models = train_fold_models(
                config,
                samples,
                assignment,
                validation,
                out_dir / "folds",
                minutes_per_fold,
                progress,
                onnx_export=engine != "torch",
            )
            for model in models:
                chosen = [i for i, f in enumerate(assignment) if f == model.fold]
                ensemble = load_ensemble([model.checkpoint], engine=engine, device=device)
                check_model_classes(ensemble.schema.names, schema.names, model.checkpoint)
                images += cache_probabilities(
                    config,
                    schema,
                    [samples[i] for i in chosen],
                    [stems[i] for i in chosen],
                    ensemble,
                    str(model.checkpoint),
                    scratch,
                    options,
                    progress,
                    f"Fold {model.fold}: predicting its held-out images",
                    quarantined,
                )
            model_names = [str(m.checkpoint) for m in models]
        else:
            given = list(checkpoints or ())  # not empty: exactly one of checkpoints and folds is given
            for checkpoint in given:
                if Path(checkpoint).suffix.lower() == ".ckpt":
                    warning = training_overlap(Path(checkpoint), samples, config.data.root, read_card)
                    if warning:
                        warnings.append(warning)
            ensemble = load_ensemble(given, engine=engine, device=device)
            check_model_classes(ensemble.schema.names, schema.names, given[0])
            model_names = [str(c) for c in given]
            images = cache_probabilities(
                config,
                schema,
                samples,
                stems,
                ensemble,
                " + ".join(model_names),
                scratch,
                options,
                progress,
                f"Predicting {split}",
                quarantined,
            )
        if not images:
            first = quarantined[0] if quarantined else "no images"
            raise DataError(f"no image of split {split!r} could be audited; the first: {first}", config.data.root)
        result = _find_and_write(images, schema, out_dir, split, min_region, gallery, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = result.pop("summary")
    summary.update(
        split=split,
        images=len(images),
        models=model_names,
        folds=folds,
        seed=seed if folds else None,
        minutes_per_fold=minutes_per_fold if folds else None,
        min_region_pixels=min_region,
        warnings=warnings,
        quarantined=[{"file": exc.path, "problem": exc.problem} for exc in quarantined],
    )
    summary_path = out_dir / "audit.json"
    with atomic_output(summary_path) as temporary:
        temporary.write_text(json.dumps(summary, indent=2, default=str))
    return AuditResult(
        out_dir=out_dir,
        summary_path=summary_path,
        summary=summary,
        warnings=warnings,
        quarantined=quarantined,
        **result,
    )


def _find_and_write(
    images: list[AuditImage], schema, out_dir: Path, split: str, min_region: int, gallery: int, progress: bool
) -> dict:
    k = schema.num_classes
    finder = IssueFinder(k)
    for image in track(images, description="Label issues: class thresholds", disable=not progress):
        finder.learn(image.labels(), image.probabilities())
    for image in track(images, description="Label issues: counting", disable=not progress):
        finder.count(image.labels(), image.probabilities())
    given_vs_likely = ConfusionMatrix(k, ignore_index=IGNORE_INDEX)
    labelled = np.zeros(k, dtype=np.int64)
    disagreeing = 0
    regions: list[Region] = []
    rows: list[dict] = []
    for image in track(images, description="Label issues: flagging", disable=not progress):
        labels = image.labels()
        issues = finder.flag(labels, image.probabilities())
        numbers = label_regions(issues.flagged, min_region)
        found = describe_regions(image.key, numbers, labels, issues, k, image.ground_areas())
        regions += found
        known = labels != IGNORE_INDEX
        labelled += np.bincount(labels[known], minlength=k)[:k]
        disagreeing += int((issues.likely[known] != labels[known]).sum())
        given_vs_likely.update(issues.likely[issues.flagged], labels[issues.flagged])
        count = int(known.sum())
        flagged = int(issues.flagged.sum())
        rows.append(
            {
                "image": image.key,
                "label_quality": round(issues.quality, 6) if np.isfinite(issues.quality) else "",
                "labelled_pixels": count,
                "flagged_pixels": flagged,
                "flagged_share": round(flagged / count, 6) if count else "",
                "regions": len(found),
                "region_pixels": sum(r.pixels for r in found),
                "model": image.model,
                "_quality": issues.quality if np.isfinite(issues.quality) else np.inf,
            }
        )
    rows.sort(key=lambda r: (r["_quality"], -r["flagged_pixels"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    images_csv = write_rows_csv(out_dir / "images.csv", rows, IMAGE_COLUMNS)
    ranked_regions = region_rows(regions, schema)
    regions_csv = write_rows_csv(out_dir / "regions.csv", ranked_regions, REGION_COLUMNS)
    by_key = {(r.image, r.region): r for r in regions}
    grids = {image.key: (image.transform, image.crs) for image in images}
    regions_gpkg = write_regions_geopackage(out_dir / "regions.gpkg", ranked_regions, by_key, grids)
    classes = class_rows(labelled, given_vs_likely, regions, schema)
    classes_csv = write_rows_csv(out_dir / "classes.csv", classes, CLASS_COLUMNS)
    confusion_plot = plot_given_vs_likely(given_vs_likely, schema, out_dir / "given_vs_likely.png")
    gallery_path = _write_gallery(images, rows[:gallery], finder, schema, out_dir, split, min_region, regions)
    total_labelled = int(labelled.sum())
    flagged_total = int(given_vs_likely.matrix.sum())
    summary = {
        "labelled_pixels": total_labelled,
        "flagged_pixels": flagged_total,
        "flagged_share": flagged_total / total_labelled if total_labelled else None,
        "estimated_issues_cleanlab": finder.estimated_issues,
        "self_confidence_cutoff": finder.cutoff,
        "disagreeing_pixels": disagreeing,
        "regions": len(regions),
        "region_pixels": sum(r.pixels for r in regions),
        "classes": classes,
        "given_vs_likely": given_vs_likely.matrix.tolist(),
        "class_names": schema.names,
        "worst_images": [
            {c: row[c] for c in ("rank", "image", "label_quality", "flagged_pixels", "regions")} for row in rows[:10]
        ],
    }
    for row in rows:
        row.pop("_quality")
    return dict(
        images_csv=images_csv,
        regions_csv=regions_csv,
        regions_gpkg=regions_gpkg,
        classes_csv=classes_csv,
        confusion_plot=confusion_plot,
        gallery=gallery_path,
        images=rows,
        summary=summary,
    )


def _write_gallery(
    images: list[AuditImage],
    worst: list[dict],
    finder: IssueFinder,
    schema,
    out_dir: Path,
    split: str,
    min_region: int,
    regions: list[Region],
) -> Path:
    by_key = {image.key: image for image in images}
    figures_dir = out_dir / "gallery"
    figures_dir.mkdir(exist_ok=True)
    region_rank = {
        (r.image, r.region): rank
        for rank, r in enumerate(sorted(regions, key=lambda r: r.severity, reverse=True), start=1)
    }
    figures = []
    for row in worst:
        image = by_key[row["image"]]
        labels = image.labels()
        issues = finder.flag(labels, image.probabilities())
        numbers = label_regions(issues.flagged, min_region)
        raster = read_image(image.sample.image)
        rgb = display_image(raster.data, raster.valid, None)
        path = render_issue_figure(
            rgb,
            labels,
            issues.likely,
            numbers,
            schema,
            figures_dir / f"{row['rank']:03d}_{image.stem}.png",
            f"#{row['rank']} {image.key}: label quality {row['label_quality']}",
        )
        ranks = sorted(region_rank[(image.key, n)] for n in range(1, int(numbers.max(initial=0)) + 1))
        caption = (
            f"#{row['rank']} {image.key}: label quality {row['label_quality']}, {row['flagged_pixels']} "
            f"flagged px, {row['regions']} regions"
            + (
                f" (regions.csv ranks {', '.join(map(str, ranks[:12]))}{' ...' if len(ranks) > 12 else ''})"
                if ranks
                else ""
            )
        )
        figures.append((caption, path))
    notes = {
        "How to read it": (
            "Images ranked by cleanlab's label-quality score (lowest first). Outlined in magenta: regions whose "
            "given label the out-of-sample model finds unlikely (cleanlab confident learning), numbered as in "
            "the region column of regions.csv, which lists them with their given and likely class; regions.gpkg "
            "holds them for QGIS. Leave them out of training with data.exclude: regions.gpkg (or regions.csv)."
        )
    }
    return write_gallery(
        out_dir / "gallery.html", f"Label audit of {split}: the {len(worst)} worst images", figures, notes
    )
