"""Whole-image prediction: sliding-window tiles, blending, test-time augmentation, output files."""

from landseg.predict.outputs import class_areas, write_prediction
from landseg.predict.predictor import Prediction, Predictor
from landseg.predict.sliding import predict_probabilities
from landseg.predict.tiling import blend_weights, tile_windows

__all__ = [
    "Prediction",
    "Predictor",
    "blend_weights",
    "class_areas",
    "predict_probabilities",
    "tile_windows",
    "write_prediction",
]
