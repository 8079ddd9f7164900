"""End to end in a real browser: Playwright drives Debian's Chromium against a live explorer.

The server runs in a thread on a free loopback port with three tiny trained runs. The test moves the
mouse across a scatter and checks, pixel for pixel, that the decoded image shown is the server's
decoding of the latent point under the cursor; pins two points and checks the interpolation strip;
switches the classifier overlay on; encodes a picked and a dropped test image; uses the slider of a
3-D latent; picks a class for a conditional run; shows the prior's samples and grid; links the pointers of
two 2-D panels. Screenshots go to the test's temporary folder (printed with -s).
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import threading
import time

import browserkit
import httpx
import numpy as np
import pytest
import uvicorn
from browserkit import canvas_grey, hover, launch, shown_codes, tiled
from PIL import Image

from vaelab.explore.server import bind, create_app

sync_api = browserkit.sync_api()


@contextlib.contextmanager
def serving(app):
    """The app on a free loopback port in a thread: its URL."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the explorer did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(explore_runs, find_classifier):
    with serving(create_app([explore_runs["vae"], explore_runs["ae"], explore_runs["vae3"]], find_classifier)) as url:
        yield url


def open_page(browser, url):
    """A page on the explorer at `url`, once every panel is ready, and the list its page errors go to."""
    page = browser.new_page(viewport={"width": 1500, "height": 1400})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
    return page, errors


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page, errors = open_page(browser, server)
        yield page
        browser.close()
        assert not errors, errors


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explore-screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


def decode(server, run, z, label=None) -> np.ndarray:
    """The server's own decoding, uint8 [N, H, W] (grey images)."""
    response = httpx.post(f"{server}/api/runs/{run}/decode", json={"z": z, "format": "raw", "label": label})
    response.raise_for_status()
    return np.frombuffer(response.content, np.uint8).reshape(len(z), 28, 28)


def test_the_image_under_the_cursor_is_the_servers_decoding(page, server, shots):
    seen = [hover(page, "vae", x, 230) for x in range(40, 440, 80)]
    zs = [z for z, _ in seen]
    assert all(b[0] > a[0] for a, b in itertools.pairwise(zs)), zs  # moving right moves along z0 ...
    assert len({round(z[1], 9) for z in zs}) == 1  # ... on one row of the plane
    assert hover(page, "vae", 440, 100)[0][1] > zs[-1][1]  # moving up moves up along z1
    assert len({image.tobytes() for _, image in seen}) > 1  # the image changes as the mouse moves
    for z, image in seen:
        assert np.array_equal(image, decode(server, "vae", [z])[0])
    page.screenshot(path=shots / "hover.png", full_page=True)


def test_two_pins_show_the_interpolation_strip(page, server, shots):
    box = page.locator('[data-run="vae"] .scatter').bounding_box()
    ends = []
    for x, y in ((100, 120), (380, 360)):
        page.mouse.click(box["x"] + x, box["y"] + y)
        page.wait_for_selector('[data-run="vae"][data-decoding="0"]')
        ends.append(json.loads(page.get_attribute('[data-run="vae"] .decoded', "data-z")))
    page.wait_for_function("s => !s.hidden && s.dataset.z", arg=page.query_selector('[data-run="vae"] .strip'))
    path = json.loads(page.get_attribute('[data-run="vae"] .strip', "data-z"))
    assert len(path) == 10 and path[0] == ends[0] and path[-1] == ends[1]
    strip = canvas_grey(page, '[data-run="vae"] .strip')
    assert np.array_equal(strip, np.concatenate(list(decode(server, "vae", path)), axis=1))
    page.screenshot(path=shots / "pinned.png", full_page=True)
    page.click('[data-run="vae"] .unpin')
    assert page.locator('[data-run="vae"] .strip').is_hidden()


def test_the_overlay_shades_the_plane_and_names_the_guess(page, server, shots):
    scatter = '[data-run="vae"] .scatter'
    corner_alpha = f"() => document.querySelector('{scatter}').getContext('2d').getImageData(1, 1, 1, 1).data[3]"
    assert page.evaluate(corner_alpha) == 0
    page.check('[data-run="vae"] .overlay')
    page.wait_for_function(f"() => ({corner_alpha})() > 0")  # the shading reaches the empty corner
    z, _ = hover(page, "vae", 230, 230)
    guess = httpx.post(f"{server}/api/runs/vae/classify", json={"z": [z]}).json()
    expected = (f"classifier: {guess['labels'][0]} ({round(100 * guess['confidence'][0])}% sure); "
                + ("a hole: unlike every reconstruction" if guess["hole"][0] else "like its reconstructions"))
    page.wait_for_function("([s, text]) => document.querySelector(s).textContent === text",
                           arg=['[data-run="vae"] .guess', expected])
    page.screenshot(path=shots / "overlay.png", full_page=True)


