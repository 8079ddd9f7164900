"""Priors: the distribution over codes a model samples from, as an object the metrics and report can ask.

Each prior draws codes (`sample`), maps quantiles in (0, 1)^d to codes
(`quantile`, which gives the report's latent grid and traversals), scores codes
(`log_prob`, for the importance-weighted bound) and says in words how it draws
(`description`, `grid_description`), so nothing outside `models/` needs to know
which model it is looking at.
"""

from __future__ import annotations

import math

import torch


class Prior:
    """What every prior shares: the evenly spaced grid of quantiles the report decodes (each prior gives
    `sample`, `quantile` and `log_prob`)."""

    description: str  # how codes are drawn, completing "the AE draws ..."
    grid_description: str  # how the latent grid is laid out, completing "the AE's grid is ..."

    def __init__(self, dim: int, device: torch.device):
        self.dim, self.device = dim, device

    def grid(self, side: int) -> torch.Tensor:
        """Codes [rows, side, d] at evenly spaced quantiles of z1 (columns) and z2 (rows, top = high); other
        dimensions at the centre (quantile 1/2). A 1-D code gives one row."""
        d = self.dim
        axis = (torch.arange(side, dtype=torch.float32) + 0.5) / side
        rows = axis.flip(0) if d >= 2 else torch.tensor([0.5])
        u = torch.full((len(rows), side, d), 0.5)
        u[:, :, 0] = axis
        if d >= 2:
            u[:, :, 1] = rows[:, None]
        return self.quantile(u.view(-1, d)).view(len(rows), side, d)


class StandardNormal(Prior):
    """p(z) = N(0, I), the VAE's prior."""

    description = "from its prior N(0, I)"
    grid_description = "at evenly spaced quantiles of N(0, 1) per axis (the inverse-normal-CDF grid)"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.dim, generator=generator, device=self.device)

    def quantile(self, u: torch.Tensor) -> torch.Tensor:
        """The inverse normal CDF, dimension by dimension (in float64, then float32)."""
        return torch.special.ndtri(u.double().cpu()).to(torch.float32).to(self.device)  # float64: not on MPS

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I), summed over the last dimension."""
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)


class BoxPrior(Prior):
    """Uniform over the bounding box [low, high] of a set of training codes: how the book samples an AE,
    which has no prior of its own."""

    description = "uniformly over the bounding box of its training codes (as the book does)"
    grid_description = "evenly spaced over the bounding box of its codes"

    def __init__(self, low: torch.Tensor, high: torch.Tensor):
        super().__init__(len(low), low.device)
        self.low, self.high = low, high

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.quantile(torch.rand(n, self.dim, generator=generator, device=self.device))

    def quantile(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + u.to(self.device) * (self.high - self.low)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """-log of the box's volume inside it, -inf outside."""
        inside = ((z >= self.low) & (z <= self.high)).all(-1)
        log_volume = torch.log(self.high - self.low).sum()
        return torch.where(inside, -log_volume, torch.full_like(log_volume, -math.inf))
