"""``landseg serve``: options in, a running web app out (``serve.app.run_server``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from landseg.predict import choices
from landseg.serve.settings import DEFAULT_HOST, DEFAULT_PORT


def serve_command(
    checkpoint: Annotated[Path | None, typer.Option(help="A landseg checkpoint (.ckpt).")] = None,
    model: Annotated[str | None, typer.Option(help="A zoo model by name instead (`landseg models`).")] = None,
    engine: Annotated[
        choices.Engine,
        typer.Option(
            help="auto (ONNX Runtime on CPU when installed), torch or onnxruntime: the choice `landseg predict` makes."
        ),
    ] = "auto",
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 opens the app to the whole network.")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload, in MiB.")] = 200.0,
    max_pixels: Annotated[int, typer.Option(help="Largest accepted image, width x height pixels.")] = 50_000_000,
    max_running_jobs: Annotated[int, typer.Option(help="Predictions that run at the same time.")] = 1,
    max_queued_jobs: Annotated[int, typer.Option(help="Uploads that may wait for a free worker.")] = 8,
    job_ttl_minutes: Annotated[
        float, typer.Option(help="Results are deleted this many minutes after a job ends.")
    ] = 60.0,
    workdir: Annotated[
        Path | None, typer.Option(help="Where the private work folder is made (default: the system's temp).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LANDSEG_TOKEN",
            show_envvar=True,
            help="Access token every request must carry; required with a --host other "
            "than loopback (the environment variable keeps it out of `ps`).",
        ),
    ] = None,
):
    """A local web app: upload an image, get its land-cover map, legend, areas and downloads."""
    from landseg.serve.app import run_server
    from landseg.serve.auth import required_token
    from landseg.serve.settings import ServeSettings

    token = required_token(host, token)  # off loopback: no token, no server
    settings = ServeSettings.from_options(
        checkpoint=checkpoint,
        model=model,
        engine=engine,
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        max_running_jobs=max_running_jobs,
        max_queued_jobs=max_queued_jobs,
        job_ttl_minutes=job_ttl_minutes,
        workdir=workdir,
        token=token,
    )
    run_server(settings, host=host, port=port)
