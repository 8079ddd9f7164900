"""Loss terms against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from vaelab.config import ModelConfig, RunConfig, validate
from vaelab.models import build_model, kl_to_standard_normal
from vaelab.models.likelihoods import Bernoulli, Gaussian


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mean, logvar = torch.tensor([[0.7, -1.2, 0.1]]), torch.tensor([[-0.5, 0.8, -2.0]])
    std = (0.5 * logvar).exp()
    z = mean + std * torch.randn(400_000, 3)
    log_q = torch.distributions.Normal(mean, std).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    monte_carlo = (log_q - log_p).mean().item()
    assert abs(kl_to_standard_normal(mean, logvar).item() - monte_carlo) < 0.01
    assert kl_to_standard_normal(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0


def test_book_vae_loss_is_1000_mse_plus_kl():
    """The book: r_loss = mean((x - x')^2) over pixels * 1000; kl = -0.5 sum(1 + logvar - mu^2 - e^logvar)."""
    model = build_model(ModelConfig(model="vae", arch="conv", likelihood="gaussian", r_loss_factor=1000.0))
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(3)
    terms = model.loss(x)
    torch.manual_seed(3)
    posterior = model.posterior(x)
    mu, log_var = posterior.mean, posterior.logvar
    z = mu + torch.exp(log_var / 2) * torch.randn_like(mu)
    x_hat = model.decode(z)
    r_loss = 1000 * ((x - x_hat) ** 2).mean(dim=(1, 2, 3))
    kl = -0.5 * (1 + log_var - mu ** 2 - log_var.exp()).sum(1)
    assert torch.allclose(terms["reconstruction"], r_loss.mean(), rtol=1e-5)
    assert torch.allclose(terms["kl"], kl.mean(), rtol=1e-5)
    assert torch.allclose(terms["loss"], (r_loss + kl).mean(), rtol=1e-5)


def test_book_ae_loss_is_mean_pixel_mse():
    model = build_model(ModelConfig(model="ae", arch="conv", likelihood="gaussian", r_loss_factor=1.0))
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(model.loss(x)["loss"], ((x - model.reconstruct(x)) ** 2).mean(), rtol=1e-5)


def test_gaussian_with_r_loss_factor_is_a_gaussian_likelihood():
    """r * mean-pixel MSE + normaliser == -log N(x; mu, s2 I) with s2 = D / (2 r)."""
    x, logits = torch.rand(5, 1, 28, 28), torch.randn(5, 1, 28, 28)
    g = Gaussian(784, 1000.0)
    assert math.isclose(g.variance, 0.392)
    exact = -torch.distributions.Normal(torch.sigmoid(logits), math.sqrt(g.variance)).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(g.reconstruction(logits, x) + g.log_normaliser, exact, rtol=1e-5)


def test_bernoulli_is_summed_cross_entropy():
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3))
    logits = torch.randn(5, 1, 28, 28)
    exact = -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(Bernoulli(784).reconstruction(logits, x), exact, rtol=1e-5)
    assert Bernoulli(784).log_normaliser == 0.0
    assert torch.allclose(Bernoulli(784).reconstruction(logits, x),
                          F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").flatten(1).sum(1),
                          rtol=1e-4)


@pytest.mark.parametrize("likelihood", [Bernoulli(784), Gaussian(784, 1000.0)])
def test_images_broadcast_over_leading_sample_dimensions(likelihood):
    """K samples per image ([K, N, C, H, W] logits against [N, C, H, W] images) equal the copied layout."""
    x, logits = torch.bernoulli(torch.full((3, 1, 28, 28), 0.4)), torch.randn(4, 3, 1, 28, 28)
    copied = likelihood.reconstruction(logits.flatten(0, 1), x.repeat(4, 1, 1, 1)).view(4, 3)
    assert torch.equal(likelihood.reconstruction(logits, x), copied)


def test_r_loss_factor_defaults_to_the_books_for_each_model():
    for model, factor in (("ae", 1.0), ("vae", 1000.0)):
        config = validate(RunConfig(model=ModelConfig(model=model)))
        assert config.model.r_loss_factor == factor
        assert build_model(ModelConfig(model=model, arch="mlp")).likelihood.r_loss_factor == factor
    assert validate(RunConfig(model=ModelConfig(model="ae", r_loss_factor=7.0))).model.r_loss_factor == 7.0
