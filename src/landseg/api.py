"""landseg from Python: load a model, map arrays and scenes, train, evaluate (docs/API.md).

Each function here is a thin, typed wrapper over the code the command line runs, never a second
implementation: models load through ``predict.ensemble.load_ensemble`` (the references of
``predict/models.py``: a ``.ckpt`` or ``.onnx`` path, or ``zoo:NAME``), every pixel goes through the one
inference core (``predict/core.py``; files through ``predict/engine.predict_scene``), training is
``train.run.train`` and scoring ``evaluate.evaluate``. The package exposes these names lazily
(``landseg/__init__.py``), so ``import landseg`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

from landseg.assess.run import AssessResult, assess_map
from landseg.assess.sample import SampleOptions, SampleResult, draw_sample
from landseg.checkpoint import ModelCard
from landseg.config import ExperimentConfig, load_config
from landseg.errors import ConfigError
from landseg.evaluate import Evaluation
from landseg.evaluate import evaluate as evaluate_maps
from landseg.predict.composite import CompositeResult, run_composite
from landseg.predict.core import predict_array
from landseg.predict.engine import SceneResult, chunk_layers
from landseg.predict.engine import predict_scene as predict_scene_files
from landseg.predict.ensemble import Ensemble, load_ensemble
from landseg.predict.networks import Engine, Precision
from landseg.predict.options import PredictOptions
from landseg.predict.streaming import Chunk
from landseg.predict.tta import TTAMode
from landseg.suggest.run import SuggestOptions, SuggestResult
from landseg.suggest.run import suggest as suggest_windows
from landseg.train.calibrate import calibrate_on_split
from landseg.train.int8 import quantize_on_splits
from landseg.train.run import TrainResult
from landseg.train.run import train as run_training

__all__ = [
    "ArrayResult",
    "Model",
    "assess",
    "calibrate",
    "composite",
    "evaluate",
    "load_model",
    "predict_scene",
    "quantize",
    "sample",
    "suggest",
    "train",
]

ModelReference = str | Path
"""A landseg checkpoint (``.ckpt``), an ONNX export (``.onnx``) or ``"zoo:NAME"`` (``landseg models``)."""


@dataclass(frozen=True)
class ArrayResult:
    """The prediction of an in-memory image."""

    classes: np.ndarray
    """``(H, W)`` uint8 class indices into ``Model.classes``; ``IGNORE_INDEX`` (255) where the input is no-data."""
    probabilities: np.ndarray
    """``(K, H, W)`` float32 blended class probabilities, summing to one over classes."""
    valid: np.ndarray | None
    """``(H, W)`` bool, False where the input is no-data; None when every pixel is valid."""


class Model:
    """A loaded model (or ensemble) and its card; ``predict`` maps arrays and image files."""

    def __init__(self, ensemble: Ensemble, references: Sequence[ModelReference]):
        self.ensemble = ensemble
        self.references = [str(r) for r in references]

    def __repr__(self) -> str:
        members = ", ".join(f"{m.name} ({m.engine}, {m.precision})" for m in self.ensemble.members)
        return f"Model({members}; classes {self.classes})"

    @property
    def card(self) -> ModelCard:
        """What the (first) model carries: bands, value range, normalization, classes, palette."""
        return self.ensemble.members[0].card

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the class indices."""
        return self.ensemble.schema.names

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """Display colour (R, G, B) of each class, as in every written map."""
        return [(int(r), int(g), int(b)) for r, g, b in self.ensemble.schema.palette]

    @property
    def bands(self) -> list[str] | list[int]:
        """The bands the model reads, in its input order: their names, else 1-based raster bands."""
        return list(self.card.band_names) if self.card.band_names else list(self.card.bands)

    @overload
    def predict(
        self, image: np.ndarray, *, options: PredictOptions | None = ..., out: str | Path = ..., stem: str | None = ...
    ) -> ArrayResult: ...

    @overload
    def predict(
        self, image: str | Path, *, options: PredictOptions | None = ..., out: str | Path = ..., stem: str | None = ...
    ) -> dict[str, Path]: ...

    def predict(
        self,
        image: np.ndarray | str | Path,
        *,
        options: PredictOptions | None = None,
        out: str | Path = "predictions",
        stem: str | None = None,
    ) -> ArrayResult | dict[str, Path]:
        """Map an image.

        An array, ``(bands, H, W)`` or ``(H, W, bands)`` in the raw units of the training images, gives
        class indices and probabilities in memory. A path (GeoTIFF, PNG, JPEG, Sentinel-2 product) is
        predicted as ``landseg predict`` predicts it, into ``out``, and gives the written files by kind
        (``classes``, ``color``, ``areas``, ..., ``record``). ``options`` are ``landseg predict``'s.
        """
        if isinstance(image, np.ndarray):
            return self._predict_array(image, options or PredictOptions())
        return predict_scene(image, self, out, options=options, stem=stem).paths

    def _predict_array(self, image: np.ndarray, options: PredictOptions) -> ArrayResult:
        if options.min_area:
            # The minimum mapping unit is applied to written maps (streamed, with a border vote).
            raise ConfigError("min_area applies to maps written from files: predict a file path, or use min_area=0")
        channels_first = self._channels_first(image, options)
        prediction = predict_array(channels_first, self.ensemble, options, nodata=options.nodata)
        height, width = channels_first.shape[1:]
        whole = Chunk((0, height), (0, width), prediction.probabilities, prediction.valid)
        classes = chunk_layers(whole, options)["classes"][0]  # the class layer a written map gets
        return ArrayResult(classes, prediction.probabilities, prediction.valid)

    def _channels_first(self, image: np.ndarray, options: PredictOptions) -> np.ndarray:
        """``image`` as ``(bands, H, W)``. A 2-D image is one band; otherwise the band axis is the first
        or last axis whose length is the number of bands the model reads, else the shorter of the two."""
        if image.ndim == 2:
            return image[None]
        if image.ndim != 3:
            raise ConfigError(f"an image array must be (bands, H, W) or (H, W, bands), got shape {image.shape}")
        reads = len(options.bands or self.card.bands)
        first, last = image.shape[0], image.shape[-1]
        if first == reads or (last != reads and first <= last):
            return image
        return np.moveaxis(image, -1, 0)


