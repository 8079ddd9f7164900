"""Flaw 2 and 3 metrics against closed forms and independent computations."""

import math

import numpy as np
import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.metrics.latent import (
    class_spreads,
    even_unit_points,
    gaussian_fit,
    gaussian_kl,
    knn_accuracy,
    latent_metrics,
    mmd2,
    mmd2_to_standard_normal,
    spread_cv,
    spread_ratio,
)
from vaelab.models import build_model


def with_exact_moments(n, mean, cov, seed=0):
    """n points whose sample mean and (unbiased) covariance are exactly `mean` and `cov`."""
    z = np.random.default_rng(seed).normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z.T))).T
    return z @ np.linalg.cholesky(cov).T + mean


def test_gaussian_kl_matches_torch_distributions():
    mean, cov = np.array([0.5, -1.0, 2.0]), np.array([[2.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 1.5]])
    expected = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(torch.tensor(mean), torch.tensor(cov)),
        torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)))
    assert gaussian_kl(mean, cov) == pytest.approx(expected.item(), rel=1e-10)
    assert gaussian_kl(np.zeros(2), np.eye(2)) == 0.0
    assert gaussian_kl(np.zeros(2), np.zeros((2, 2))) == math.inf


def test_kl_of_fitted_gaussian_sees_centre_and_scale():
    codes = with_exact_moments(1000, np.array([3.0, -4.0]), np.diag([9.0, 0.25]))
    mean, cov = gaussian_fit(codes)
    # 1/2 (tr S + |m|^2 - d - log det S) = 1/2 (9.25 + 25 - 2 - log 2.25)
    assert gaussian_kl(mean, cov) == pytest.approx(0.5 * (9.25 + 25 - 2 - math.log(2.25)), rel=1e-10)


def naive_mmd2(x, y, c):
    k = lambda a, b: c / (c + ((a - b) ** 2).sum())  # noqa: E731
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd_matches_a_direct_double_sum():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 2)), rng.normal(1.0, 2.0, size=(25, 2))
    assert mmd2(torch.tensor(x), torch.tensor(y)) == pytest.approx(naive_mmd2(x, y, 4.0), rel=1e-10)


def test_mmd_near_zero_for_same_distribution_and_grows_with_mismatch():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1500, 2, generator=generator)
    assert abs(mmd2(x, x)) < 2e-3  # the unbiased estimator's self-comparison: 2 (mean k - 1) / n
    assert abs(mmd2_to_standard_normal(x)) < 3e-3
    shifted, scaled = mmd2_to_standard_normal(x + 1.0), mmd2_to_standard_normal(5.0 * x)
    assert shifted > 0.05 and scaled > 0.1


def test_spreads_on_clusters_with_known_covariances():
    covs = {0: np.eye(2), 1: np.diag([4.0, 1.0]), 2: np.array([[0.0625, 0.0], [0.0, 1.0]])}
    codes = np.concatenate([with_exact_moments(500, np.array([10.0 * k, 0.0]), c, seed=k) for k, c in covs.items()])
    labels = np.repeat([0, 1, 2], 500)
    spreads = class_spreads(torch.tensor(codes), torch.tensor(labels))
    assert spreads == pytest.approx({0: 1.0, 1: 2.0, 2: 0.25}, rel=1e-9)
    assert spread_ratio(spreads) == pytest.approx(8.0, rel=1e-9)
    assert spread_cv(spreads) == pytest.approx(np.std([1.0, 2.0, 0.25]) / np.mean([1.0, 2.0, 0.25]), rel=1e-9)
    # scale-free: an AE's arbitrary scale does not change the ratio
    assert spread_ratio(class_spreads(torch.tensor(7.0 * codes), torch.tensor(labels))) == pytest.approx(8.0)


def test_spread_is_sqrt_generalised_variance_above_2d():
    cov = np.diag([4.0, 9.0, 0.25])
    codes = with_exact_moments(200, np.zeros(3), cov)
    assert class_spreads(torch.tensor(codes), torch.zeros(200, dtype=torch.long))[0] == pytest.approx(3.0)


def test_knn_accuracy_separated_versus_mixed():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 4
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    codes = centres[labels] + torch.randn(400, 2, generator=generator)
    assert knn_accuracy(codes[:200], labels[:200], codes[200:], labels[200:]) == 1.0
    shuffled = labels[torch.randperm(400, generator=generator)]
    assert knn_accuracy(codes[:200], shuffled[:200], codes[200:], shuffled[200:]) < 0.5


def test_latent_metrics_of_standard_normal_codes_are_near_ideal():
    generator = torch.Generator().manual_seed(3)
    codes, labels = torch.randn(4000, 2, generator=generator), torch.arange(4000) % 10
    result = latent_metrics(codes[2000:], labels[2000:], codes[:2000], labels[:2000])
    assert result["mean_norm"] < 0.1 and result["cov_distance"] < 0.15 and result["gaussian_kl"] < 0.01
    assert result["spread_ratio"] < 1.5 and len(result["class_spread"]) == 10


def test_even_points_and_the_priors_quantiles():
    grid = even_unit_points(2, 4)
    assert grid.shape == (16, 2) and set(grid[:, 0].tolist()) == {0.125, 0.375, 0.625, 0.875}
    assert even_unit_points(5, 4).shape == (16, 5) and even_unit_points(1, 4).shape == (4, 1)
    vae = build_model(ModelConfig(model="vae", arch="mlp"))
    assert torch.allclose(vae.prior.quantile(torch.tensor([[0.5, 0.975]])), torch.tensor([[0.0, 1.95996]]),
                          atol=1e-4)
    ae = build_model(ModelConfig(model="ae", arch="mlp"))
    ae.code_low.copy_(torch.tensor([-4.0, 0.0]))
    ae.code_high.copy_(torch.tensor([4.0, 2.0]))
    assert torch.allclose(ae.prior.quantile(torch.tensor([[0.5, 0.25]])), torch.tensor([[0.0, 0.5]]))
