"""Prediction jobs: a bounded queue in front of a few worker threads, progress, and expiry.

Each job owns one folder, named by the server, inside the server's private work folder; nothing a
client sends ever becomes part of a path. At most ``max_running`` jobs run at once and at most
``max_queued`` more wait; past that, ``reserve`` refuses with ``QueueFull`` so the server answers
503 instead of piling up uploads. Finished jobs and their files are deleted ``ttl_seconds`` after
they finish. A job is cancelled at its next progress report, which is how shutdown and ``DELETE``
stop a running prediction.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from landseg.errors import LandsegError
from landseg.serve.uploads import scrub_paths

log = logging.getLogger(__name__)

ProgressReport = Callable[[float, str], None]


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class QueueFull(Exception):
    """Every worker is busy and the queue is full."""


class JobCancelled(Exception):
    """Raised inside a running job when it was deleted or the server is shutting down."""


@dataclass
class Job:
    id: str
    directory: Path
    filename: str
    """The client's file name reduced to a safe stem, for download names only."""
    created: float
    created_at: datetime
    options: Any = None
    image: Any = None
    status: JobStatus = JobStatus.QUEUED
    stage: str = "queued"
    progress: float = 0.0
    started_at: datetime | None = None
    finished: float | None = None
    finished_at: datetime | None = None
    error: str | None = None
    result: Any = None
    files: dict[str, Path] = field(default_factory=dict)
    """Paths by kind: ``input`` and ``preview`` from the upload, the rest from the job."""
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    future: Future | None = field(default=None, repr=False)


Process = Callable[[Job, ProgressReport], Any]


class JobManager:
    def __init__(
        self,
        root: Path,
        process: Process,
        max_running: int = 1,
        max_queued: int = 8,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.root = Path(root)
        self.process = process
        self.max_running = max_running
        self.max_queued = max_queued
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._jobs: dict[str, Job] = {}
        self._reserved: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="landseg-job")

    # -- lifecycle of one job ------------------------------------------------------------------------
    def reserve(self, filename: str) -> Job:
        """A new job with an empty folder for its upload; counts against the queue from now on."""
        with self._lock:
            if self._closing.is_set():
                raise QueueFull("the server is shutting down")
            active = len(self._reserved) + sum(
                job.status in (JobStatus.QUEUED, JobStatus.RUNNING) for job in self._jobs.values()
            )
            if active >= self.max_running + self.max_queued:
                raise QueueFull(
                    f"the server is busy: {self.max_running} job(s) running and {self.max_queued} waiting; "
                    "try again in a minute"
                )
            job_id = secrets.token_urlsafe(12)
            directory = self.root / job_id
            directory.mkdir(mode=0o700)
            job = Job(job_id, directory, filename, self.clock(), datetime.now(UTC))
            self._reserved[job_id] = job
            return job

    def start(self, job: Job, options: Any, image: Any) -> Job:
        """Queue a reserved job whose upload has been checked."""
        with self._lock:
            self._reserved.pop(job.id)
            job.options, job.image = options, image
            self._jobs[job.id] = job
            job.future = self._executor.submit(self._execute, job)
        return job

    def discard(self, job: Job) -> None:
        """Forget a reserved job whose upload was refused, and its files."""
        with self._lock:
            self._reserved.pop(job.id, None)
        shutil.rmtree(job.directory, ignore_errors=True)

    def get(self, job_id: str) -> Job:
        """The job, or ``KeyError`` when it never existed, expired or was deleted."""
        with self._lock:
            return self._jobs[job_id]

    def delete(self, job_id: str) -> None:
        """Remove a job and its files; a running job stops at its next progress report."""
        with self._lock:
            job = self._jobs.pop(job_id)
            job.cancelled.set()
            running = job.status == JobStatus.RUNNING
            if job.future is not None:
                job.future.cancel()
        if not running:
            shutil.rmtree(job.directory, ignore_errors=True)

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to start, None for a job that is not waiting."""
        with self._lock:
            if job.status != JobStatus.QUEUED:
                return None
            waiting = sorted((j for j in self._jobs.values() if j.status == JobStatus.QUEUED), key=lambda j: j.created)
            return 1 + waiting.index(job)

    def elapsed_seconds(self, job: Job) -> float:
        """From the upload being accepted to the job finishing (or now)."""
        return (job.finished if job.finished is not None else self.clock()) - job.created

    # -- housekeeping --------------------------------------------------------------------------------
    def purge_expired(self) -> list[str]:
        """Delete finished jobs older than the TTL; returns their ids."""
        now = self.clock()
        with self._lock:
            expired = [
                job
                for job in self._jobs.values()
                if job.finished is not None and now - job.finished >= self.ttl_seconds
            ]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.directory, ignore_errors=True)
        return [job.id for job in expired]

    def close(self) -> None:
        """Stop taking jobs, cancel waiting and running ones, and delete the whole work folder."""
        self._closing.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the worker ----------------------------------------------------------------------------------
    def _execute(self, job: Job) -> None:
        with self._lock:
            if job.cancelled.is_set():
                return
            job.status, job.stage = JobStatus.RUNNING, "starting"
            job.started_at = datetime.now(UTC)

        def report(fraction: float, stage: str) -> None:
            if job.cancelled.is_set() or self._closing.is_set():
                raise JobCancelled
            job.progress = max(job.progress, min(1.0, fraction))
            job.stage = stage

        outcome: dict[str, Any]
        try:
            outcome = {"result": self.process(job, report), "status": JobStatus.DONE, "stage": "done"}
        except JobCancelled:
            shutil.rmtree(job.directory, ignore_errors=True)
            return
        except LandsegError as exc:
            outcome = {"error": scrub_paths(exc.problem), "status": JobStatus.FAILED, "stage": "failed"}
        except Exception as exc:
            log.exception("job %s failed", job.id)
            outcome = {
                "error": f"internal error while predicting ({type(exc).__name__}); the server log has details",
                "status": JobStatus.FAILED,
                "stage": "failed",
            }
        with self._lock:
            for name, value in outcome.items():
                setattr(job, name, value)
            if job.status == JobStatus.DONE:
                job.progress = 1.0
            job.finished = self.clock()
            job.finished_at = datetime.now(UTC)
            deleted = job.cancelled.is_set()
        if deleted:
            shutil.rmtree(job.directory, ignore_errors=True)
