"""``landseg evaluate``: a checkpoint against a labelled split, with honest per-class metrics.

Every image is predicted whole, at native resolution, by the same ``Predictor`` that ``landseg
predict`` uses; ONE confusion matrix accumulates all labelled pixels and every score comes from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import track

from landseg.checkpoint import load_checkpoint
from landseg.classes import IGNORE_INDEX, ClassSchema, get_schema
from landseg.config import ExperimentConfig
from landseg.data.catalog import build_catalog, load_pair
from landseg.errors import CheckpointError, DataError
from landseg.io.write import atomic_output
from landseg.metrics import ConfusionMatrix, metrics_dict
from landseg.predict import Predictor
from landseg.report import plot_confusion_matrix, plot_per_class, render_comparison, write_report
from landseg.report.display import display_rgb


@dataclass
class Evaluation:
    metrics: dict
    confusion: ConfusionMatrix
    metrics_path: Path
    report_path: Path
    schema: ClassSchema
    quarantined: list[DataError] = field(default_factory=list)
    """Images or masks that could not be used; the metrics leave them out and list them."""


def evaluate(
    checkpoint: Path,
    config: ExperimentConfig,
    split: str,
    out_dir: Path,
    tile: int | None = None,
    overlap: float = 0.5,
    batch_size: int = 4,
    tta: str | None = None,
    overlays: int = 6,
    progress: bool = True,
) -> Evaluation:
    loaded = load_checkpoint(checkpoint)
    predictor = Predictor(loaded, tile=tile, overlap=overlap, batch_size=batch_size, tta=tta)
    schema = predictor.schema
    # Masks are decoded with the config's schema (its codes or colours); the model must predict the same classes.
    mask_schema = get_schema(config.data.schema_)
    if mask_schema.names != schema.names:
        raise CheckpointError(
            f"model predicts classes {schema.names} but the config's schema has {mask_schema.names}", checkpoint
        )
    samples = build_catalog(config.data).split(split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion = ConfusionMatrix(schema.num_classes, ignore_index=IGNORE_INDEX)
    figures: list[tuple[str, Path]] = []
    quarantined: list[DataError] = []
    number = 0
    for sample in track(samples, description=f"Evaluating {split}", disable=not progress):
        try:
            image, truth = load_pair(
                sample, mask_schema, tolerance=config.data.size_tolerance, unknown=config.data.unknown_labels,
                nodata=config.data.nodata,
            )
        except DataError as exc:
            # One bad file must not cost the evaluation of all others; the metrics say what they lack.
            quarantined.append(exc)
            continue
        prediction = predictor.predict_image(image)
        labelled = truth != IGNORE_INDEX
        confusion.update(prediction.index[labelled], truth[labelled])
        if number < overlays:
            rgb_bands = [b - 1 for b in loaded.card.bands[:3]] if len(loaded.card.bands) >= 3 else None
            path = render_comparison(
                display_rgb(image.data, rgb_bands, image.valid), truth, prediction.index, schema,
                out_dir / f"overlay_{number:02d}_{sample.name}.png", title=sample.name,
            )
            figures.append((f"{sample.name}: image, truth, prediction, errors", path))
        number += 1
    if len(quarantined) == len(samples):
        raise DataError(f"no image of split {split!r} could be evaluated; the first: {quarantined[0]}",
                        config.data.root)
    metrics = metrics_dict(confusion, schema.names)
    metrics["split"] = split
    metrics["images"] = len(samples) - len(quarantined)
    metrics["quarantined"] = [{"file": exc.path, "problem": exc.problem} for exc in quarantined]
    metrics["checkpoint"] = str(checkpoint)
    metrics_path = out_dir / "metrics.json"
    with atomic_output(metrics_path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    plots = [
        ("Confusion matrix (rows: truth, normalized)", plot_confusion_matrix(confusion, schema, out_dir / "confusion_matrix.png")),
        ("Per-class scores", plot_per_class(metrics, schema, out_dir / "per_class.png")),
    ]
    sections = {"Checkpoint": str(checkpoint)}
    if quarantined:
        sections["Left out (unreadable or unusable files)"] = "\n".join(str(exc) for exc in quarantined)
    report = write_report(
        out_dir, f"Evaluation on {split} ({metrics['images']} images)", metrics, plots + figures, schema=schema,
        sections=sections,
    )
    return Evaluation(
        metrics=metrics, confusion=confusion, metrics_path=metrics_path, report_path=report, schema=schema,
        quarantined=quarantined,
    )
