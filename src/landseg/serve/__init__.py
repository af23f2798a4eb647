"""``landseg serve``: a local web app that makes a trained model usable from a browser.

``create_app(ServeSettings(checkpoint=...))`` builds the FastAPI app; ``run_server`` serves it with
uvicorn. Predictions go through ``engine.run_prediction``, the same engine as ``landseg predict``.
Names are imported on first use, so that the CLI can register ``serve.command.serve`` without
loading FastAPI or torch.
"""

from importlib import import_module

_EXPORTS = {
    "PredictionOptions": "landseg.serve.engine",
    "ServeSettings": "landseg.serve.settings",
    "create_app": "landseg.serve.app",
    "run_prediction": "landseg.serve.engine",
    "run_server": "landseg.serve.command",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'landseg.serve' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
