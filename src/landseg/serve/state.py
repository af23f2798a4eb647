"""Everything the routes of one running app share, in one typed object on ``app.state.serve``.

A route asks for it with ``Depends(serve_state)`` and finds the model, its card, the limits and the job
queue. ``jobs`` exists only while the app's lifespan runs (``open_jobs`` .. ``close_jobs``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from landseg.checkpoint import LoadedModel
from landseg.predict.networks import Member
from landseg.serve.engine import PredictionRunner
from landseg.serve.jobs import JobManager
from landseg.serve.model_info import describe_model
from landseg.serve.results import predict_job
from landseg.serve.schemas import LimitsInfo
from landseg.serve.settings import ServeSettings

ACCEPTED_FORMATS = ["PNG", "JPEG", "TIFF / GeoTIFF"]


@dataclass
class ServeState:
    settings: ServeSettings
    model: LoadedModel | Member
    """What every upload runs: the member ``landseg predict`` would load."""
    runner: PredictionRunner
    """Predicts each upload: ``engine.run_prediction``, or a stand-in in tests."""
    model_info: dict[str, Any] = field(init=False)
    limits: LimitsInfo = field(init=False)
    _jobs: JobManager | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.model_info = describe_model(self.model)
        settings = self.settings
        self.limits = LimitsInfo(
            max_upload_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            formats=ACCEPTED_FORMATS,
            max_running_jobs=settings.max_running_jobs,
            max_queued_jobs=settings.max_queued_jobs,
            job_ttl_seconds=settings.job_ttl_seconds,
            preview_max_side=settings.preview_max_side,
        )

    @classmethod
    def of(cls, app: FastAPI) -> ServeState:
        return app.state.serve

    @property
    def jobs(self) -> JobManager:
        if self._jobs is None:
            raise RuntimeError("the job queue exists only while the app runs (inside its lifespan)")
        return self._jobs

    def open_jobs(self) -> JobManager:
        """The job queue and its private work folder (readable by this user only: ``mkdtemp``)."""
        settings = self.settings
        if settings.workdir is not None:
            settings.workdir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="landseg-serve-", dir=settings.workdir))
        process = partial(predict_job, model=self.model, runner=self.runner, preview_max_side=settings.preview_max_side)
        self._jobs = JobManager(
            root, process, settings.max_running_jobs, settings.max_queued_jobs, settings.job_ttl_seconds
        )
        return self._jobs

    def close_jobs(self) -> None:
        """Stop every job and delete the work folder with everything uploaded or produced."""
        if self._jobs is not None:
            self._jobs.close()


def serve_state(request: Request) -> ServeState:
    """The FastAPI dependency every route takes its state from."""
    return ServeState.of(request.app)
