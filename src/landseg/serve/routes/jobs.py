"""The jobs: upload an image, follow its prediction, fetch its files, delete it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Response, UploadFile
from fastapi.responses import FileResponse

from landseg.checkpoint import ModelCard
from landseg.serve.body_limit import too_large_message
from landseg.serve.jobs import Job, JobManager, JobStatus, QueueFull
from landseg.serve.results import DOWNLOADS, VIEWS, download_name
from landseg.serve.schemas import ErrorOut, FileKind, JobOut, UploadForm
from landseg.serve.settings import ServeSettings
from landseg.serve.state import ServeState, serve_state
from landseg.serve.uploads import UploadRejected, inspect_upload, safe_display_name
from landseg.serve.views import write_preview

COPY_CHUNK = 1024 * 1024
RETRY_AFTER_SECONDS = 30
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "No file, or an empty one."},
    413: {"model": ErrorOut, "description": "The upload has more bytes or pixels than the server accepts."},
    415: {"model": ErrorOut, "description": "The content is not PNG, JPEG or TIFF/GeoTIFF."},
    422: {"model": ErrorOut, "description": "Bad options, or an image that cannot be read or used by the model."},
    503: {"model": ErrorOut, "description": "Every worker is busy and the queue is full; retry later."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
FILE_TYPES = sorted({*VIEWS.values(), *(media_type for _, _, media_type in DOWNLOADS.values())})
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {media_type: {} for media_type in FILE_TYPES}, "description": "The file."},
    404: {"model": ErrorOut, "description": "No such job, or no such file for this job."},
    409: {"model": ErrorOut, "description": "The job has not finished, or it failed."},
}

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
State = Annotated[ServeState, Depends(serve_state)]


@router.post("", status_code=202, response_model=JobOut, responses=ERRORS)
def create_job(
    state: State, response: Response, form: Annotated[UploadForm, Form(media_type="multipart/form-data")]
) -> dict[str, Any]:
    """Upload an image and queue its prediction; answers at once with the queued job."""
    file = form.file
    if file is None:
        raise HTTPException(400, "no file was uploaded: send the image as the multipart form field 'file'")
    manager = state.jobs
    manager.purge_expired()
    try:
        job = manager.reserve(safe_display_name(file.filename))
    except QueueFull as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    try:
        receive_upload(file, job, state.settings, state.model.card)
    except BaseException:
        manager.discard(job)
        raise
    manager.start(job, form.options(), job.image)
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return job_view(manager, job)


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
def job_status(state: State, job_id: str) -> dict[str, Any]:
    """Status, progress and, once done, the area table and download links."""
    return job_view(state.jobs, find_job(state.jobs, job_id))


@router.delete("/{job_id}", status_code=204, responses=NOT_FOUND)
def delete_job(state: State, job_id: str) -> Response:
    """Delete a job and its files now (a running job stops at its next tile batch)."""
    try:
        state.jobs.delete(job_id)
    except KeyError:
        raise HTTPException(404, f"no job {job_id!r}: it never existed, expired or was deleted") from None
    return Response(status_code=204)


@router.get("/{job_id}/files/{kind}", response_class=FileResponse, responses=FILE_RESPONSES)
def job_file(state: State, job_id: str, kind: FileKind) -> FileResponse:
    """A job's file: ``preview``/``overlay`` for the page, the others as downloads."""
    job = find_job(state.jobs, job_id)
    if kind.value != "preview" and job.status != JobStatus.DONE:
        progress = "failed" if job.status == JobStatus.FAILED else "has not finished"
        raise HTTPException(409, f"job {job_id} {progress}; its files exist only once it is done")
    path = job.files.get(kind.value)
    if path is None or not path.exists():
        hint = " (GeoTIFFs exist for georeferenced images only)" if kind == FileKind.classes_tif else ""
        raise HTTPException(404, f"this job has no {kind.value} file{hint}")
    if kind.value in VIEWS:
        return FileResponse(path, media_type=VIEWS[kind.value], headers={"Cache-Control": "no-store"})
    return FileResponse(path, media_type=DOWNLOADS[kind.value][2], filename=download_name(job, kind.value))


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


def job_view(manager: JobManager, job: Job) -> dict[str, Any]:
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
