"""The FastAPI application: middleware, lifespan and the routers of ``serve/routes``.

``create_app`` loads the model at once, so a bad checkpoint fails before a port is opened, and puts
everything the routes share on ``app.state.serve`` (``ServeState``). The private work folder, the
worker threads and the expiry loop live exactly as long as the app's lifespan; everything uploaded or
produced is deleted when the server stops. ``run_server`` serves the app with uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import typer
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from landseg import __version__
from landseg.checkpoint import LoadedModel
from landseg.predict.networks import Member
from landseg.serve.auth import TokenGate
from landseg.serve.body_limit import BodySizeLimit
from landseg.serve.engine import PredictionRunner, load_served_member, run_prediction
from landseg.serve.jobs import JobManager
from landseg.serve.routes import ROUTERS
from landseg.serve.routes.pages import STATIC
from landseg.serve.settings import DEFAULT_HOST, DEFAULT_PORT, ServeSettings
from landseg.serve.state import ServeState
from landseg.serve.uploads import ACCEPTED

# Room for the multipart framing and option fields around the file itself.
MULTIPART_OVERHEAD = 64 * 1024


def create_app(
    settings: ServeSettings, model: LoadedModel | Member | None = None, runner: PredictionRunner = run_prediction
) -> FastAPI:
    """The web app for one model. ``model`` and ``runner`` replace the defaults in tests."""
    model = model if model is not None else load_served_member(settings.model_reference, settings.engine)
    state = ServeState(settings, model, runner)
    app = FastAPI(
        title="landseg serve",
        version=__version__,
        description=(
            f"Land-cover maps from imagery with the model `{state.model_info['checkpoint']}`. Upload an image "
            f"({ACCEPTED}) to `POST /api/jobs`, poll `GET /api/jobs/{{id}}` until `status` is `done`, then "
            "fetch the overlay, the area table and the downloads it lists."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.serve = state
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD, message_limit=settings.max_upload_bytes
    )
    app.middleware("http")(security_headers)
    if settings.token is not None:
        # Added last, so outermost: no route, page, static file or download answers before the token is checked.
        app.add_middleware(TokenGate, token=settings.token.get_secret_value())
    app.add_exception_handler(RequestValidationError, one_line_validation_errors)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = ServeState.of(app)
    manager = state.open_jobs()
    expiry = asyncio.create_task(expire_jobs(manager, min(60.0, max(1.0, state.settings.job_ttl_seconds / 4))))
    try:
        yield
    finally:
        expiry.cancel()
        await run_in_threadpool(state.close_jobs)


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def one_line_validation_errors(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


async def expire_jobs(manager: JobManager, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await run_in_threadpool(manager.purge_expired)


def run_server(
    settings: ServeSettings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "info"
) -> None:
    """Load the model, then serve the app with uvicorn until interrupted."""
    import uvicorn

    app = create_app(settings)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    signed = "?token=TOKEN once (API clients: Authorization: Bearer TOKEN)" if settings.token is not None else ""
    typer.echo(
        f"landseg serve: open http://{shown}:{port}/{signed} (API docs at /docs); "
        "Ctrl+C stops the server and deletes every upload and result"
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
