"""Decoder likelihoods p(x|z): the reconstruction term of the loss, in nats per image.

`reconstruction(logits, x)` is the per-image negative log-likelihood without
its normalising constant (what training minimises); `log_normaliser` is that
constant, added back when a proper -log p(x|z) in nats is reported.

The book's VAE loss, 1000 * mean-pixel MSE + KL, is a Gaussian likelihood in
disguise: with D pixels and variance s2,
    -log N(x; mu, s2 I) = sum (x - mu)^2 / (2 s2) + D/2 log(2 pi s2),
and sum (x - mu)^2 / (2 s2) = r * mean (x - mu)^2 exactly when s2 = D / (2 r).
So `r_loss_factor` r = 1000 on 784 pixels is s2 = 784 / 2000 = 0.392.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vaelab.errors import VaelabError

# Sums run over an image's (C, H, W): logits may carry extra leading dimensions (say K importance samples
# of every image) and the images x then broadcast against them without being copied.
IMAGE_DIMS = (-3, -2, -1)


class Bernoulli:
    """Binary pixels: cross-entropy on logits, summed over pixels (exact likelihood for binarised data)."""

    def __init__(self, n_pixels: int, r_loss_factor: float | None = None):
        self.n_pixels = n_pixels

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(IMAGE_DIMS)

    @property
    def log_normaliser(self) -> float:
        return 0.0


class Gaussian:
    """Fixed-variance Gaussian around the sigmoid of the decoder's output, parameterised
    by the book's `r_loss_factor` (variance = n_pixels / (2 r_loss_factor))."""

    def __init__(self, n_pixels: int, r_loss_factor: float):
        self.n_pixels = n_pixels
        self.r_loss_factor = r_loss_factor
        self.variance = n_pixels / (2.0 * r_loss_factor)

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.r_loss_factor * (torch.sigmoid(logits) - x).pow(2).mean(IMAGE_DIMS)

    @property
    def log_normaliser(self) -> float:
        return 0.5 * self.n_pixels * math.log(2 * math.pi * self.variance)


LIKELIHOODS = {"bernoulli": Bernoulli, "gaussian": Gaussian}


def build_likelihood(name: str, n_pixels: int, r_loss_factor: float):
    if name not in LIKELIHOODS:
        raise VaelabError(f"unknown likelihood {name!r}; choose from: {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[name](n_pixels, r_loss_factor)
