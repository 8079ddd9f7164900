"""The latent space, measured: the AE's flaws 2 and 3 as numbers, and evenly spread points for the grids.

"Codes" are what `encode` returns (an AE's code, a VAE's posterior mean): the
points of the book's scatter plot.

Flaw 2, no fixed centre or scale: compare the codes with N(0, I), the
distribution a VAE samples from. Fit a Gaussian N(m, S) to the codes and take
    KL(N(m, S) || N(0, I)) = 1/2 (tr S + m'm - d - log det S)          (nats),
which only sees the first two moments, so also the squared maximum mean
discrepancy between the codes and draws from N(0, I), which sees the whole
shape, with the inverse multiquadric kernel k(a, b) = C / (C + |a - b|^2),
C = 2d (Tolstikhin et al. 2018: heavy tails notice a wrong scale).

Flaw 3, uneven spread per class: each class c's codes have covariance S_c;
its spread is sqrt(det S_c) (in 2-D, the area of its 1-sigma ellipse / pi; above
2-D, the square root of the generalised variance). The max/min ratio and the
coefficient of variation of the spreads are scale-free, so an AE's arbitrary
scale does not matter. A k-NN classifier on the codes checks that evening
out the spreads did not blur the classes together.
"""

from __future__ import annotations

import numpy as np
import torch

MMD_CODES = 2000  # codes (and N(0, I) draws) per MMD estimate: its kernel matrices are MMD_CODES^2
KNN_NEIGHBOURS = 5
LATENT_SEED = 2024


# --- where grids of codes are drawn: evenly spread quantiles of a model's prior (model.prior.quantile) ---
def even_unit_points(dim: int, side: int) -> torch.Tensor:
    """Evenly spread points in (0, 1)^dim: cell centres of a side^dim lattice up to 2-D, above that the
    first side^2 points of a Sobol sequence (a full lattice would have side^dim points)."""
    if dim <= 2:
        axis = (torch.arange(side, dtype=torch.float64) + 0.5) / side
        return torch.cartesian_prod(*[axis] * dim).view(-1, dim).float()
    from scipy.stats import qmc  # scipy.stats takes a second to import: only here, for codes above 2-D

    points = qmc.Sobol(dim, scramble=True, seed=LATENT_SEED).random(side * side)
    return torch.as_tensor(points, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)


# --- flaw 2: centre and scale ------------------------------------------------------------------------
def gaussian_fit(codes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of code rows."""
    c = np.asarray(codes, dtype=np.float64)
    return c.mean(0), np.atleast_2d(np.cov(c, rowvar=False))


def gaussian_kl(mean: np.ndarray, cov: np.ndarray) -> float:
    """KL(N(mean, cov) || N(0, I)) in nats; infinite for a singular covariance."""
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.trace(cov) + mean @ mean - len(mean) - logdet))


def imq_kernel(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    return scale / (scale + torch.cdist(a, b).pow(2))


def mmd2(x: torch.Tensor, y: torch.Tensor, scale: float | None = None) -> float:
    """Unbiased estimate of the squared MMD between the distributions of rows of x and of y
    (Gretton et al. 2012, eq. 3), inverse multiquadric kernel with C = 2d unless given."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    scale = 2.0 * x.shape[1] if scale is None else scale
    n, m = len(x), len(y)
    kxx, kyy = imq_kernel(x, x, scale), imq_kernel(y, y, scale)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * imq_kernel(x, y, scale).mean())


def mmd2_to_standard_normal(codes: torch.Tensor, n: int = MMD_CODES, seed: int = LATENT_SEED) -> float:
    """MMD^2 between (a fixed random subset of) the codes and as many draws from N(0, I)."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.as_tensor(codes).cpu()
    subset = codes[torch.randperm(len(codes), generator=generator)[:n]]
    return mmd2(subset, torch.randn(len(subset), codes.shape[1], generator=generator, dtype=torch.float64))


# --- flaw 3: spread per class ------------------------------------------------------------------------
def class_spreads(codes: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """sqrt(det S_c) for each class with more codes than dimensions."""
    c, y = np.asarray(codes, dtype=np.float64), np.asarray(labels)
    spreads = {}
    for label in np.unique(y):
        members = c[y == label]
        if len(members) > c.shape[1]:
            covariance = np.atleast_2d(np.cov(members, rowvar=False))
            spreads[int(label)] = float(np.exp(0.5 * np.linalg.slogdet(covariance)[1]))
    return spreads


def spread_ratio(spreads: dict[int, float]) -> float:
    values = list(spreads.values())
    return max(values) / min(values) if min(values) > 0 else float("inf")


def spread_cv(spreads: dict[int, float]) -> float:
    """Coefficient of variation (population standard deviation / mean) of the class spreads."""
    values = np.array(list(spreads.values()))
    return float(values.std() / values.mean())


def knn_accuracy(reference: torch.Tensor, reference_labels: torch.Tensor, codes: torch.Tensor,
                 labels: torch.Tensor, k: int = KNN_NEIGHBOURS, chunk: int = 1000) -> float:
    """Fraction of codes whose k nearest reference codes (Euclidean) vote for their own label."""
    reference, codes = torch.as_tensor(reference).float(), torch.as_tensor(codes).float()
    reference_labels, labels = torch.as_tensor(reference_labels), torch.as_tensor(labels)
    n_classes = int(max(reference_labels.max(), labels.max())) + 1
    correct = 0
    for start in range(0, len(codes), chunk):
        nearest = torch.cdist(codes[start:start + chunk], reference).topk(k, largest=False).indices
        votes = torch.nn.functional.one_hot(reference_labels[nearest], n_classes).sum(1)
        correct += int((votes.argmax(1) == labels[start:start + chunk]).sum())
    return correct / len(codes)


def latent_metrics(codes: torch.Tensor, labels: torch.Tensor | None, reference: torch.Tensor,
                   reference_labels: torch.Tensor | None) -> dict:
    """Flaws 2 and 3 for the test codes; `reference` (training codes) is the k-NN's memory. Without labels
    (None) only flaw 2's numbers: flaw 3 compares classes."""
    mean, cov = gaussian_fit(codes)
    metrics = {
        "code_mean": mean.tolist(),
        "code_cov": cov.tolist(),
        "mean_norm": float(np.linalg.norm(mean)),
        "cov_distance": float(np.linalg.norm(cov - np.eye(len(mean)))),
        "gaussian_kl": gaussian_kl(mean, cov),
        "mmd2": mmd2_to_standard_normal(codes),
    }
    if labels is None:
        return metrics
    spreads = class_spreads(codes, labels)
    return {**metrics, "class_spread": {str(k): v for k, v in spreads.items()}, "spread_ratio": spread_ratio(spreads),
            "spread_cv": spread_cv(spreads), "knn_accuracy": knn_accuracy(reference, reference_labels, codes, labels)}
