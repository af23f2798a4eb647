"""The FastAPI application: the page, the model card, uploads, jobs and their files.

``create_app`` loads the checkpoint at once, so a bad checkpoint fails before a port is opened.
The private work folder, the worker threads and the expiry loop live exactly as long as the app's
lifespan; everything uploaded or produced is deleted when the server stops.
"""

from __future__ import annotations

import asyncio
import tempfile
from contextlib import asynccontextmanager
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form, HTTPException, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from landseg import __version__
from landseg.checkpoint import LoadedModel, ModelCard
from landseg.predict.networks import Member
from landseg.serve.auth import TokenGate
from landseg.serve.body_limit import BodySizeLimit, too_large_message
from landseg.serve.engine import load_served_member, run_prediction
from landseg.serve.jobs import Job, JobManager, JobStatus, QueueFull
from landseg.serve.model_info import describe_model
from landseg.serve.results import DOWNLOADS, VIEWS, Engine, download_name, predict_job
from landseg.serve.schemas import ErrorOut, FileKind, JobOut, LimitsInfo, ModelInfo, UploadForm
from landseg.serve.settings import ServeSettings
from landseg.serve.uploads import ACCEPTED, UploadRejected, inspect_upload, safe_display_name
from landseg.serve.views import write_preview

STATIC = Path(str(files("landseg.serve") / "static"))
COPY_CHUNK = 1024 * 1024
# Room for the multipart framing and option fields around the file itself.
MULTIPART_OVERHEAD = 64 * 1024
RETRY_AFTER_SECONDS = 30
# The page loads nothing from anywhere but this server.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
ERRORS = {
    400: {"model": ErrorOut, "description": "No file, or an empty one."},
    413: {"model": ErrorOut, "description": "The upload has more bytes or pixels than the server accepts."},
    415: {"model": ErrorOut, "description": "The content is not PNG, JPEG or TIFF/GeoTIFF."},
    422: {"model": ErrorOut, "description": "Bad options, or an image that cannot be read or used by the model."},
    503: {"model": ErrorOut, "description": "Every worker is busy and the queue is full; retry later."},
}