def load_model(
    reference: ModelReference | Sequence[ModelReference],
    *,
    engine: Engine = "auto",
    tta: TTAMode | None = None,
    precision: Precision = "auto",
    device: str = "cpu",
    tile: int | None = None,
) -> Model:
    """Load a model as ``landseg predict`` loads it: a checkpoint path, an ONNX path or ``"zoo:NAME"``
    (several references make an averaged ensemble). ``engine="auto"`` runs ONNX Runtime on the CPU
    (exported once and cached); ``tile`` is the network tile the export is made for (default: the card's)."""
    references = [reference] if isinstance(reference, str | Path) else list(reference)
    ensemble = load_ensemble(references, engine=engine, tta=tta, device=device, precision=precision, tile=tile)
    return Model(ensemble, references)


def predict_scene(
    source: str | Path,
    model: Model | ModelReference,
    out: str | Path = "predictions",
    *,
    options: PredictOptions | None = None,
    stem: str | None = None,
) -> SceneResult:
    """Predict one image file of any size into ``out``, exactly as ``landseg predict`` does (class COG,
    preview, areas and what ``options`` add); ``result.paths`` names the files. A reference is loaded
    with ``load_model``'s defaults; load it once with ``load_model`` to predict many scenes."""
    loaded = model if isinstance(model, Model) else load_model(model)
    return predict_scene_files(source, loaded.ensemble, out, options or PredictOptions(), stem=stem)


def composite(
    dates: Sequence[str | Path],
    model: str | Path,
    out: str | Path,
    method: str = "mode",
    options: PredictOptions | None = None,
    grid: str | Path | None = None,
) -> CompositeResult:
    """Several dates of one place as one map over their clear pixels (``mode`` or ``mean-probability``), each
    date's clouds masked as ``options.cloud_mask`` says; ``model`` is a reference (``"zoo:dynamic-world"``)."""
    return run_composite(dates, [str(model)], out, method, options=options, grid=grid)


def train(
    config: ExperimentConfig | str | Path,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    max_minutes: float | None = None,
    progress: bool = True,
    adapt_to: Sequence[str | Path] = (),
) -> TrainResult:
    """Train as ``landseg train`` does: ``config`` is an experiment YAML (``overrides`` are its ``--set``
    assignments, ``"train.epochs=3"``) or an ``ExperimentConfig``, which is left unchanged. ``adapt_to``:
    unlabelled images of the place to be mapped (files, folders, patterns), added to ``data.unlabeled``.
    Writes ``out/checkpoints/{best,last}.ckpt``, ``history.csv`` and ``training_curves.png``."""
    from landseg.report import plot_training_curves

    if isinstance(config, ExperimentConfig):
        if overrides:
            raise ConfigError("overrides apply to a config file; change the ExperimentConfig itself instead")
        experiment = config.model_copy(deep=True)
    else:
        experiment = load_config(config, list(overrides))
    # Given here, they are relative to the working directory, like every other path argument.
    experiment.data.unlabeled += [str(Path(item).expanduser().absolute()) for item in adapt_to]
    out = Path(out)
    result = run_training(experiment, out, resume=resume, max_minutes=max_minutes, progress=progress)
    if result.global_rank == 0 and result.history.exists():
        plot_training_curves(result.history, out / "training_curves.png")
    return result


