"""How images of any size and colour become the uint8 [C, H, W] arrays a run trains on.

One set of rules for every source, recorded in each run's config: centre-crop to the
target's aspect ratio, resize with Pillow's Lanczos filter (antialiased when shrinking),
grey <-> RGB with Pillow's conversions (grey = ITU-R 601-2 luma; alpha is dropped; 16-bit grey is
scaled to 8 bits), and a
deterministic, stratified train/test split when the source does not give one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from vaelab.errors import VaelabError

RESAMPLE = Image.Resampling.LANCZOS
RESIZE_FILTER = "Lanczos (Pillow), after a centre crop to the target aspect ratio"
SPLIT_SEED = 0  # the PCG64 seed of the stratified split, fixed across machines and versions
CHANNEL_MODES = {1: "L", 3: "RGB"}
SIXTEEN_BIT_MAX = 65535  # 16-bit images (and Pillow's 32-bit "I" mode, which 16-bit PNGs open as) scale to 0-255


@dataclass(frozen=True)
class Conversion:
    """The settings that turn a source into training arrays (--image-size, --channels, --test-fraction)."""

    image_size: tuple[int, int] | None = None  # (height, width); None: the source's own size
    channels: int | None = None  # 1 | 3; None: the source's own (a folder with any colour image is RGB)
    test_fraction: float = 0.1  # used only when the source gives no split

    def recorded(self) -> dict:
        """What a run's provenance records about its conversion."""
        return {**asdict(self), "resize": RESIZE_FILTER, "split_seed": SPLIT_SEED}


def fit(image: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    """A Pillow image as uint8 [channels, height, width] of `size`: centre crop to its aspect, then resize."""
    if image.mode == "I" or image.mode.startswith("I;16"):  # 16-bit grey: Pillow's own conversion would clip
        levels = np.clip(np.asarray(image, dtype=np.int64), 0, SIXTEEN_BIT_MAX)
        image = Image.fromarray(np.rint(levels / (SIXTEEN_BIT_MAX / 255)).astype(np.uint8))
    image = image.convert(CHANNEL_MODES[channels])
    width, height = image.size
    target_h, target_w = size
    if (height, width) != (target_h, target_w):
        if width * target_h > height * target_w:  # wider than the target: crop the sides
            crop = round(height * target_w / target_h)
            box = ((width - crop) // 2, 0, (width - crop) // 2 + crop, height)
        else:  # taller: crop top and bottom
            crop = round(width * target_h / target_w)
            box = (0, (height - crop) // 2, width, (height - crop) // 2 + crop)
        image = image.resize((target_w, target_h), RESAMPLE, box=box)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def adapt(images: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """uint8 [N, C, H, W] arrays to `size` and `channels` by `fit`; untouched when they already match."""
    if images.shape[1:] == (channels, *size):
        return images
    out = np.empty((len(images), channels, *size), np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))
        out[i] = fit(pil, size, channels)
    return out


def stratified_split(labels: np.ndarray | None, n: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, each in source order: within each class (or among all images when unlabelled)
    a seeded permutation puts round(fraction x count) images in test, so the split is the same everywhere."""
    rng = np.random.default_rng(SPLIT_SEED)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    test = np.zeros(n, dtype=bool)
    for members in groups:
        test[rng.permutation(members)[: round(len(members) * test_fraction)]] = True
    return np.flatnonzero(~test), np.flatnonzero(test)


def parse_image_size(text: str) -> tuple[int, int]:
    """'32' -> (32, 32); '48x64' -> (48, 64) (height x width)."""
    parts = text.lower().split("x")
    try:
        sides = tuple(int(p) for p in parts)
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise VaelabError(f"image size must be N or HxW with positive integers (32, 48x64), got {text!r}")
    return (sides[0], sides[-1])
