"""``landseg serve`` on a network: off loopback it needs a token, and every request must carry it (the page,
its static files, the API and the downloads); on loopback without a token it works as before."""

import time

import pytest
from typer.testing import CliRunner

from landseg.cli import app as cli_app

pytest.importorskip("fastapi", reason="landseg serve needs fastapi, uvicorn and python-multipart")
fastapi_testclient = pytest.importorskip("fastapi.testclient", reason="the API tests need httpx")

from landseg.serve import ServeSettings, create_app  # noqa: E402 - needs fastapi
from landseg.serve.auth import COOKIE, is_loopback, session_value  # noqa: E402

TOKEN = "correct-horse-battery-staple-42"
SERVER = "http://testserver"  # absolute addresses, so that a path starting "//" is not read as a host
BEARER = {"Authorization": f"Bearer {TOKEN}"}
# Every kind of address the server answers: page, static files and vendored scripts, API docs, the API.
GATED_GETS = [
    "/",
    "/static/app.js",
    "/static/style.css",
    "/static/favicon.svg",
    "/static/index.html",
    "/static/vendor/swagger-ui/swagger-ui-bundle.js",
    "/docs",
    "/openapi.json",
    "/api/health",
    "/api/model",
    "/api/limits",
    "/api/jobs/0123456789abcdef",
    "/no/such/page",
    # the same addresses spelt otherwise
    "//api/model",
    "/static/../api/model",
    "/static/%2e%2e/api/model",
    "/api/model/",
    "/API/model",
]


def make_client(tmp_path, model, token=TOKEN):
    settings = ServeSettings(checkpoint=model.path, workdir=tmp_path / "work", token=token)
    return fastapi_testclient.TestClient(create_app(settings, model=model), follow_redirects=False)


def finished_job(client, image, headers) -> dict:
    with open(image, "rb") as handle:
        created = client.post("/api/jobs", files={"file": ("field.tif", handle)}, headers=headers)
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{created.json()['id']}", headers=headers).json()
        if job["status"] in ("done", "failed"):
            assert job["status"] == "done", job
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_without_the_token_every_address_answers_401(tmp_path, serve_model):
    with make_client(tmp_path, serve_model) as client:
        for path in GATED_GETS:
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token-of-some-length"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": TOKEN},
                {"Cookie": f"{COOKIE}={TOKEN}"},
                {"Cookie": f"{COOKIE}=wrong"},
            ):
                answer = client.get(SERVER + path, headers=headers)
                assert answer.status_code == 401, (path, headers, answer.status_code)
                assert "Bearer" in answer.headers["www-authenticate"] and "token" in answer.json()["detail"]
        for method in ("HEAD", "OPTIONS", "DELETE", "PUT"):
            assert client.request(method, "/api/jobs/0123456789abcdef").status_code == 401, method
        assert client.get("/api/model?token=wrong").status_code == 401
        assert client.get(f"/api/model?token={TOKEN[:-1]}").status_code == 401
        refused = client.post("/api/jobs", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n")})
        assert refused.status_code == 401
        assert refused.headers.get("set-cookie") is None
        # a token in the query of an upload is not accepted: only the page's address signs a browser in
        refused = client.post(f"/api/jobs?token={TOKEN}", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n")})
        assert refused.status_code == 401
        assert list((tmp_path / "work").rglob("upload")) == []


def test_the_bearer_header_opens_the_api_and_the_downloads_and_nothing_else_does(tmp_path, serve_model, serve_images):
    with make_client(tmp_path, serve_model) as client:
        assert client.get("/api/model", headers=BEARER).status_code == 200
        assert client.get("/api/model", headers={"Authorization": f"bearer  {TOKEN}"}).status_code == 200
        job = finished_job(client, serve_images["geotiff"], BEARER)
        urls = [job["preview_url"], job["result"]["overlay_url"], *(d["url"] for d in job["result"]["downloads"])]
        assert any(url.endswith("/files/classes_tif") for url in urls)
        for url in urls:
            assert client.get(url, headers=BEARER).status_code == 200, url
            assert client.get(url).status_code == 401, url
            assert client.get(SERVER + "/" + url).status_code == 401, url
        assert client.delete(f"/api/jobs/{job['id']}").status_code == 401
        assert client.delete(f"/api/jobs/{job['id']}", headers=BEARER).status_code == 204


def test_the_browser_signs_in_once_by_address_and_its_cookie_carries_the_page(tmp_path, serve_model, serve_images):
    with make_client(tmp_path, serve_model) as client:
        signed = client.get(f"/?token={TOKEN}")
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={session_value(TOKEN)};")
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower() and TOKEN not in cookie
        # the token leaves the address; other query parameters stay; the redirect never leaves the site
        assert client.get(f"/docs?x=1&token={TOKEN}").headers["location"] == "/docs?x=1"
        assert client.get(f"{SERVER}//evil.example/?token={TOKEN}").headers["location"] == "/evil.example/"

        # what the page then does, with the cookie the browser keeps (same-origin requests carry it)
        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        for path in (
            "/static/app.js",
            "/static/vendor/panzoom/panzoom.min.js",
            "/api/model",
            "/api/limits",
            "/docs",
            "/openapi.json",
        ):
            assert client.get(path).status_code == 200, path
        job = finished_job(client, serve_images["geotiff"], {})
        for download in job["result"]["downloads"]:
            assert client.get(download["url"]).status_code == 200, download["kind"]

        client.cookies.clear()
        assert client.get("/api/model").status_code == 401
        assert client.get(job["result"]["downloads"][0]["url"]).status_code == 401


def test_loopback_without_a_token_works_as_before(tmp_path, serve_model):
    with make_client(tmp_path, serve_model, token=None) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/api/model").status_code == 200


def serve_command(monkeypatch, args, env=None):
    served = {}
    monkeypatch.setattr(
        "landseg.serve.app.run_server", lambda settings, host, port: served.update(settings=settings, host=host)
    )
    return CliRunner().invoke(cli_app, ["serve", *args], env=env or {}), served


def test_off_loopback_the_server_refuses_to_start_without_a_token(monkeypatch, tmp_path):
    monkeypatch.delenv("LANDSEG_TOKEN", raising=False)
    checkpoint = ["--checkpoint", str(tmp_path / "m.ckpt")]
    for host in ("0.0.0.0", "192.168.1.20", "::", "my-host.example"):
        result, served = serve_command(monkeypatch, [*checkpoint, "--host", host])
        assert result.exit_code == 1 and not served, host
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "needs an access token" in lines[0] and "LANDSEG_TOKEN" in lines[0], result.output
    result, served = serve_command(monkeypatch, [*checkpoint, "--host", "0.0.0.0", "--token", "short"])
    assert result.exit_code == 1 and not served and "at least 16" in result.output

    result, served = serve_command(monkeypatch, [*checkpoint, "--host", "0.0.0.0"], env={"LANDSEG_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert served["host"] == "0.0.0.0" and served["settings"].token.get_secret_value() == TOKEN
    assert TOKEN not in repr(served["settings"])
    result, served = serve_command(monkeypatch, [*checkpoint, "--host", "0.0.0.0", "--token", TOKEN])
    assert result.exit_code == 0 and served["settings"].token.get_secret_value() == TOKEN

    result, served = serve_command(monkeypatch, checkpoint)  # the default: loopback, no token needed
    assert result.exit_code == 0 and served["host"] == "127.0.0.1" and served["settings"].token is None


def test_what_counts_as_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.org", ""]))
