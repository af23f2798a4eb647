"""Draw docs/images/cloud_composite.png: a cloudy date, its Dynamic World map unmasked, its cloud mask, and the
mode composite of three cloudy dates beside the clear chip's map.

The dates are the sen1floods11 Sentinel-2 chip with a thick cloud and its shadow painted at a different place
on each copy (``landseg.data.synthetic.paint_cloud``), as in ``tests/predict/test_composite.py``:

    python tools/cloud_composite_figure.py          # about a minute on 2 cores
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import rasterio

from landseg.classes import ClassSchema
from landseg.data.synthetic import paint_cloud
from landseg.io.figures import save_figure
from landseg.predict.composite import run_composite
from landseg.predict.engine import predict_scene
from landseg.predict.ensemble import load_ensemble
from landseg.predict.options import PredictOptions
from landseg.zoo import get_zoo_model

REPO = Path(__file__).resolve().parents[1]
CHIP = REPO.parent / "shared" / "datasets" / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"
OUT = REPO / "docs" / "images" / "cloud_composite.png"
CENTRES = [(80, 90), (300, 330), (120, 380)]


def true_colour(image: np.ndarray) -> np.ndarray:
    rgb = image[[3, 2, 1]].astype(np.float32)
    return np.clip(np.moveaxis(rgb, 0, -1) / 2500, 0, 1)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


def main() -> int:
    with rasterio.open(CHIP) as chip:
        image, profile = chip.read(), chip.profile
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        dates = []
        for i, centre in enumerate(CENTRES):
            path = folder / f"date{i}.tif"
            with rasterio.open(path, "w", **profile) as target:
                target.write(paint_cloud(image, centre, 45, seed=i))
            dates.append(path)
        ensemble = load_ensemble(["zoo:dynamic-world"])
        clear = read(
            predict_scene(CHIP, ensemble, folder / "clear", PredictOptions(cloud_mask="none")).paths["classes"]
        )
        unmasked = read(
            predict_scene(dates[0], ensemble, folder / "raw", PredictOptions(cloud_mask="none")).paths["classes"]
        )
        result = run_composite(
            dates, ["zoo:dynamic-world"], folder / "composite", "mode", PredictOptions(cloud_output=True)
        )
        mask = read(folder / "composite" / "dates" / "date0_cloud.tif")
        composite = read(result.paths["classes"])
        with rasterio.open(dates[0]) as first:
            cloudy = first.read()
    panels = [
        (true_colour(cloudy), "one cloudy date (true colour)"),
        (_classes(unmasked), "its Dynamic World map, no mask"),
        (_mask(mask), "its cloud (white) and shadow (dark) mask"),
        (_classes(composite), "mode composite of 3 cloudy dates"),
        (_classes(clear), "the clear chip's map"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4))
    for axis, (picture, title) in zip(axes, panels, strict=True):
        axis.imshow(picture, interpolation="nearest")
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    agree = float((composite == clear)[composite != 255].mean())
    figure.suptitle(
        f"sen1floods11 chip, clouds painted on three copies: the composite equals the clear map on "
        f"{100 * agree:.1f} % of the pixels it maps",
        fontsize=11,
    )
    save_figure(figure, OUT)
    print(f"wrote {OUT}")
    return 0


def _classes(classes: np.ndarray) -> np.ndarray:
    return _rgba(classes, "dynamic-world")


def _mask(classes: np.ndarray) -> np.ndarray:
    return _rgba(classes, "cloud-shadow")


def _rgba(classes: np.ndarray, model: str) -> np.ndarray:
    schema = ClassSchema.from_dict(get_zoo_model(model).schema_dict())
    table = np.zeros((256, 4))
    for index, cls in enumerate(schema.classes):
        table[index] = [*(c / 255 for c in cls.color), 1.0]
    return table[classes]


if __name__ == "__main__":
    raise SystemExit(main())
