"""The ``landseg serve`` command: options in, a running server out.

Kept free of FastAPI and torch imports at module level so that ``landseg --help`` stays fast; the
CLI registers ``serve`` from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def run_server(settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "info") -> None:
    """Load the model, then serve the app with uvicorn until interrupted."""
    import uvicorn

    from landseg.serve.app import create_app

    app = create_app(settings)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    signed = "?token=TOKEN once (API clients: Authorization: Bearer TOKEN)" if settings.token is not None else ""
    typer.echo(
        f"landseg serve: open http://{shown}:{port}/{signed} (API docs at /docs); "
        "Ctrl+C stops the server and deletes every upload and result"
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def serve(
    checkpoint: Annotated[Path | None, typer.Option(help="A landseg checkpoint (.ckpt).")] = None,
    model: Annotated[str | None, typer.Option(help="A zoo model by name instead (`landseg models`).")] = None,
    engine: Annotated[
        str,
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
