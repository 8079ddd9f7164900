"""The importance-weighted training objective (Burda et al. 2016): K = 1 is the ELBO, larger K is tighter."""

import pytest
import torch

import vaelab
from vaelab.config import ModelConfig, RunConfig, validate
from vaelab.errors import VaelabError
from vaelab.models import build_model


def tiny_vae(**settings):
    torch.manual_seed(0)
    config = ModelConfig(model="vae", arch="mlp", likelihood="bernoulli", r_loss_factor=1.0, **settings)
    return build_model(config)


def copies_of_one_image(n):
    x = (torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(3)) > 0.7).float()
    return x.expand(n, -1, -1, -1)


def test_one_sample_is_the_vae_loss_in_expectation():
    """With the same draws, K = 1 differs from the VAE's loss only by estimating the closed-form KL with one
    draw's log q(z|x) - log p(z): over 20,000 draws the two agree within the estimate's noise."""
    model = tiny_vae()
    x = copies_of_one_image(20_000)
    with torch.no_grad():
        torch.manual_seed(5)
        elbo = model.loss(x)
        torch.manual_seed(5)
        iw = model.iw_loss(x, None, 1.0, 1)
        posterior = model.posterior(x)
        z = posterior.sample()
        kl_estimates = posterior.log_prob(z) - model.prior.log_prob(z)
    assert torch.equal(iw["reconstruction"], elbo["reconstruction"]) and torch.equal(iw["kl"], elbo["kl"])
    tolerance = 4 * kl_estimates.std().item() / len(x) ** 0.5
    assert abs(iw["loss"].item() - elbo["loss"].item()) < tolerance
    assert abs(kl_estimates.mean().item() - elbo["kl"].item()) < tolerance


def test_the_bound_tightens_with_k():
    model = tiny_vae()
    x = copies_of_one_image(2000)
    with torch.no_grad():
        losses = [model.iw_loss(x, None, 1.0, k)["loss"].item() for k in (1, 5, 50)]
    assert losses[0] > losses[1] > losses[2]


def test_iw_train_one_is_the_vae_bitwise():
    x = copies_of_one_image(8)
    plain, one = tiny_vae(), tiny_vae(iw_train=1)
    torch.manual_seed(1)
    a = plain.loss(x)
    torch.manual_seed(1)
    b = one.loss(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradients_flow_and_training_uses_k(tmp_path, tiny_data_dir):
    model = tiny_vae(iw_train=5)
    model.loss(copies_of_one_image(4))["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    config = vaelab.preset("book-vae").replace(
        data={"dataset": "mnist", "data_dir": str(tiny_data_dir), "pixels": "dynamic"},
        model={"arch": "mlp", "likelihood": "bernoulli", "iw_train": 5},
        train={"epochs": 1, "batch_size": 32, "seed": 7, "device": "cpu"})
    run = vaelab.train(config, tmp_path / "iw", show_progress=False)
    assert vaelab.load(run).config.iw_train == 5


@pytest.mark.parametrize("settings, message", [({"iw_train": 0}, "iw-train must be"),
                                               ({"model": "ae", "iw_train": 5}, "iw-train needs")])
def test_bad_k_is_refused(settings, message):
    with pytest.raises(VaelabError, match=message):
        validate(RunConfig().replace(model=settings))
