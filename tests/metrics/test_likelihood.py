"""The importance-weighted bound against log p(x) computed by quadrature over a 1-D latent.

A tiny VAE (1-D code, four pixels) is trained for a moment; then
    log p(x) = log ∫ p(x|z) N(z; 0, 1) dz
is a sum over a dense grid of z, and the ELBO is the same kind of integral of q(z|x).
"""

import copy
import math

import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.errors import VaelabError
from vaelab.metrics.likelihood import iw_log_likelihood, likelihood_metrics
from vaelab.models import DiagonalGaussian, StandardNormal, build_model

Z = torch.linspace(-12, 12, 24001, dtype=torch.float64)  # step 1e-3: far finer than the posterior's width
DZ = (Z[1] - Z[0]).item()


def tiny_vae(likelihood, data, steps=300, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(model="vae", arch="mlp", latent_dim=1, likelihood=likelihood,
                                    r_loss_factor=2.0, image_shape=(1, 2, 2)))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model.loss(data[torch.randint(len(data), (64,))])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.double().eval()


@torch.no_grad()
def log_px_z_on_grid(model, x):
    """log p(x|z) for every image (rows) at every grid point (columns)."""
    logits = model.decode_logits(Z[:, None])
    rows = [-(model.likelihood.reconstruction(logits, image.expand_as(logits)) + model.likelihood.log_normaliser)
            for image in x]
    return torch.stack(rows)


@torch.no_grad()
def quadrature(model, x):
    """(log p(x), ELBO) for each image by the trapezoid-free Riemann sum on a 1e-3 grid."""
    log_joint = log_px_z_on_grid(model, x) + StandardNormal(1, Z.device).log_prob(Z[:, None])
    log_px = torch.logsumexp(log_joint, 1) + math.log(DZ)
    posterior = model.posterior(x)
    log_q = DiagonalGaussian(posterior.mean[:, None], posterior.logvar[:, None]).log_prob(Z[None, :, None])
    elbo = (log_q.exp() * (log_joint - log_q)).sum(1) * DZ
    return log_px, elbo


def binary_data():
    """Four-pixel images from a two-cluster distribution: the code has something to say."""
    generator = torch.Generator().manual_seed(1)
    on = torch.rand(2000, 1, generator=generator) < 0.5
    probs = torch.where(on, torch.tensor([0.9, 0.8, 0.2, 0.1]), torch.tensor([0.1, 0.3, 0.7, 0.9]))
    return torch.bernoulli(probs, generator=generator).view(-1, 1, 2, 2)


ALL_BINARY = torch.tensor([[(i >> b) & 1 for b in range(4)] for i in range(16)], dtype=torch.float64).view(16, 1, 2, 2)


@pytest.fixture(scope="module")
def bernoulli_vae():
    return tiny_vae("bernoulli", binary_data())


def test_quadrature_is_a_distribution(bernoulli_vae):
    """Sanity of the reference itself: p(x) over all 16 binary images sums to 1."""
    log_px, elbo = quadrature(bernoulli_vae, ALL_BINARY)
    assert torch.logsumexp(log_px, 0).exp().item() == pytest.approx(1.0, abs=1e-6)
    assert (elbo < log_px).all()


def average_bound(model, k, repeats):
    """L_K of each of the 16 images, averaged over `repeats` independent estimates (fewer are needed as K grows)."""
    return iw_log_likelihood(model, ALL_BINARY.repeat(repeats, 1, 1, 1), k).view(repeats, 16).mean(0)


def test_iw_bound_rises_from_elbo_to_log_px_bernoulli(bernoulli_vae):
    log_px, elbo = quadrature(bernoulli_vae, ALL_BINARY)
    bound = {k: average_bound(bernoulli_vae, k, repeats) for k, repeats in ((1, 2000), (10, 500), (100, 50), (3000, 4))}
    assert torch.allclose(bound[1], elbo, atol=0.05)  # L_1 is the ELBO in expectation
    gaps = [(log_px - bound[k]).mean().item() for k in (1, 10, 100, 3000)]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] > -0.005, gaps
    assert (bound[10] >= elbo - 0.02).all() and (bound[3000] <= log_px + 0.02).all()
    assert torch.allclose(bound[3000], log_px, atol=0.02)


def test_iw_bound_gaussian_decoder_matches_quadrature():
    generator = torch.Generator().manual_seed(2)
    data = (binary_data() * 0.6 + 0.2 + 0.05 * torch.randn(2000, 1, 2, 2, generator=generator)).clamp(0, 1)
    model = tiny_vae("gaussian", data)
    x = data[:12].double()
    log_px, elbo = quadrature(model, x)
    bound = iw_log_likelihood(model, x, 3000)
    # this posterior fits so well that log p(x) - ELBO is ~1e-4 nats: the bound may only sit within noise of both
    assert (bound > elbo - 0.005).all() and torch.allclose(bound, log_px, atol=0.02)


def test_chunking_does_not_change_the_bound(bernoulli_vae, monkeypatch):
    whole = iw_log_likelihood(bernoulli_vae, ALL_BINARY, 50)
    monkeypatch.setattr("vaelab.metrics.likelihood.MAX_DECODES", 7)  # 7 decodes per call: many chunks
    chunked = iw_log_likelihood(bernoulli_vae, ALL_BINARY, 50, batch_size=3)
    assert torch.allclose(whole.mean(), chunked.mean(), atol=0.05)  # same estimator, different draws


def test_likelihood_metrics_per_model(bernoulli_vae):
    """Both reported numbers against quadrature: the single-sample negative ELBO needs many copies of each image
    to be within 0.05 nats of its exact value; -L_20 lies between -log p(x) and the exact negative ELBO."""
    log_px, elbo = quadrature(bernoulli_vae, ALL_BINARY)
    x = ALL_BINARY.repeat(200, 1, 1, 1).float()
    vae = likelihood_metrics(copy.deepcopy(bernoulli_vae).float(), x, iw_samples=20)
    assert vae["neg_elbo"] == pytest.approx(-elbo.mean().item(), abs=0.05)
    assert -log_px.mean().item() - 0.02 < vae["iw_nll"] < -elbo.mean().item()
    assert vae["iw_samples"] == 20 and vae["iw_nll_stderr"] > 0
    x = ALL_BINARY.float()
    ae = build_model(ModelConfig(model="ae", arch="mlp", latent_dim=1, likelihood="bernoulli", image_shape=(1, 2, 2)))
    assert set(likelihood_metrics(ae, x, iw_samples=20)) == {"reconstruction", "mse"}
    with pytest.raises(VaelabError, match="no likelihood bound"):
        iw_log_likelihood(ae, x, 10)
    for bad in (0, -3):
        with pytest.raises(VaelabError, match=f"iw-samples must be a whole number of at least 1, got {bad}"):
            likelihood_metrics(ae, x, iw_samples=bad)
