"""``landseg serve``: a local web app that makes a trained model usable from a browser.

``create_app(ServeSettings(checkpoint=...))`` builds the FastAPI app; ``run_server`` serves it with
uvicorn. Predictions go through ``engine.run_prediction`` (the streaming engine of ``landseg predict``).
Names are imported on first use, so that the CLI (``cli/serve.py``) can import this package without
loading FastAPI or torch.
"""

from landseg.lazy import lazy_exports

_EXPORTS = {
    "JobOptions": "landseg.serve.engine",
    "ServeSettings": "landseg.serve.settings",
    "create_app": "landseg.serve.app",
    "run_prediction": "landseg.serve.engine",
    "run_server": "landseg.serve.app",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
