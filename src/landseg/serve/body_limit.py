"""Refuse request bodies over a size before they are stored, declared or not.

A declared ``Content-Length`` over the limit is answered 413 at once. A body without one (chunked)
is counted as it arrives, and reading stops with 413 once it passes the limit, so a client cannot
fill the disk by simply not saying how much it sends.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_message(limit: int) -> str:
    size = f"{limit / 1024 / 1024:.4g} MiB" if limit >= 1024 * 1024 else f"{limit / 1024:.4g} KiB"
    return f"the upload is larger than this server accepts ({size} at most)"


class BodySizeLimit:
    """ASGI middleware: at most ``max_bytes`` of request body per request."""

    def __init__(self, app: ASGIApp, max_bytes: int, message_limit: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        # The limit users are told about: the file's, not the file's plus multipart framing.
        self.message = too_large_message(message_limit or max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes HTTPExceptions raised while reading a body through unchanged.
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, counted_receive, send)
