"""Posteriors q(z|x) as objects (after diffusers' DiagonalGaussianDistribution): `mean`, `sample`, `kl`.

A VAE's encoder gives a diagonal Gaussian; an AE's a point mass at its code.
Sampling uses the reparameterisation z = mean + exp(logvar / 2) * eps,
eps ~ N(0, I), so gradients flow through the draw.
"""

from __future__ import annotations

import math

import torch


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per row, in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


class DiagonalGaussian:
    """q(z|x) = N(mean, diag(exp(logvar))), one row per image."""

    has_density = True  # the importance-weighted bound needs q(z|x) as a density

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean, self.logvar = mean, logvar

    def sample(self, k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """One code per image ([N, d]), or k per image ([k, N, d]) from `generator`'s stream."""
        std = torch.exp(0.5 * self.logvar)
        if k is None and generator is None:
            return self.mean + std * torch.randn_like(self.mean)
        shape = self.mean.shape if k is None else (k, *self.mean.shape)
        return self.mean + std * torch.randn(shape, generator=generator, device=self.mean.device)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x), summed over the last dimension."""
        return -0.5 * ((z - self.mean).pow(2) * torch.exp(-self.logvar) + self.logvar + math.log(2 * math.pi)).sum(-1)

    def kl(self, other: DiagonalGaussian | None = None) -> torch.Tensor:
        """KL(q || other) per image in nats; `other` None is N(0, I), in closed form."""
        if other is None:
            return kl_to_standard_normal(self.mean, self.logvar)
        return 0.5 * ((self.mean - other.mean).pow(2) * torch.exp(-other.logvar)
                      + torch.exp(self.logvar - other.logvar) - 1.0 - self.logvar + other.logvar).sum(1)


class PointMass:
    """An AE's q(z|x): all mass at the code. It has no density, so no KL to a prior and no likelihood bound."""

    has_density = False
    logvar = None  # no spread to draw

    def __init__(self, mean: torch.Tensor):
        self.mean = mean

    def sample(self, k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.mean if k is None else self.mean.expand(k, *self.mean.shape)

    def kl(self, other=None) -> torch.Tensor:
        """Infinite: a point mass is not absolutely continuous with respect to any prior with a density."""
        return torch.full((len(self.mean),), math.inf, dtype=self.mean.dtype, device=self.mean.device)
