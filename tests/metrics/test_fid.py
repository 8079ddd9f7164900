"""The Fréchet distance against scipy's general matrix square root."""

import numpy as np
import pytest
from scipy.linalg import sqrtm

from vaelab.metrics.fid import frechet_between, frechet_distance, gaussian_statistics


def scipy_frechet(m1, c1, m2, c2):
    """The textbook formula with scipy's sqrtm of C1 C2 (Heusel et al.'s reference code does the same)."""
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(sqrtm(c1 @ c2)).real)


@pytest.mark.parametrize("dim", [1, 2, 16, 64])
def test_matches_scipy_sqrtm_on_random_gaussians(dim):
    rng = np.random.default_rng(dim)
    a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
    m1, m2 = rng.normal(size=dim), rng.normal(size=dim)
    c1, c2 = a @ a.T + 0.1 * np.eye(dim), b @ b.T + 0.1 * np.eye(dim)
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(scipy_frechet(m1, c1, m2, c2), rel=1e-8, abs=1e-8)


def test_zero_for_identical_sets_and_symmetric():
    features = np.random.default_rng(0).normal(size=(500, 32)) @ np.diag(np.linspace(0.1, 3, 32))
    assert frechet_between(features, features) == pytest.approx(0.0, abs=1e-9)
    other = features[::-1] * 1.5 + 0.2
    assert frechet_between(features, other) == pytest.approx(frechet_between(other, features), rel=1e-9)


def test_closed_form_for_shifted_and_scaled_gaussians():
    """N(0, I) vs N(mu, s^2 I) in d dims: |mu|^2 + d (1 - s)^2."""
    d, s = 8, 2.0
    mu = np.arange(d) / d
    assert frechet_distance(np.zeros(d), np.eye(d), mu, s**2 * np.eye(d)) == pytest.approx(
        (mu**2).sum() + d * (1 - s) ** 2, rel=1e-12)


def test_statistics_are_mean_and_unbiased_covariance():
    rows = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mean, cov = gaussian_statistics(rows)
    assert np.allclose(mean, [2.0, 4.0]) and np.allclose(cov, np.cov(rows.T))
