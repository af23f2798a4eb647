"""Who may use a server that listens beyond this machine: the holders of one shared token.

``landseg serve`` listens on 127.0.0.1 by default, where only this machine's users reach it. Bound to
any other address it refuses to start without a token (``--token`` or ``LANDSEG_TOKEN``), and
``TokenGate`` then checks it on every request, before any route, static file or download is reached:

- API clients send ``Authorization: Bearer TOKEN``;
- a browser opens ``/?token=TOKEN`` once: the answer is a redirect to the same address without the token,
  with an HttpOnly, SameSite=Lax cookie that the page's own requests (its script, the API, images and
  downloads, all same-origin) then carry. The cookie holds an HMAC of the token, not the token itself.

Everything else is answered 401. Comparisons are constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from landseg.errors import ConfigError

TOKEN_ENV = "LANDSEG_TOKEN"
COOKIE = "landseg_session"
QUERY = "token"
MIN_TOKEN_LENGTH = 16
SESSION_CONTEXT = b"landseg serve browser session"
UNAUTHORIZED = (
    "this server needs its access token: send the header 'Authorization: Bearer TOKEN', or open "
    "/?token=TOKEN once in the browser"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to any interface


def required_token(host: str, token: str | None) -> str | None:
    """The token the server checks on every request, or None (loopback without a token, as before).

    ``ConfigError`` when the server would listen beyond this machine without a token, or with one too
    short to resist guessing."""
    token = (token or "").strip() or None
    if token is None:
        if is_loopback(host):
            return None
        raise ConfigError(
            f"--host {host} opens the server to the network, so it needs an access token: give --token TOKEN or "
            f"set {TOKEN_ENV} (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"--token is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH}, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    return token


def session_value(token: str) -> str:
    """What the browser's cookie holds: an HMAC of the token, so the cookie never carries the token."""
    return hmac.new(token.encode("utf-8"), SESSION_CONTEXT, hashlib.sha256).hexdigest()


def same_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class TokenGate:
    """ASGI middleware: every HTTP request and websocket must carry the token (header or cookie)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token
        self.session = session_value(token)

    def authorized(self, headers: Headers) -> bool:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and same_secret(credentials.strip(), self.token):
            return True
        cookies: dict[str, str] = {}
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            cookies.setdefault(name, value)
        return same_secret(cookies.get(COOKIE), self.session)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            offered = [value for name, value in query if name == QUERY]
            if len(offered) == 1 and same_secret(offered[0], self.token):
                await self.sign_in(scope, [(n, v) for n, v in query if n != QUERY])(scope, receive, send)
                return
        if self.authorized(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await JSONResponse(
            {"detail": UNAUTHORIZED},
            status_code=401,
            headers={
                "WWW-Authenticate": 'Bearer realm="landseg"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )(scope, receive, send)

    def sign_in(self, scope: Scope, rest: list[tuple[str, str]]) -> RedirectResponse:
        """The same address without the token, and the session cookie: the token leaves the address bar."""
        # One leading slash only: "//host" would send the browser to another site.
        path = scope.get("raw_path") or quote(scope["path"]).encode("ascii")  # still percent-encoded
        location = "/" + path.decode("latin-1").lstrip("/") + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            COOKIE, self.session, httponly=True, samesite="lax", path="/", secure=scope.get("scheme") == "https"
        )
        return response
