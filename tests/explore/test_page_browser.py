"""The exported page (`vaelab export --html`) in a real browser, opened from file:// with the network blocked.

Chromium (through Playwright) opens the page of two tiny trained runs, and the tests check that nothing but
the file itself is requested, that the image under the cursor, the pinned strip, the prior's samples and
the decoded grid are PyTorch's pixels, and that the pointers are linked. Pages of untrained models of
every network and likelihood check the in-page decoder against model.decode on 1,000 random codes
(max |difference| <= 1e-4 per pixel); the page works inside an <iframe> and as a notebook's srcdoc iframe.
"""

from __future__ import annotations

import base64
import json

import browserkit
import numpy as np
import pytest
import torch
from browserkit import canvas_grey, hover, launch, shown_codes, tiled
from pagekit import LIKELIHOODS, model_page, random_model

import vaelab
from vaelab.explore.page import PIXEL_TOLERANCE
from vaelab.explore.served import to_uint8

sync_api = browserkit.sync_api()

CHECKED_CODES = 1000


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


class OfflinePage:
    """A page of a browser context with no network: every request but `allowed` files is aborted and logged."""

    def __init__(self, browser, allowed: list[str]):
        self.context = browser.new_context(viewport={"width": 1500, "height": 1400})
        self.context.set_offline(True)
        self.requests, self.errors = [], []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.route("**/*", lambda route: route.continue_() if route.request.url in allowed
                           else route.abort())
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))

    def open(self, url: str, frame_selector: str | None = None):
        self.page.goto(url)
        target = self.page if frame_selector is None else self.page.wait_for_selector(frame_selector).content_frame()
        target.wait_for_selector('body[data-ready="1"]', timeout=60_000)
        return target

    def close(self):
        self.context.close()


def test_the_request_log_sees_what_a_page_asks_for(browser, tmp_path):
    """The control for every `requests == [file]` below: a page that fetches is seen fetching."""
    page_file = tmp_path / "fetches.html"
    page_file.write_text('<!doctype html><script>fetch("https://cdn.example.invalid/model.onnx").catch(() => {});'
                         '</script><img src="weights.bin">')
    session = OfflinePage(browser, [page_file.as_uri()])
    session.page.goto(page_file.as_uri())
    session.page.wait_for_load_state("load")
    assert session.requests[0] == page_file.as_uri()
    assert set(session.requests[1:]) == {"https://cdn.example.invalid/model.onnx",
                                         (tmp_path / "weights.bin").as_uri()}
    session.close()


def pixels(model, zs, label=None) -> np.ndarray:
    """PyTorch's decoding as the explorer shows it: uint8 [N, H, W] (grey images)."""
    with torch.inference_mode():
        images = model.decode(torch.tensor(zs, dtype=torch.float32),
                              None if label is None else torch.full((len(zs),), label))
    return to_uint8(images)[:, 0]


