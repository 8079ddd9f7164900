"""What the explorer's browser tests share: Debian's Chromium through Playwright, and reading the page's canvases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def sync_api():
    """playwright.sync_api, or skip the calling test module when Chromium or Playwright is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser "
                    f"tests; Playwright's own browser download is not used", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def canvas_grey(page, selector) -> np.ndarray:
    """The red channel of a canvas, uint8 [height, width]: the grey level the explorer painted."""
    rgba = page.eval_on_selector(selector, "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height)"
                                           ".data)")
    size = page.eval_on_selector(selector, "c => [c.height, c.width]")
    return np.array(rgba, np.uint8).reshape(*size, 4)[:, :, 0]


def hover(page, run, x, y) -> tuple[list[float], np.ndarray]:
    """Move to (x, y) in the scatter, wait for the decode to settle: the latent point shown and its image.
    `page` may be a frame of a page (the explorer inside an iframe)."""
    decoded = f'[data-run="{run}"] .decoded'
    before = page.get_attribute(decoded, "data-z")  # before the move: an in-page decode can finish within it
    box = page.locator(f'[data-run="{run}"] .scatter').bounding_box()  # in the top page's coordinates
    getattr(page, "page", page).mouse.move(box["x"] + x, box["y"] + y, steps=4)
    page.wait_for_function("([s, z]) => (document.querySelector(s).dataset.z ?? null) !== z", arg=[decoded, before])
    page.wait_for_selector(f'[data-run="{run}"][data-decoding="0"]')
    return json.loads(page.get_attribute(decoded, "data-z")), canvas_grey(page, decoded)


def tiled(images: np.ndarray, columns: int) -> np.ndarray:
    """uint8 images [N, H, W] in rows of `columns`, as the explorer paints samples and grids."""
    n, h, w = images.shape
    return images.reshape(n // columns, columns, h, w).transpose(0, 2, 1, 3).reshape(n // columns * h, columns * w)


def shown_codes(page, selector) -> list[list[float]]:
    """The codes a canvas shows (its data-z), once it is shown."""
    page.wait_for_function("s => { const c = document.querySelector(s); return !c.hidden && c.dataset.z; }",
                           arg=selector)
    return json.loads(page.get_attribute(selector, "data-z"))
