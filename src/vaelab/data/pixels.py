"""Turning stored uint8 images into model inputs, one batch at a time.

Data stays in memory as one uint8 tensor; a batch is a gather of rows by index
followed by the pixel transform. No Dataset/DataLoader: at MNIST sizes the
per-sample Python overhead would cost more than the model.
"""

from __future__ import annotations

import torch

from vaelab.errors import VaelabError

STATIC_THRESHOLD = 127  # uint8 level; pixels above it become 1 in 'static' mode


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.to(torch.float32).div_(255.0)


def continuous(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Grey levels in [0, 1], as the book uses them."""
    return to_unit(images)


def dynamic(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli draw per batch (pixel intensity = probability of ink): the usual
    protocol for likelihood results on binarised MNIST."""
    return torch.bernoulli(to_unit(images), generator=generator)


def static(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fixed threshold at mid-grey."""
    return (images > STATIC_THRESHOLD).to(torch.float32)


PIXEL_MODES = {"continuous": continuous, "dynamic": dynamic, "static": static}


def pixel_transform(mode: str):
    if mode not in PIXEL_MODES:
        raise VaelabError(f"unknown pixel mode {mode!r}; choose from: {', '.join(PIXEL_MODES)}")
    return PIXEL_MODES[mode]


def fixed_test_pixels(images: torch.Tensor, mode: str, seed: int = 0) -> torch.Tensor:
    """The whole test set transformed once, with a fixed seed: every epoch and every run
    scores the same binarisation, so test numbers are comparable."""
    generator = torch.Generator().manual_seed(seed)
    return pixel_transform(mode)(images, generator)
