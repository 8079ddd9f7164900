"""`shapes`: a synthetic RGB dataset whose generating factors are known.

Each image is one filled square, circle or triangle (the class) on black, with a uniformly
drawn centre (x, y in [0, 1] of the free range), scale (the half-size as a fraction of the
side, 0.12-0.3) and hue (full saturation and value). Generated from a fixed seed in a few
vectorised passes, so it is identical everywhere, needs no download, and later work can
measure how latent dimensions line up with the factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ("square", "circle", "triangle")
COUNT = 10_000  # images in all (train + test): ~120 MB at 64x64 RGB, generated in about a second
SIZE = (64, 64)
SEED = 0
SCALE_RANGE = (0.12, 0.3)
CHUNK = 500


@dataclass(frozen=True)
class Shapes:
    images: np.ndarray  # uint8 [N, 3, H, W]
    labels: np.ndarray  # int64 [N]: index into CLASSES
    factors: dict[str, np.ndarray]  # float32 [N] each: x, y (centre, 0-1 of the free range), scale, hue


def hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """[N] hues in [0, 1) -> [N, 3] RGB in [0, 255] at full saturation and value."""
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6) % 6
    return 255 * (1 - np.clip(np.minimum(k, 4 - k), 0, 1))


def generate(count: int = COUNT, size: tuple[int, int] = SIZE, seed: int = SEED) -> Shapes:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), count)
    factors = {"x": rng.random(count), "y": rng.random(count),
               "scale": rng.uniform(*SCALE_RANGE, count), "hue": rng.random(count)}
    height, width = size
    side = min(height, width)
    half = factors["scale"] * side  # pixels from the centre to an edge
    cx = half + factors["x"] * (width - 2 * half)
    cy = half + factors["y"] * (height - 2 * half)
    colours = hue_to_rgb(factors["hue"]).astype(np.uint8)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    images = np.zeros((count, 3, height, width), np.uint8)
    for start in range(0, count, CHUNK):
        part = slice(start, start + CHUNK)
        dx = xs - cx[part, None, None].astype(np.float32)
        dy = ys - cy[part, None, None].astype(np.float32)
        r = half[part, None, None].astype(np.float32)
        square = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        circle = dx * dx + dy * dy <= r * r
        triangle = (dy <= r) & (2 * np.abs(dx) <= dy + r)  # apex up at (cx, cy - r), base at cy + r
        shape = labels[part, None, None]
        mask = np.where(shape == 0, square, np.where(shape == 1, circle, triangle))
        images[part] = mask[:, None] * colours[part, :, None, None]
    return Shapes(images, labels.astype(np.int64), {k: v.astype(np.float32) for k, v in factors.items()})