def evaluate(
    model: Model | ModelReference,
    config: ExperimentConfig | str | Path,
    *,
    split: str = "val",
    out: str | Path = "evaluation",
    options: PredictOptions | None = None,
    progress: bool = True,
) -> Evaluation:
    """Score a model as ``landseg evaluate`` does: each image of the config's ``split`` is mapped into
    ``out/maps`` by ``predict_scene`` and the written map compared with its mask. Gives the metrics
    (``.metrics``: per-class IoU, F1, mIoU, ...), the confusion matrix and the report's path."""
    options = options or PredictOptions()
    options.check()
    experiment = config if isinstance(config, ExperimentConfig) else load_config(config)
    loaded = model if isinstance(model, Model) else load_model(model, tile=options.tile)
    return evaluate_maps(loaded.ensemble, experiment, split, Path(out), options, progress=progress)


def calibrate(
    checkpoints: Sequence[str | Path] | str | Path,
    config: ExperimentConfig | str | Path,
    *,
    split: str = "val",
    progress: bool = True,
) -> dict[Path, dict]:
    """Fit trained checkpoints' temperatures on the config's labelled ``split`` and store them on their
    cards, as ``landseg calibrate`` does; gives each checkpoint's calibration as its card holds it."""
    paths = [Path(checkpoints)] if isinstance(checkpoints, str | Path) else [Path(p) for p in checkpoints]
    experiment = config if isinstance(config, ExperimentConfig) else load_config(config)
    return calibrate_on_split(paths, experiment, split, progress=progress)


def quantize(
    model: ModelReference,
    config: ExperimentConfig | str | Path,
    *,
    split: str = "val",
    tile: int | None = None,
    keep_fp32: str = "first-last",
    progress: bool = True,
) -> tuple[Path, dict]:
    """The int8 model of a checkpoint or zoo model, as ``landseg export --precision int8`` makes it:
    calibrated on the config's training images, its guard (agreement with fp32, mIoU change) measured on
    its labelled ``split``, cached beside the checkpoint where ``precision="auto"`` finds it. Gives the
    int8 file and its guard."""
    experiment = config if isinstance(config, ExperimentConfig) else load_config(config)
    return quantize_on_splits(model, experiment, split, tile, keep_fp32, progress)


def suggest(
    model: Model | ModelReference,
    scenes: Sequence[str | Path],
    out: str | Path = "suggestions",
    *,
    options: SuggestOptions | None = None,
    prediction: PredictOptions | None = None,
    progress: bool = True,
) -> SuggestResult:
    """Windows of unlabelled ``scenes`` to label next, as ``landseg suggest`` does: the most uncertain
    windows under a spacing rule (``options``: budget, window size, measure, spacing), written to ``out``
    as a GeoPackage of boxes, a ranked CSV and an HTML gallery, with the uncertainty maps behind them."""
    prediction = prediction or PredictOptions()
    loaded = model if isinstance(model, Model) else load_model(model, tile=prediction.tile)
    chosen = options or SuggestOptions()
    return suggest_windows([Path(s) for s in scenes], loaded.ensemble, Path(out), chosen, prediction, progress)


def sample(
    map_path: str | Path,
    out: str | Path = "points.gpkg",
    *,
    options: SampleOptions | None = None,
    strata: str | Path | None = None,
    image: str | Path | None = None,
) -> SampleResult:
    """Draw a probability sample of a class map for reference labelling, as ``landseg sample`` does:
    ``out`` (GeoPackage of points with an empty ``reference`` column), its CSV and the design JSON that
    ``assess`` needs. ``options`` choose the design (stratified by map class by default, Olofsson's
    allocation, 500 points), ``strata`` another stratification raster, ``image`` a labelling sheet."""
    return draw_sample(map_path, out, options or SampleOptions(), strata_path=strata, image=image)


def assess(
    map_path: str | Path,
    points: str | Path,
    reference_field: str = "reference",
    out: str | Path = "assessment",
    *,
    design: str | Path | None = None,
    pictures: bool = True,
) -> AssessResult:
    """Accuracy and class areas with 95 % confidence intervals from labelled sample points, as
    ``landseg assess`` does (Stehman 2014's estimators; docs/ASSESS.md). The design written by
    ``sample`` beside the points is found by itself; ``.estimates`` holds the numbers, ``.paths`` the files."""
    return assess_map(map_path, points, reference_field, out, design_path=design, pictures=pictures)
