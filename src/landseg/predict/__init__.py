"""Prediction: the one inference core and what is built on it.

``core`` turns the pixels of a scene (a file, a window, or an in-memory array) into blended class
probabilities; ``engine.predict_scene`` streams them into a scene's output files; ``run.run_predict``
is ``landseg predict`` without the command line. ``load_ensemble`` loads one or more checkpoints (or
exported ONNX models) under the engine of choice.

The names below are imported on first use, so ``landseg --help`` does not pay for importing PyTorch.
"""

from __future__ import annotations

from landseg.lazy import lazy_exports

_EXPORTS = {
    "ArrayPrediction": "landseg.predict.core",
    "Ensemble": "landseg.predict.ensemble",
    "PredictOptions": "landseg.predict.options",
    "SceneResult": "landseg.predict.engine",
    "blend_weights": "landseg.predict.tiling",
    "load_ensemble": "landseg.predict.ensemble",
    "predict_array": "landseg.predict.core",
    "predict_scene": "landseg.predict.engine",
    "run_predict": "landseg.predict.run",
    "tile_windows": "landseg.predict.tiling",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
