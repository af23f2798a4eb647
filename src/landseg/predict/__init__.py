"""Prediction: whole images in memory (``Predictor``) and scenes of any size streamed to COGs (``engine``).

The streaming engine: ``load_ensemble`` loads one or more checkpoints (or exported ONNX models),
``predict_scene`` turns one raster into its output files under ``PredictOptions``; the ``landseg
predict`` command itself is ``landseg.predict.command.run_predict``.

The names below are imported on first use, so ``landseg --help`` and the command definitions in
``landseg.predict.command`` do not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Ensemble": "ensemble",
    "PredictOptions": "engine",
    "Prediction": "predictor",
    "Predictor": "predictor",
    "SceneResult": "engine",
    "blend_weights": "tiling",
    "class_areas": "outputs",
    "load_ensemble": "ensemble",
    "predict_probabilities": "sliding",
    "predict_scene": "engine",
    "tile_windows": "tiling",
    "write_prediction": "outputs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
