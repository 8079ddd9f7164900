"""The Fréchet distance between two sets of feature vectors, each summarised as a Gaussian.

    FD = ||m1 - m2||^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2)

(Dowson & Landau 1982; Heusel et al. 2017 with Inception features = "FID").
tr((C1 C2)^1/2) equals tr((C1^1/2 C2 C1^1/2)^1/2), and the matrix inside the
second form is symmetric positive semi-definite, so both square roots come
from symmetric eigendecompositions: real, stable, no complex round-off to
discard (scipy's general `sqrtm` on C1 C2 needs that clean-up).
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of feature rows, in float64."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def frechet_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
    root1 = psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    cross = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum()
    distance = ((mean1 - mean2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * cross
    return float(max(distance, 0.0))  # exact zero for identical sets, not -1e-13


def frechet_between(features1, features2) -> float:
    """The Fréchet distance between the Gaussians fitted to two sets of feature rows."""
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))
