"""A trained model applied to whole images, exactly as its model card says it was trained.

The card fixes everything between raw pixels and the network: which bands, their normalization, and
the scale images were resampled to. ``Predictor`` applies those, runs the sliding window and turns
probabilities into a class map, with no-data pixels marked ``IGNORE_INDEX``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landseg.checkpoint import LoadedModel
from landseg.classes import IGNORE_INDEX
from landseg.errors import ConfigError, DataError
from landseg.io.raster import RasterImage, read_image
from landseg.predict.sliding import predict_probabilities
from landseg.predict.tiling import BlendKind, blend_weights, tile_stride
from landseg.predict.tta import TTAMode, tta_transforms


@dataclass
class Prediction:
    index: np.ndarray
    """``(H, W) uint8`` class indices, ``IGNORE_INDEX`` where the input is no-data."""
    confidence: np.ndarray
    """``(H, W) float32`` probability of the chosen class, 0 where the input is no-data."""
    probabilities: np.ndarray | None = None
    """``(K, H, W) float32`` softmax probabilities, when the predictor was asked to keep them."""


class Predictor:
    def __init__(
        self,
        model: LoadedModel,
        tile: int | None = None,
        overlap: float = 0.5,
        blend: BlendKind = "hann",
        batch_size: int = 4,
        tta: TTAMode | None = None,
        device: str | torch.device = "cpu",
        keep_probabilities: bool = False,
        progress: bool = False,
    ):
        self.card = model.card
        self.model_path = Path(model.path)
        self.schema = self.card.class_schema()
        self.normalization = self.card.input_normalization()
        if len(self.card.bands) != self.normalization.bands:
            raise ConfigError(
                f"model card reads {len(self.card.bands)} bands but normalizes {self.normalization.bands}",
                model.path,
            )
        if self.card.input_scale <= 0:
            raise ConfigError(f"model card has input_scale {self.card.input_scale}; it must be positive", model.path)
        self.network = model.network.to(device).eval()
        self.tile = tile if tile is not None else self.card.tile_size
        self.overlap = overlap
        self.blend = blend
        self.batch_size = batch_size
        self.tta = tta
        self.device = device
        self.keep_probabilities = keep_probabilities
        self.progress = progress
        # Bad options fail here, before any image is read.
        tile_stride(self.tile, overlap)
        blend_weights(1, blend)
        tta_transforms(tta)

    def predict_path(self, path: str | Path) -> Prediction:
        return self.predict_image(read_image(path))

    def predict_image(self, image: RasterImage) -> Prediction:
        probabilities = self.predict_probabilities(image)
        index = probabilities.argmax(axis=0).astype(np.uint8)
        confidence = probabilities.max(axis=0)
        if image.valid is not None:
            index[~image.valid] = IGNORE_INDEX
            confidence[~image.valid] = 0.0
        return Prediction(index, confidence, probabilities if self.keep_probabilities else None)

    def predict_probabilities(self, image: RasterImage) -> np.ndarray:
        """``(K, H, W)`` float32 probabilities at the image's own resolution."""
        return predict_rescaled(
            self.network,
            self.normalization.apply(self.select_bands(image)),
            self.schema.num_classes,
            self.card.input_scale,
            tile=self.tile,
            overlap=self.overlap,
            blend=self.blend,
            batch_size=self.batch_size,
            device=self.device,
            tta=self.tta,
            progress=self.progress,
        )

    def select_bands(self, image: RasterImage) -> np.ndarray:
        """The card's bands, in the card's order, from an image holding all of its file's bands."""
        found = image.data.shape[0]
        needed = max(self.card.bands)
        if found < needed:
            names = f" ({', '.join(self.card.band_names)})" if self.card.band_names else ""
            raise DataError(
                f"image has {found} band{'s' if found != 1 else ''}, but model {self.model_path.name} reads "
                f"bands {self.card.bands}{names}: at least {needed} bands expected",
                image.path,
            )
        return image.data[[band - 1 for band in self.card.bands]]


def predict_rescaled(network, image: np.ndarray, num_classes: int, scale: float, **options) -> np.ndarray:
    """``(K, H, W)`` probabilities at the image's own size from a network trained on images resampled
    by ``scale`` (seed 002's 1:2 is 0.5): resample, predict tile by tile (``options`` go to
    ``sliding.predict_probabilities``), resample the probabilities back."""
    height, width = image.shape[-2:]
    if scale != 1.0:
        image = resample_bilinear(image, (max(1, round(height * scale)), max(1, round(width * scale))))
    probabilities = predict_probabilities(network, image, num_classes, **options)
    if probabilities.shape[-2:] != (height, width):
        probabilities = resample_bilinear(probabilities, (height, width))
    return probabilities


def resample_bilinear(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(C, H, W)`` float32 to ``(C, *size)``, antialiased when shrinking as PIL and GDAL do."""
    shrinking = size[0] < array.shape[-2] or size[1] < array.shape[-1]
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    resized = torch.nn.functional.interpolate(
        tensor, size=size, mode="bilinear", align_corners=False, antialias=shrinking
    )
    return resized[0].numpy()