def test_a_picked_or_dropped_image_is_encoded_in_every_panel(page, server, shots):
    page.fill("#test-index", "7")
    page.click("#pick")
    for run in ("vae", "ae", "vae3"):
        expected = httpx.post(f"{server}/api/runs/{run}/reconstruct", json={"index": 7}).json()
        page.wait_for_function("([s, src]) => document.querySelector(s).src === src",
                               arg=[f'[data-run="{run}"] .reconstruction', expected["reconstruction"]])
    # a dark-on-light copy of test image 3, dropped on the page: inverted back, it encodes like the original
    original = httpx.post(f"{server}/api/runs/vae/reconstruct", json={"index": 3}).json()
    digit = np.asarray(Image.open(io.BytesIO(base64.b64decode(original["input"].split(",")[1]))))
    png = io.BytesIO()
    Image.fromarray(255 - digit).save(png, format="PNG")
    page.evaluate("""bytes => {
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(bytes)], "digit.png", {type: "image/png"}));
        document.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    }""", list(png.getvalue()))
    page.wait_for_function("([s, src]) => document.querySelector(s).src === src",
                           arg=['[data-run="vae"] .input', original["input"]])
    page.screenshot(path=shots / "encoded.png", full_page=True)


def test_a_larger_latent_sets_the_hidden_dimensions_with_sliders(page, server, shots):
    panel = '[data-run="vae3"]'
    assert page.locator(f"{panel} .sliders input").count() == 1  # z2; z0 and z1 are on the axes
    before, image = hover(page, "vae3", 200, 200)
    page.eval_on_selector(f"{panel} .sliders input", "s => { s.value = s.max; s.dispatchEvent(new Event('input')); }")
    page.wait_for_function("([s, z]) => document.querySelector(s).dataset.z !== z",
                           arg=[f"{panel} .decoded", json.dumps(before)])
    page.wait_for_selector(f'{panel}[data-decoding="0"]')
    after = json.loads(page.get_attribute(f"{panel} .decoded", "data-z"))
    assert after[:2] == before[:2] and after[2] > before[2]
    assert np.array_equal(canvas_grey(page, f"{panel} .decoded"), decode(server, "vae3", [after])[0])
    page.select_option(f"{panel} .mode", "pca")
    z, image = hover(page, "vae3", 300, 150)
    assert len(z) == 3 and np.array_equal(image, decode(server, "vae3", [z])[0])
    page.screenshot(path=shots / "sliders.png", full_page=True)


def test_a_conditional_run_decodes_the_chosen_class_under_the_cursor(page, explore_runs, find_classifier, shots):
    with serving(create_app([explore_runs["cvae"]], find_classifier)) as url:
        conditional, errors = open_page(page.context.browser, url)
        assert conditional.locator('[data-run="cvae"] .condition').is_visible()
        shown = {}
        for label, x in (("7", 200), ("1", 260)):
            conditional.select_option('[data-run="cvae"] .label', label)
            z, image = hover(conditional, "cvae", x, 230)
            assert np.array_equal(image, decode(url, "cvae", [z], label=int(label))[0])
            shown[label] = image, decode(url, "cvae", [z])[0]
        assert not all(np.array_equal(with_label, without) for with_label, without in shown.values())
        conditional.screenshot(path=shots / "conditional.png", full_page=True)
        conditional.close()
        assert not errors, errors
    assert page.locator('[data-run="vae"] .condition').is_hidden()  # no class selector for an unconditional run


def test_the_priors_samples_and_grid_are_the_servers_decodings(page, server, shots):
    panel = '[data-run="vae"]'
    prior = httpx.get(f"{server}/api/runs/vae/codes").json()["prior"]
    page.click(f"{panel} .show-samples")
    samples = shown_codes(page, f"{panel} .samples")
    assert samples == prior["samples"]  # the report's seeded samples
    assert np.array_equal(canvas_grey(page, f"{panel} .samples"), tiled(decode(server, "vae", samples), 10))
    page.click(f"{panel} .show-grid")
    grid = shown_codes(page, f"{panel} .grid")
    assert grid == prior["grid"] and len(grid) == prior["grid_side"] ** 2
    assert np.array_equal(canvas_grey(page, f"{panel} .grid"), tiled(decode(server, "vae", grid), prior["grid_side"]))
    page.screenshot(path=shots / "samples-grid.png", full_page=True)


def test_linked_pointers_decode_the_same_code_in_every_2d_panel(explore_runs, find_classifier, page):
    with serving(create_app([explore_runs["ae"], explore_runs["vae"]], find_classifier)) as url:
        pair, errors = open_page(page.context.browser, url)
        assert pair.is_checked("#link")  # on by default where every latent is 2-D
        z, _ = hover(pair, "ae", 200, 200)
        pair.wait_for_function("([s, z]) => document.querySelector(s).dataset.z === z",
                               arg=['[data-run="vae"] .decoded', json.dumps(z, separators=(",", ":"))])
        pair.wait_for_selector('[data-run="vae"][data-decoding="0"]')
        assert np.array_equal(canvas_grey(pair, '[data-run="vae"] .decoded'), decode(url, "vae", [z])[0])
        pair.uncheck("#link")
        followed = pair.get_attribute('[data-run="vae"] .decoded', "data-z")
        hover(pair, "ae", 300, 300)
        assert pair.get_attribute('[data-run="vae"] .decoded', "data-z") == followed
        pair.close()
        assert not errors, errors
    assert page.locator("#link-toggle").is_hidden()  # a 3-D panel is in the first page: nothing to link
