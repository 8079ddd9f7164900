"""Precision of samples against the manifold of real images (Kynkäänniemi et al. 2019, "improved precision").

Each real image's feature vector gets a ball reaching to its k-th nearest real neighbour; together the
balls estimate the region real images occupy. Precision is the share of samples whose features fall
inside at least one ball:

    precision = mean over samples s of  [ exists real r: ||f(s) - f(r)|| <= radius_k(r) ]

It asks the question of flaw 1 directly, "is a random sample a realistic image?", one sample at a time:
a sample decoded from empty space lands outside every ball whatever the classifier says about it,
whereas a Fréchet distance compares only means and covariances of whole sets, and a classifier is
often confidently wrong on images unlike its training data.
"""

from __future__ import annotations

import torch

NEIGHBOURS = 3  # k of the paper's recommended setting
CHUNK = 1000  # rows of a distance matrix held at once


def knn_radii(real: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """Distance from each real feature to its k-th nearest other real feature."""
    real = real.double()
    radii = [torch.cdist(real[i:i + CHUNK], real).topk(k + 1, largest=False).values[:, k]  # [:, 0] is itself
             for i in range(0, len(real), CHUNK)]
    return torch.cat(radii)


def manifold_precision(samples: torch.Tensor, real: torch.Tensor, radii: torch.Tensor | None = None,
                       k: int = NEIGHBOURS) -> float:
    """Share of `samples` (feature rows) inside the union of the real features' k-NN balls; pass `radii`
    (from `knn_radii(real)`) when scoring several sets against the same real features."""
    real = real.double()
    radii = knn_radii(real, k) if radii is None else radii
    inside = [(torch.cdist(samples[i:i + CHUNK].double(), real) <= radii).any(1)
              for i in range(0, len(samples), CHUNK)]
    return torch.cat(inside).double().mean().item()