def create_app(
    settings: ServeSettings, model: LoadedModel | Member | None = None, engine: Engine = run_prediction
) -> FastAPI:
    """The web app for one checkpoint. ``model`` and ``engine`` replace the defaults in tests."""
    model = model if model is not None else load_served_member(settings.model_reference, settings.engine)
    model_info = describe_model(model)
    limits = LimitsInfo(
        max_upload_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_pixels,
        formats=["PNG", "JPEG", "TIFF / GeoTIFF"],
        max_running_jobs=settings.max_running_jobs,
        max_queued_jobs=settings.max_queued_jobs,
        job_ttl_seconds=settings.job_ttl_seconds,
        preview_max_side=settings.preview_max_side,
    )
    process = partial(predict_job, model=model, engine=engine, preview_max_side=settings.preview_max_side)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.workdir is not None:
            settings.workdir.mkdir(parents=True, exist_ok=True)
        # mkdtemp makes the folder readable by this user only.
        root = Path(tempfile.mkdtemp(prefix="landseg-serve-", dir=settings.workdir))
        manager = JobManager(
            root, process, settings.max_running_jobs, settings.max_queued_jobs, settings.job_ttl_seconds
        )
        app.state.jobs = manager
        expiry = asyncio.create_task(expire_jobs(manager, min(60.0, max(1.0, settings.job_ttl_seconds / 4))))
        try:
            yield
        finally:
            expiry.cancel()
            await run_in_threadpool(manager.close)

    app = FastAPI(
        title="landseg serve",
        version=__version__,
        description=(
            f"Land-cover maps from imagery with the model `{model_info['checkpoint']}`. Upload an image "
            f"({ACCEPTED}) to `POST /api/jobs`, poll `GET /api/jobs/{{id}}` until `status` is `done`, then "
            "fetch the overlay, the area table and the downloads it lists."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.model = model  # what every upload runs: the member `landseg predict` would load
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD, message_limit=settings.max_upload_bytes
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    if settings.token is not None:
        # Added last, so outermost: no route, page, static file or download answers before the token is checked.
        app.add_middleware(TokenGate, token=settings.token.get_secret_value())

    @app.exception_handler(RequestValidationError)
    async def one_line_validation_errors(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="landseg serve API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    @app.get("/api/health", tags=["server"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/model", response_model=ModelInfo, tags=["server"])
    def model_card() -> dict:
        """The model card: classes and colours, training provenance, validation mIoU."""
        return model_info

    @app.get("/api/limits", response_model=LimitsInfo, tags=["server"])
    def upload_limits() -> LimitsInfo:
        """What uploads the server accepts and how many jobs it runs and queues."""
        return limits

    @app.post("/api/jobs", status_code=202, response_model=JobOut, responses=ERRORS, tags=["jobs"])
    def create_job(
        request: Request, response: Response, form: Annotated[UploadForm, Form(media_type="multipart/form-data")]
    ) -> dict:
        """Upload an image and queue its prediction; answers at once with the queued job."""
        file = form.file
        if file is None:
            raise HTTPException(400, "no file was uploaded: send the image as the multipart form field 'file'")
        manager: JobManager = request.app.state.jobs
        manager.purge_expired()
        try:
            job = manager.reserve(safe_display_name(file.filename))
        except QueueFull as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        try:
            receive_upload(file, job, settings, model.card)
        except BaseException:
            manager.discard(job)
            raise
        manager.start(job, form.options(), job.image)
        response.headers["Location"] = f"/api/jobs/{job.id}"
        return job_view(manager, job)

    @app.get("/api/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorOut}}, tags=["jobs"])
    def job_status(request: Request, job_id: str) -> dict:
        """Status, progress and, once done, the area table and download links."""
        manager: JobManager = request.app.state.jobs
        return job_view(manager, find_job(manager, job_id))

    @app.delete("/api/jobs/{job_id}", status_code=204, responses={404: {"model": ErrorOut}}, tags=["jobs"])
    def delete_job(request: Request, job_id: str) -> Response:
        """Delete a job and its files now (a running job stops at its next tile batch)."""
        manager: JobManager = request.app.state.jobs
        try:
            manager.delete(job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}: it never existed, expired or was deleted") from None
        return Response(status_code=204)

    file_types = sorted({*VIEWS.values(), *(media_type for _, _, media_type in DOWNLOADS.values())})

    @app.get(
        "/api/jobs/{job_id}/files/{kind}",
        response_class=FileResponse,
        responses={
            200: {"content": {media_type: {} for media_type in file_types}, "description": "The file."},
            404: {"model": ErrorOut, "description": "No such job, or no such file for this job."},
            409: {"model": ErrorOut, "description": "The job has not finished, or it failed."},
        },
        tags=["jobs"],
    )
    def job_file(request: Request, job_id: str, kind: FileKind) -> FileResponse:
        """A job's file: ``preview``/``overlay`` for the page, the others as downloads."""
        manager: JobManager = request.app.state.jobs
        job = find_job(manager, job_id)
        if kind.value != "preview" and job.status != JobStatus.DONE:
            state = "failed" if job.status == JobStatus.FAILED else "has not finished"
            raise HTTPException(409, f"job {job_id} {state}; its files exist only once it is done")
        path = job.files.get(kind.value)
        if path is None or not path.exists():
            hint = " (GeoTIFFs exist for georeferenced images only)" if kind == FileKind.classes_tif else ""
            raise HTTPException(404, f"this job has no {kind.value} file{hint}")
        if kind.value in VIEWS:
            return FileResponse(path, media_type=VIEWS[kind.value], headers={"Cache-Control": "no-store"})
        return FileResponse(path, media_type=DOWNLOADS[kind.value][2], filename=download_name(job, kind.value))

    return app


def receive_upload(file: UploadFile, job: Job, settings: ServeSettings, card: ModelCard) -> None:
    """Copy the upload into the job's folder, check it, and draw its preview; ``HTTPException`` if bad."""
    upload = job.directory / "upload"
    size = 0
    with open(upload, "wb") as out:
        while chunk := file.file.read(COPY_CHUNK):
            size += len(chunk)
            if size > settings.max_upload_bytes:
                raise HTTPException(413, too_large_message(settings.max_upload_bytes))
            out.write(chunk)
    if size == 0:
        raise HTTPException(400, "the uploaded file is empty (0 bytes)")
    try:
        input_path, info, image = inspect_upload(upload, card, settings.max_pixels)
    except UploadRejected as exc:
        raise HTTPException(exc.status_code, exc.message) from None
    job.files["input"] = input_path
    job.files["preview"] = write_preview(image, job.directory / "preview.jpg", settings.preview_max_side)
    job.image = info


def find_job(manager: JobManager, job_id: str) -> Job:
    try:
        return manager.get(job_id)
    except KeyError:
        raise HTTPException(404, f"no job {job_id!r}: it never existed, expired or was deleted") from None


def job_view(manager: JobManager, job: Job) -> dict:
    base = f"/api/jobs/{job.id}"
    result = None
    if job.status == JobStatus.DONE:
        result = {
            "areas": job.result["areas"],
            "overlay_url": f"{base}/files/overlay",
            "downloads": [
                {"kind": kind, "label": label, "url": f"{base}/files/{kind}", "filename": download_name(job, kind)}
                for kind, (label, _, _) in DOWNLOADS.items()
                if kind in job.files
            ],
        }
    return {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "progress": round(job.progress, 4),
        "queue_position": manager.queue_position(job),
        "filename": job.filename,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "elapsed_seconds": round(manager.elapsed_seconds(job), 3),
        "image": job.image.to_dict(),
        "options": job.options,
        "preview_url": f"{base}/files/preview",
        "error": job.error,
        "result": result,
    }


async def expire_jobs(manager: JobManager, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await run_in_threadpool(manager.purge_expired)