def assert_same_pixels(shown: np.ndarray, expected: np.ndarray):
    """The page's uint8 images are PyTorch's, up to 1 level where a pixel sits on a rounding boundary
    (the pixel bound is 1e-4 of the 0..1 range, 1/40 of a level)."""
    assert shown.shape == expected.shape
    difference = np.abs(shown.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


@pytest.fixture(scope="module")
def exported(explore_runs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    out = folder / "ae-vs-vae.html"
    explorer = vaelab.export_html([explore_runs["ae"], explore_runs["vae"]], out)
    models = {name: vaelab.load(explore_runs[name]) for name in ("ae", "vae")}
    print(f"\nexported page and screenshots: {folder}")
    return out, models, explorer


@pytest.fixture(scope="module")
def offline(browser, exported):
    out, _, _ = exported
    session = OfflinePage(browser, [out.as_uri()])
    page = session.open(out.as_uri())
    yield session, page
    assert not session.errors, session.errors
    assert session.requests == [out.as_uri()]  # the file itself, and nothing else
    session.close()


def test_the_file_shows_pytorchs_pixels_under_the_cursor_with_no_network(offline, exported):
    _, page = offline
    _, models, _ = exported
    for run in ("vae", "ae"):
        seen = [hover(page, run, x, y) for x, y in ((60, 230), (230, 230), (400, 120), (300, 400))]
        assert len({image.tobytes() for _, image in seen}) > 1  # the image changes as the pointer moves
        for z, image in seen:
            assert_same_pixels(image[None], pixels(models[run], [z]))
    assert page.locator(".pick").is_hidden()  # no encoder travels with the page
    assert page.locator('[data-run="vae"] .overlay-toggle').is_hidden()  # nor a classifier


def test_pins_samples_and_grid_are_pytorchs(offline, exported):
    _, page = offline
    out, models, _ = exported
    panel = '[data-run="vae"]'
    box = page.locator(f"{panel} .scatter").bounding_box()
    for x, y in ((100, 120), (380, 360)):
        page.mouse.click(box["x"] + x, box["y"] + y)
        page.wait_for_selector(f'{panel}[data-decoding="0"]')
    path = shown_codes(page, f"{panel} .strip")
    assert len(path) == 10
    assert_same_pixels(canvas_grey(page, f"{panel} .strip")[None],
                       np.concatenate(list(pixels(models["vae"], path)), axis=1)[None])
    page.click(f"{panel} .unpin")
    page.click(f"{panel} .show-samples")
    samples = shown_codes(page, f"{panel} .samples")
    assert_same_pixels(canvas_grey(page, f"{panel} .samples")[None], tiled(pixels(models["vae"], samples), 10)[None])
    page.click(f"{panel} .show-grid")
    grid = shown_codes(page, f"{panel} .grid")
    side = round(len(grid) ** 0.5)
    assert side ** 2 == len(grid) and side > 5
    assert_same_pixels(canvas_grey(page, f"{panel} .grid")[None], tiled(pixels(models["vae"], grid), side)[None])
    page.screenshot(path=out.with_suffix(".png"), full_page=True)


def test_pointers_are_linked_across_the_two_latent_spaces(offline):
    _, page = offline
    assert page.locator("#link-toggle").is_visible() and page.is_checked("#link")
    z, _ = hover(page, "ae", 200, 200)
    page.wait_for_function("([s, z]) => document.querySelector(s).dataset.z === z",
                           arg=['[data-run="vae"] .decoded', json.dumps(z, separators=(",", ":"))])
    page.uncheck("#link")
    followed = page.get_attribute('[data-run="vae"] .decoded', "data-z")
    hover(page, "ae", 300, 300)
    assert page.get_attribute('[data-run="vae"] .decoded', "data-z") == followed
    page.check("#link")


DECODE_FLOATS = """async ([index, zs, label]) => {
  const bytes = new Uint8Array((await window.vaelabPage.decode(index, zs, label)).buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(text);
}"""


def page_floats(page, index, zs, label, image_shape) -> np.ndarray:
    raw = base64.b64decode(page.evaluate(DECODE_FLOATS, [index, zs.tolist(), label]))
    return np.frombuffer(raw, np.float32).reshape(len(zs), *image_shape)


# (model, network, image shape): every decoder network (faces in colour) and a conditional model; the CVAE's
# conv decoder and a colour conv decoder are checked against the program in test_page.py
BROWSER_NETWORKS = [("vae", "mlp", (1, 28, 28)), ("vae", "mlp-ln", (1, 28, 28)), ("vae", "conv", (1, 28, 28)),
                    ("vae", "faces", (3, 32, 32)), ("cvae", "mlp", (1, 28, 28))]


@pytest.mark.parametrize("model_name, arch, image_shape", BROWSER_NETWORKS)
def test_the_page_decodes_within_the_bound_of_pytorch(browser, tmp_path, model_name, arch, image_shape):
    models = {likelihood: random_model(model_name, arch, image_shape, likelihood, seed=seed)
              for seed, likelihood in enumerate(LIKELIHOODS)}
    out = model_page(models).save(tmp_path / "page.html")
    session = OfflinePage(browser, [out.as_uri()])
    page = session.open(out.as_uri())
    generator = torch.Generator().manual_seed(7)
    zs = torch.randn(CHECKED_CODES, 2, generator=generator) * 2  # well past the prior's bulk, into saturation
    labels = [None] if model_name == "vae" else [None, *range(10)]
    for index, model in enumerate(models.values()):
        worst = 0.0
        for label, codes in zip(labels, zs.tensor_split(len(labels))):
            with torch.inference_mode():
                expected = model.decode(codes, None if label is None else torch.full((len(codes),), label))
            got = page_floats(page, index, codes, label, image_shape)
            worst = max(worst, float(np.abs(got - expected.numpy()).max()))
        assert worst <= PIXEL_TOLERANCE, (arch, index, worst)
    assert not session.errors and session.requests == [out.as_uri()]
    session.close()


def test_the_page_works_inside_an_iframe_and_as_a_notebook_output(browser, exported, tmp_path):
    out, models, explorer = exported
    post = tmp_path / "blog-post.html"  # the exported file in a page of its own, as a blog post embeds it
    post.write_text(f'<!doctype html><p>A blog post.</p><iframe src="{out.as_uri()}" width="1400" height="1300">'
                    f'</iframe>')
    notebook = tmp_path / "notebook.html"  # what a notebook shows: the cell output's HTML, inline
    notebook.write_text(f"<!doctype html><div>Out[3]:</div>{explorer._repr_html_()}")
    for wrapper, allowed in ((post, [post.as_uri(), out.as_uri()]), (notebook, [notebook.as_uri()])):
        session = OfflinePage(browser, allowed)
        frame = session.open(wrapper.as_uri(), "iframe")
        z, image = hover(frame, "vae", 230, 230)
        assert_same_pixels(image[None], pixels(models["vae"], [z]))
        assert not session.errors and session.requests == allowed, wrapper.name
        session.close()
