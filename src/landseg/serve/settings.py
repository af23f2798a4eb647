"""The server's settings: which model, and the limits that keep one machine safe from its users."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from landseg.errors import ConfigError
from landseg.predict.choices import Engine

MEBIBYTE = 1024 * 1024
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: Path | None = None
    model: str | None = Field(None, description="A zoo model by name, instead of a checkpoint.")
    engine: Engine = Field(
        "auto", description="As `landseg predict --engine`: auto runs ONNX Runtime on the CPU when installed."
    )
    max_upload_mb: float = Field(200.0, gt=0, description="Largest accepted upload, in MiB.")
    max_pixels: int = Field(
        50_000_000,
        gt=0,
        description="Largest accepted image, width x height. The in-memory engine holds about "
        "(bands + 2 x classes) x 4 bytes per pixel while predicting.",
    )
    max_running_jobs: int = Field(1, ge=1, le=64, description="Predictions that run at the same time.")
    max_queued_jobs: int = Field(8, ge=0, le=1000, description="Uploads that may wait for a free worker.")
    job_ttl_minutes: float = Field(60.0, gt=0, description="Results are deleted this long after a job ends.")
    preview_max_side: int = Field(
        4096, ge=256, le=16384, description="Longest side of the image and overlay the page shows."
    )
    workdir: Path | None = Field(
        None, description="Folder in which the private work folder is made (default: the system's temp folder)."
    )
    token: SecretStr | None = Field(
        None, description="Access token every request must carry (required off loopback: serve.auth)."
    )

    @model_validator(mode="after")
    def _one_model(self) -> ServeSettings:
        if (self.checkpoint is None) == (self.model is None):
            raise ValueError("give exactly one model: --checkpoint FILE or --model NAME")
        return self

    @property
    def model_reference(self) -> str:
        """What ``predict.models.load_model`` loads: the checkpoint's path or ``zoo:NAME``."""
        from landseg.predict.models import model_references

        return model_references([self.checkpoint] if self.checkpoint else [], [self.model] if self.model else [])[0]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MEBIBYTE)

    @property
    def job_ttl_seconds(self) -> float:
        return self.job_ttl_minutes * 60.0

    @classmethod
    def from_options(cls, **options) -> ServeSettings:
        """Settings from command-line options, a bad value becoming one clear ``ConfigError``."""
        try:
            return cls(**options)
        except ValidationError as exc:
            problems = "; ".join(
                (f"--{'-'.join(str(part) for part in error['loc']).replace('_', '-')}: " if error["loc"] else "")
                + error["msg"].removeprefix("Value error, ")
                for error in exc.errors()
            )
            raise ConfigError(problems) from None
