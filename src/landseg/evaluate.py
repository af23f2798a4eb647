"""``landseg evaluate``: models against a labelled split, scored on the very maps ``landseg predict`` writes.

Each image of the split goes through ``engine.predict_scene`` with the same options, models, engine and
test-time augmentation that ``landseg predict`` takes (and the same defaults), into ``OUT/maps/``; the
class COG written there is read back and compared with the mask. So the score is the score of a map a
user gets, minimum mapping unit included. ONE confusion matrix accumulates all labelled pixels and
every score comes from it; ``metrics.json`` records the options, models, engines and precisions used. The
probabilities written beside each map are read back too, and their calibration (ECE, classwise ECE,
Brier score, reliability diagram; ``landseg.calibration``) measured over the same pixels. Where a model
card carries a fitted temperature, the same images are also predicted without it (in memory, encoded to the
same steps), so ``calibration.before`` reports what the temperature changed on this split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.progress import track

from landseg.calibration import CalibrationTally
from landseg.classes import IGNORE_INDEX, ClassSchema, get_schema
from landseg.config import ExperimentConfig
from landseg.data.catalog import build_catalog, load_pair
from landseg.errors import DataError
from landseg.io.georef import open_without_grid_warning
from landseg.io.write import atomic_output
from landseg.maps.cog import PROBABILITY_STEPS, encode_probabilities
from landseg.maps.names import check_model_classes, map_stems
from landseg.metrics import ConfusionMatrix, metrics_dict
from landseg.predict.core import predict_array
from landseg.predict.engine import gdal_environment, predict_scene
from landseg.predict.ensemble import Ensemble
from landseg.predict.options import DEFAULT_OPTIONS, PredictOptions
from landseg.report import (
    plot_confusion_matrix,
    plot_per_class,
    plot_reliability,
    render_comparison,
    write_report,
)
from landseg.report.display import display_rgb


@dataclass
class Evaluation:
    metrics: dict
    confusion: ConfusionMatrix
    metrics_path: Path
    report_path: Path
    schema: ClassSchema
    calibration: CalibrationTally
    quarantined: list[DataError] = field(default_factory=list)
    """Images or masks that could not be used; the metrics leave them out and list them."""


def evaluate(
    ensemble: Ensemble,
    config: ExperimentConfig,
    split: str,
    out_dir: Path,
    options: PredictOptions = DEFAULT_OPTIONS,
    overlays: int = 6,
    progress: bool = True,
) -> Evaluation:
    schema = ensemble.schema
    # Masks are decoded with the config's schema (its codes or colours); the models must predict the same classes.
    mask_schema = get_schema(config.data.schema_)
    check_model_classes(schema.names, mask_schema.names, ensemble.members[0].path)
    if options.nodata is None and config.data.nodata is not None:
        options = replace(options, nodata=config.data.nodata)
    # The probabilities are written too: calibration is measured on them as users get them.
    options = replace(options.class_map_only(), probabilities=True)
    options.check()
    samples = build_catalog(config.data).split(split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion = ConfusionMatrix(schema.num_classes, ignore_index=IGNORE_INDEX)
    calibration = CalibrationTally(schema.num_classes)
    uncalibrated = ensemble.uncalibrated() if ensemble.calibrated else None
    before = CalibrationTally(schema.num_classes)
    figures: list[tuple[str, Path]] = []
    quarantined: list[DataError] = []
    unmapped = 0
    for sample, stem in track(
        list(zip(samples, map_stems([sample.image for sample in samples], config.data.root), strict=True)),
        description=f"Evaluating {split}",
        disable=not progress,
    ):
        try:
            image, truth = load_pair(
                sample,
                mask_schema,
                tolerance=config.data.size_tolerance,
                unknown=config.data.unknown_labels,
                nodata=config.data.nodata,
            )
            predicted, probabilities = predicted_maps(sample.image, ensemble, out_dir / "maps", options, stem)
        except DataError as exc:
            # One bad file must not cost the evaluation of all others; the metrics say what they lack.
            quarantined.append(exc)
            continue
        labelled = truth != IGNORE_INDEX
        # Labelled pixels the map leaves as no-data (clouds and shadows masked, input no-data) are not scored:
        # the metrics are those of the pixels a user gets classes for, and how many were left out is reported.
        mapped = labelled & (predicted != IGNORE_INDEX)
        unmapped += int(labelled.sum() - mapped.sum())
        confusion.update(predicted[mapped], truth[mapped])
        calibration.update(probabilities[:, mapped] / PROBABILITY_STEPS, predicted[mapped], truth[mapped])
        if uncalibrated is not None:
            raw = predict_array(image.data, uncalibrated, options, image.nodata).probabilities[:, mapped]
            before.update(encode_probabilities(raw, None) / PROBABILITY_STEPS, raw.argmax(axis=0), truth[mapped])
        if len(figures) < overlays:
            card_bands = ensemble.members[0].card.bands
            rgb_bands = [b - 1 for b in card_bands[:3]] if len(card_bands) >= 3 else None
            path = render_comparison(
                display_rgb(image.data, rgb_bands, image.valid),
                truth,
                predicted,
                schema,
                out_dir / f"overlay_{len(figures):02d}_{stem}.png",
                title=sample.name,
            )
            figures.append((f"{sample.name}: image, truth, prediction, errors", path))
    if len(quarantined) == len(samples):
        raise DataError(
            f"no image of split {split!r} could be evaluated; the first: {quarantined[0]}", config.data.root
        )
    metrics = metrics_dict(confusion, schema.names)
    metrics.update(
        # The probabilities are the calibrated ones where a member's card has a temperature: which ones say so.
        calibration={
            **calibration.to_dict(schema.names),
            "temperatures": [m.card.temperature for m in ensemble.members],
            "before": before.to_dict(schema.names) if uncalibrated is not None else None,
        },
        split=split,
        labelled_pixels_not_mapped=unmapped,
        images=len(samples) - len(quarantined),
        quarantined=[{"file": exc.path, "problem": exc.problem} for exc in quarantined],
        models=[str(m.path) for m in ensemble.members],
        engines=[m.engine for m in ensemble.members],
        precisions=[m.precision for m in ensemble.members],
        tta=ensemble.tta,
        prediction_options=asdict(options),
        maps=str(out_dir / "maps"),
    )
    metrics_path = out_dir / "metrics.json"
    with atomic_output(metrics_path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=str))
    report = _write_evaluation_report(out_dir, split, metrics, confusion, schema, figures, quarantined)
    return Evaluation(
        metrics=metrics,
        confusion=confusion,
        calibration=calibration,
        metrics_path=metrics_path,
        report_path=report,
        schema=schema,
        quarantined=quarantined,
    )


def predicted_maps(
    image: Path, ensemble: Ensemble, maps_dir: Path, options: PredictOptions, stem: str
) -> tuple[np.ndarray, np.ndarray]:
    """The class map ``landseg predict`` writes for ``image`` and its ``(K, H, W)`` probabilities in the
    written uint8 steps (divide by ``PROBABILITY_STEPS`` for probabilities), written to ``maps_dir`` and read back."""
    scene = predict_scene(image, ensemble, maps_dir, options, stem=stem)
    with gdal_environment(options):
        with open_without_grid_warning(scene.paths["classes"]) as written:
            classes = written.read(1)
        with open_without_grid_warning(scene.paths["probabilities"]) as written:
            probabilities = written.read()
    return classes, probabilities


def _write_evaluation_report(out_dir, split, metrics, confusion, schema, figures, quarantined) -> Path:
    plots = [
        (
            "Confusion matrix (rows: truth, normalized)",
            plot_confusion_matrix(confusion, schema, out_dir / "confusion_matrix.png"),
        ),
        ("Per-class scores", plot_per_class(metrics, schema, out_dir / "per_class.png")),
    ]
    calibration = metrics["calibration"]
    if calibration["pixels"]:
        caption = f"Reliability: accuracy against the map's probability, {calibration['binning']}"
        ece = f"ECE {calibration['ece']:.3f}"
        if calibration["before"] is not None:
            ece += f"; {calibration['before']['ece']:.3f} without the fitted temperature"
        plots.append((f"{caption} ({ece})", plot_reliability(calibration, out_dir / "reliability.png")))
    engines = ", ".join(sorted({f"{e} {p}" for e, p in zip(metrics["engines"], metrics["precisions"], strict=True)}))
    sections = {
        "Models": "\n".join(metrics["models"])
        + f"\nengine: {engines}; test-time augmentation: {metrics['tta'] or 'none'}",
        "Prediction options (as `landseg predict` takes them)": json.dumps(metrics["prediction_options"], default=str),
    }
    if quarantined:
        sections["Left out (unreadable or unusable files)"] = "\n".join(str(exc) for exc in quarantined)
    return write_report(
        out_dir,
        f"Evaluation on {split} ({metrics['images']} images)",
        metrics,
        plots + figures,
        schema=schema,
        sections=sections,
    )
