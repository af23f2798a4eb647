"""End to end in a real headless Chromium: drop a GeoTIFF on the page, wait for the map, check, screenshot.

Uses Debian's ``chromium`` through Playwright's Python package (no browser download). It skips, saying
why, only where Chromium or Playwright is not installed. Environment variables for manual runs:
``LANDSEG_SERVE_E2E_SIZE`` (image side, default 384), ``LANDSEG_SERVE_E2E_CHECKPOINT`` (another model,
e.g. a trained one for the documentation's screenshot), ``LANDSEG_SERVE_E2E_IMAGE`` (another image)
and ``LANDSEG_SERVE_E2E_SCREENSHOT`` (where to copy the screenshot as well).
"""

import base64
import mimetypes
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import rasterio

from landseg.data.synthetic import generate_scene, write_scene

pytest.importorskip("fastapi", reason="landseg serve needs fastapi, uvicorn and python-multipart")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package")
uvicorn = pytest.importorskip("uvicorn", reason="the browser test needs uvicorn")

from landseg.serve import ServeSettings, create_app  # noqa: E402 - needs fastapi

CHROMIUM = Path(os.environ.get("LANDSEG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLASS_NAMES = ["Field", "Forest", "Water", "Road", "Building"]
DROP_FILE = """([name, type, encoded]) => {
    const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type }));
    const viewer = document.getElementById("viewer");
    for (const kind of ["dragenter", "dragover", "drop"]) {
        viewer.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }
}"""


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, serve_checkpoint):
    """The app served by uvicorn on a free port of 127.0.0.1, in a thread."""
    checkpoint = Path(os.environ.get("LANDSEG_SERVE_E2E_CHECKPOINT") or serve_checkpoint)
    settings = ServeSettings(checkpoint=checkpoint, workdir=tmp_path_factory.mktemp("serve_work"))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.requested = []
    page.problems = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.goto(live_server)
    page.wait_for_selector("body[data-state=ready]", timeout=15_000)
    yield page
    page.close()


def drop(page, path: Path) -> None:
    """Drag ``path`` onto the viewer the way a person's file manager does."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    page.evaluate(DROP_FILE, [path.name, mime, base64.b64encode(path.read_bytes()).decode()])


def test_dropped_geotiff_is_mapped_with_legend_areas_and_downloads(page, live_server, tmp_path, record_property):
    size = int(os.environ.get("LANDSEG_SERVE_E2E_SIZE", "384"))
    image = os.environ.get("LANDSEG_SERVE_E2E_IMAGE")
    if image:
        image = Path(image)
    else:
        image, _ = write_scene(generate_scene(size, seed=7), tmp_path / "farmland.tif", tmp_path / "mask.tif")
    assert "validation mIoU" in page.inner_text("#model-summary")
    other_model = bool(os.environ.get("LANDSEG_SERVE_E2E_CHECKPOINT"))
    assert other_model or page.locator("#model-facts .chip").all_inner_texts() == CLASS_NAMES

    started = time.monotonic()
    drop(page, image)
    page.wait_for_selector("body[data-state=done]", timeout=120_000)
    seconds = time.monotonic() - started
    record_property("upload_to_result_seconds", round(seconds, 2))
    page_seconds = page.get_attribute("body", "data-result-seconds")
    print(f"\nupload to result for {image.name}: {seconds:.2f} s (the page measured {page_seconds} s)")

    overlay = page.locator("#overlay-layer")
    assert overlay.is_visible() and page.locator("#image-layer").is_visible()
    widths = [
        page.eval_on_selector(f"#{name}", "node => node.naturalWidth") for name in ("overlay-layer", "image-layer")
    ]
    assert widths[0] == widths[1] > 0
    legend = page.locator("#legend-list li")
    assert page.locator("#legend").is_visible()
    names = [legend.nth(i).get_attribute("data-cls") for i in range(legend.count())]
    swatches = page.locator("#legend-list .swatch").evaluate_all(
        "nodes => nodes.map((node) => getComputedStyle(node).backgroundColor)"
    )
    if not other_model:
        assert names == CLASS_NAMES
        assert swatches[0] == "rgb(230, 200, 79)" and swatches[2] == "rgb(31, 119, 180)"
    share_cells = page.locator("#area-table tbody td:nth-child(2)").all_inner_texts()
    shares = [float(text.rstrip("%").lstrip("<")) for text in share_cells]
    assert len(shares) == len(names) and sum(shares) == pytest.approx(100, abs=0.5)
    kinds = page.locator("#downloads a").evaluate_all("links => links.map(a => a.dataset.kind)")
    expected = ["classes_tif", "classes_png", "color_png", "polygons_geojson", "areas_csv"]
    with rasterio.open(image) as src:
        georeferenced = src.crs is not None
    assert kinds == expected[0 if georeferenced else 1 :]

    page.fill("#opacity", "30")
    page.dispatch_event("#opacity", "input")
    assert overlay.evaluate("node => node.style.opacity") == "0.3"
    page.fill("#opacity", "65")
    page.dispatch_event("#opacity", "input")

    screenshot = tmp_path / "serve_screenshot.png"
    page.screenshot(path=str(screenshot))
    record_property("screenshot", str(screenshot))
    print(f"screenshot: {screenshot}")
    copy_to = os.environ.get("LANDSEG_SERVE_E2E_SCREENSHOT")
    if copy_to:
        shutil.copyfile(screenshot, copy_to)
    assert screenshot.stat().st_size > 10_000

    # Everything the page used came from this server.
    assert page.requested and all(url.startswith(live_server) for url in page.requested), page.requested
    assert page.problems == []


def test_a_file_that_is_no_image_gets_the_servers_message(page, tmp_path):
    notes = tmp_path / "notes.tif"
    notes.write_text("field notes, not an image")
    drop(page, notes)
    page.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert "not a PNG, JPEG or TIFF/GeoTIFF image" in page.inner_text("#error")
    assert page.locator("#overlay-layer").is_hidden()
    # The browser logs the refused request itself; the page raised nothing.
    assert all("415" in problem for problem in page.problems)
