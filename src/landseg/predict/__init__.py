"""Prediction: whole images in memory (``Predictor``) and scenes of any size streamed to COGs (``engine``).

The streaming engine: ``load_ensemble`` loads one or more checkpoints (or exported ONNX models),
``predict_scene`` turns one raster into its output files under ``PredictOptions``; the ``landseg
predict`` command itself is ``landseg.predict.command.run_predict``.
"""

from landseg.predict.engine import PredictOptions, SceneResult, predict_scene
from landseg.predict.ensemble import Ensemble, load_ensemble
from landseg.predict.outputs import class_areas, write_prediction
from landseg.predict.predictor import Prediction, Predictor
from landseg.predict.sliding import predict_probabilities
from landseg.predict.tiling import blend_weights, tile_windows

__all__ = [
    "Ensemble",
    "PredictOptions",
    "Prediction",
    "Predictor",
    "SceneResult",
    "blend_weights",
    "class_areas",
    "load_ensemble",
    "predict_probabilities",
    "predict_scene",
    "tile_windows",
    "write_prediction",
]
