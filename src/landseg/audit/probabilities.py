"""Out-of-sample probabilities of the audited images, from the one inference core, cached one image at a time.

Each image is read with its mask (decoded through the config's class schema), predicted by
``predict.core.predict_array`` with the ensemble that did not train on it, and its ``(K, H, W)``
probabilities (float16) and ``(H, W)`` labels are saved as ``.npy`` files in a scratch folder. The audit's
later passes memory-map them back one image at a time, so no pass holds more than one image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window
from rich.progress import track

from landseg.classes import ClassSchema
from landseg.config import ExperimentConfig, parse_config, read_yaml_config
from landseg.data.catalog import Sample, build_catalog, load_pair
from landseg.errors import DataError, LandsegError
from landseg.io.raster import raster_info
from landseg.maps.areas import grid_areas
from landseg.predict.core import predict_array
from landseg.predict.ensemble import Ensemble
from landseg.predict.options import PredictOptions


@dataclass
class AuditImage:
    """One audited image: where it is, its grid, which model predicted it, and its cached arrays."""

    sample: Sample
    key: str
    """The image's path under the data root, ``/``-separated (the ``image`` column of every output)."""
    stem: str
    shape: tuple[int, int]
    transform: Affine | None
    crs: object
    model: str
    probabilities_file: Path
    labels_file: Path

    def probabilities(self) -> np.ndarray:
        """``(K, H, W)`` float16, memory-mapped."""
        return np.load(self.probabilities_file, mmap_mode="r")

    def ground_areas(self) -> np.ndarray | None:
        """``(H, W)`` ground area of each pixel in m² (``maps.areas``); None when the grid has no ground size."""
        grid = grid_areas(self.crs, self.transform)
        return None if grid is None else grid.window(Window(0, 0, self.shape[1], self.shape[0]))

    def labels(self) -> np.ndarray:
        """``(H, W)`` uint8 class indices, ``IGNORE_INDEX`` where unlabelled."""
        return np.load(self.labels_file)


def image_key(sample: Sample, root: Path) -> str:
    try:
        return sample.image.relative_to(root).as_posix()
    except ValueError:
        return sample.image.as_posix()


def cache_probabilities(
    config: ExperimentConfig,
    schema: ClassSchema,
    samples: Sequence[Sample],
    stems: Sequence[str],
    ensemble: Ensemble,
    model_name: str,
    scratch: Path,
    options: PredictOptions,
    progress: bool = True,
    description: str = "Predicting",
    quarantined: list[DataError] | None = None,
) -> list[AuditImage]:
    """Predict ``samples`` with ``ensemble`` and cache their probabilities and labels in ``scratch``."""
    scratch.mkdir(parents=True, exist_ok=True)
    if options.nodata is None and config.data.nodata is not None:
        options = replace(options, nodata=config.data.nodata)
    images = []
    for sample, stem in track(list(zip(samples, stems, strict=False)), description=description, disable=not progress):
        try:
            image, labels = load_pair(
                sample,
                schema,
                tolerance=config.data.size_tolerance,
                unknown=config.data.unknown_labels,
                nodata=config.data.nodata,
            )
            descriptions = raster_info(sample.image).descriptions
            predicted = predict_array(
                image.data,
                ensemble,
                options,
                nodata=options.nodata if options.nodata is not None else image.nodata,
                descriptions=descriptions,
                source=sample.image,
            )
        except DataError as exc:
            if quarantined is None:
                raise
            quarantined.append(exc)
            continue
        probabilities_file, labels_file = scratch / f"{stem}.probabilities.npy", scratch / f"{stem}.labels.npy"
        np.save(probabilities_file, predicted.probabilities.astype(np.float16))
        np.save(labels_file, labels)
        images.append(
            AuditImage(
                sample=sample,
                key=image_key(sample, config.data.root),
                stem=stem,
                shape=labels.shape,
                transform=image.transform,
                crs=image.crs,
                model=model_name,
                probabilities_file=probabilities_file,
                labels_file=labels_file,
            )
        )
    return images


def training_overlap(
    checkpoint: Path, audited: Sequence[Sample], root: Path, read_card: Callable[[Path], object] | None = None
) -> str | None:
    """A warning when ``checkpoint`` trained on audited images, else None.

    A landseg run folder keeps its config beside the checkpoints (``RUN/config.yaml``): its train split
    is rebuilt and compared image by image. Without it, the card's ``training.data_root`` tells whether
    the model trained on this data at all.
    """
    checkpoint = Path(checkpoint)
    run_config = checkpoint.parent.parent / "config.yaml"
    wanted = {s.image.resolve() for s in audited}
    if run_config.is_file():
        try:
            trained = parse_config(read_yaml_config(run_config), source=run_config)
            seen = {s.image.resolve() for s in build_catalog(trained.data).splits.get("train", [])}
        except LandsegError:
            seen = None
        if seen is not None:
            both = len(wanted & seen)
            if not both:
                return None
            return (
                f"{checkpoint}: {both} of the {len(wanted)} audited images were in its training data "
                f"({run_config}); their probabilities are not out-of-sample and hide label issues the model "
                "memorised: audit with --folds K instead"
            )
    if read_card is None:
        return None
    try:
        card = read_card(checkpoint)
    except LandsegError:
        return None
    data_root = (getattr(card, "training", None) or {}).get("data_root")
    if data_root and Path(data_root).resolve() == Path(root).resolve():
        return (
            f"{checkpoint}: trained on data under {data_root}, the audited data's folder; if the audited images "
            "were among its training images their issues are hidden: audit with --folds K to be sure"
        )
    return None
