"""The JSON the API speaks, as pydantic models, so that ``/openapi.json`` documents every field."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import UploadFile
from pydantic import BaseModel, Field

from landseg.serve.engine import JobOptions
from landseg.serve.jobs import JobStatus
from landseg.serve.uploads import ImageInfo


class FileKind(StrEnum):
    """Files of a job: ``preview`` exists once the upload is accepted, the others once the job is done."""

    preview = "preview"
    overlay = "overlay"
    classes_tif = "classes_tif"
    classes_png = "classes_png"
    color_png = "color_png"
    polygons_geojson = "polygons_geojson"
    areas_csv = "areas_csv"


class UploadForm(JobOptions):
    """The multipart form of ``POST /api/jobs``: the image and the job's options."""

    file: UploadFile | None = Field(None, description="The image: PNG, JPEG or TIFF/GeoTIFF, judged by content.")

    def options(self) -> JobOptions:
        return JobOptions(**self.model_dump(exclude={"file"}))


class ErrorOut(BaseModel):
    detail: str = Field(description="What is wrong, in one sentence a person can act on.")


class ClassInfo(BaseModel):
    index: int = Field(description="Value of the class in the class map.")
    name: str
    color: str = Field(description="Display colour, #RRGGBB, as in the overlay and every output.")


class ModelInfo(BaseModel):
    checkpoint: str = Field(description="File name of the checkpoint.")
    architecture: str | None
    encoder: str | None
    schema_: str = Field(alias="schema", description="Name of the class schema.")
    schema_description: str
    classes: list[ClassInfo]
    bands: list[int] = Field(description="1-based bands read from every input, in model order.")
    band_names: list[str] | None
    input_scale: float = Field(description="Images are resampled by this factor before prediction.")
    tile_size: int
    validation_miou: float | None = Field(description="Best validation mIoU recorded during training.")
    training: dict[str, Any] = Field(description="Provenance: experiment, image counts, steps, version.")


class LimitsInfo(BaseModel):
    max_upload_bytes: int
    max_pixels: int
    formats: list[str]
    max_running_jobs: int
    max_queued_jobs: int
    job_ttl_seconds: float
    preview_max_side: int


class AreaRow(BaseModel):
    index: int
    name: str
    color: str
    pixels: int
    share: float = Field(description="Share of the image's valid pixels, 0-1.")
    area_m2: float | None = Field(description="Ground area; null unless the image is in a projected CRS.")
    area_ha: float | None


class DownloadLink(BaseModel):
    kind: FileKind
    label: str
    url: str
    filename: str


class JobResult(BaseModel):
    areas: list[AreaRow]
    overlay_url: str
    downloads: list[DownloadLink]


class JobOut(BaseModel):
    id: str
    status: JobStatus
    stage: str = Field(description="What the job is doing now, e.g. 'queued', 'predicting'.")
    progress: float = Field(ge=0, le=1)
    queue_position: int | None = Field(description="1 for the next job to start; null unless queued.")
    filename: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_seconds: float = Field(description="From the upload being accepted to the result (or now).")
    image: ImageInfo
    options: JobOptions
    preview_url: str
    error: str | None
    result: JobResult | None
