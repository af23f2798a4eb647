"""Prediction: whole images in memory (``Predictor``) and scenes of any size streamed to COGs (``engine``).

The streaming engine: ``load_ensemble`` loads one or more checkpoints (or exported ONNX models),
``predict_scene`` turns one raster into its output files under ``PredictOptions``; the ``landseg
predict`` command itself is ``landseg.predict.command.run_predict``.

The names below are imported on first use, so ``landseg --help`` and the command definitions in
``landseg.predict.command`` do not pay for importing PyTorch.
"""

from __future__ import annotations

from landseg.lazy import lazy_exports

_EXPORTS = {
    "Ensemble": "landseg.predict.ensemble",
    "PredictOptions": "landseg.predict.engine",
    "Prediction": "landseg.predict.predictor",
    "Predictor": "landseg.predict.predictor",
    "SceneResult": "landseg.predict.engine",
    "blend_weights": "landseg.predict.tiling",
    "class_areas": "landseg.predict.outputs",
    "load_ensemble": "landseg.predict.ensemble",
    "predict_probabilities": "landseg.predict.sliding",
    "predict_scene": "landseg.predict.engine",
    "tile_windows": "landseg.predict.tiling",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
