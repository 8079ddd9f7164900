"""The model API: models carry their meaning (prior, posterior, device, words for the report), so that
metrics, report, explorer and compare never need to know which model they hold."""

import math
import re
from pathlib import Path

import pytest
import torch

import vaelab
from vaelab.config import ModelConfig, RunConfig, validate
from vaelab.errors import VaelabError
from vaelab.models import MODELS, BoxPrior, DiagonalGaussian, StandardNormal, build_model

PACKAGE = Path(vaelab.__file__).parent
MODEL_BLIND = [PACKAGE / "metrics", PACKAGE / "report", PACKAGE / "explore", PACKAGE / "compare.py"]
# A model name used as an identifier: a string literal ('vae', "ae", `vae`), a comparison with a registry name,
# or the model classes themselves.
NAME_LITERAL = re.compile(r"""(["'`])(%s)\1""" % "|".join(map(re.escape, MODELS)))
NAME_USE = re.compile(r"(model_name|registry_name|\.model)\s*(==|!=|\bin\b)|\[\s*\w*\.?(model_name|registry_name)\s*\]"
                      r"|\bisinstance\(.*\b(Autoencoder|VAE)\b|vaelab\.models\.(ae|vae)\b")


def test_no_model_names_outside_models():
    offences = []
    for root in MODEL_BLIND:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.suffix not in {".py", ".js", ".html"}:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if NAME_LITERAL.search(line) or NAME_USE.search(line):
                    offences.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offences, "model names outside models/:\n" + "\n".join(offences)


def test_the_name_test_catches_names():
    assert NAME_LITERAL.search('SAMPLING = {"ae": 1}') and NAME_LITERAL.search("if kind == 'vae':")
    assert NAME_USE.search("same = config.model == x") and NAME_USE.search("WORDS[view.model_name]")
    assert not NAME_LITERAL.search('"the AE and the VAE"') and not NAME_LITERAL.search('"vaelab"')


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_answers_the_api(name):
    model = build_model(ModelConfig(model=name, arch="mlp", latent_dim=3))
    assert model.registry_name == name and MODELS[name] is type(model)
    x = torch.rand(5, 1, 28, 28)
    q = model.posterior(x)
    assert q.mean.shape == (5, 3) and q.sample().shape == (5, 3) and q.kl().shape == (5,)
    prior = model.prior
    assert prior.sample(7, torch.Generator().manual_seed(0)).shape == (7, 3)
    assert prior.grid(4).shape == (4, 4, 3) and prior.quantile(torch.full((2, 3), 0.5)).shape == (2, 3)
    assert prior.log_prob(prior.sample(6)).shape == (6,)
    assert prior.description and prior.grid_description and model.device == torch.device("cpu")
    assert set(model.chapter_figures) <= {"scatter", "samples"}


def test_standard_normal_prior():
    prior = StandardNormal(2, torch.device("cpu"))
    grid = prior.grid(3)  # columns sweep z1 up, rows sweep z2 down, at the 1/6, 1/2, 5/6 quantiles
    assert torch.allclose(grid[0, :, 0], torch.tensor([-0.9674, 0.0, 0.9674]), atol=1e-4)
    assert torch.allclose(grid[:, 0, 1], torch.tensor([0.9674, 0.0, -0.9674]), atol=1e-4)
    z = torch.tensor([[0.3, -1.2]])
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(prior.log_prob(z), expected)


def test_box_prior():
    prior = BoxPrior(torch.tensor([-4.0, 0.0]), torch.tensor([4.0, 2.0]))
    assert torch.equal(prior.quantile(torch.tensor([[0.5, 0.25]])), torch.tensor([[0.0, 0.5]]))
    inside_outside = prior.log_prob(torch.tensor([[1.0, 1.0], [5.0, 1.0]]))
    assert inside_outside[0].item() == pytest.approx(-math.log(16.0)) and inside_outside[1].item() == -math.inf
    grid = prior.grid(2)  # cell centres: quantiles 1/4 and 3/4
    assert torch.equal(grid[0, :, 0], torch.tensor([-2.0, 2.0]))
    assert torch.equal(grid[:, 0, 1], torch.tensor([1.5, 0.5]))


def test_diagonal_gaussian_kl_and_sampling():
    mean, logvar = torch.tensor([[0.7, -1.2]]), torch.tensor([[-0.5, 0.8]])
    q, p = DiagonalGaussian(mean, logvar), DiagonalGaussian(torch.tensor([[0.2, 0.1]]), torch.tensor([[0.3, -0.4]]))
    as_torch = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    other = torch.distributions.Normal(p.mean, (0.5 * p.logvar).exp())
    assert torch.allclose(q.kl(p), torch.distributions.kl_divergence(as_torch, other).sum(1))
    standard = torch.distributions.Normal(torch.zeros(1, 2), torch.ones(1, 2))
    assert torch.allclose(q.kl(), torch.distributions.kl_divergence(as_torch, standard).sum(1))
    assert torch.allclose(q.log_prob(torch.tensor([[0.0, 0.0]])), as_torch.log_prob(torch.zeros(1, 2)).sum(1))
    draws = q.sample(20000, torch.Generator().manual_seed(0))
    assert draws.shape == (20000, 1, 2)
    assert torch.allclose(draws.mean(0), mean, atol=0.03) and torch.allclose(draws.var(0), logvar.exp(), rtol=0.05)


def test_a_point_mass_has_no_density():
    ae = build_model(ModelConfig(model="ae", arch="mlp"))
    q = ae.posterior(torch.rand(3, 1, 28, 28))
    assert not q.has_density and q.logvar is None and torch.equal(q.sample(), q.mean)
    assert q.sample(4).shape == (4, 3, 2) and torch.isinf(q.kl()).all()


def test_every_name_is_checked_by_validate():
    for field, value in [("model", "gan"), ("arch", "resnet"), ("likelihood", "poisson")]:
        with pytest.raises(VaelabError, match=f"unknown {'architecture' if field == 'arch' else field} '{value}'"):
            validate(RunConfig().replace(model={field: value}))


def test_only_the_vae_takes_beta():
    assert validate(RunConfig().replace(model={"model": "vae", "beta": 0.25})).model.beta == 0.25
    with pytest.raises(VaelabError, match="beta weights a KL term; the ae has none"):
        validate(RunConfig().replace(model={"model": "ae", "beta": 2.0}))
    for bad in (-0.5, math.inf, math.nan):
        with pytest.raises(VaelabError, match="beta must be a number of 0 or more"):
            validate(RunConfig().replace(model={"beta": bad}))


def test_weights_of_older_versions_still_load():
    """Before the model API, every model carried an AE's box (code_low, code_high); a VAE now drops it, from the
    weights file and from a checkpoint alike."""
    from vaelab.runs import check_fits

    config = ModelConfig(model="vae", arch="mlp")
    old = {**build_model(config).state_dict(), "code_low": torch.zeros(2), "code_high": torch.ones(2)}
    model = build_model(config)
    check_fits(model, {k: tuple(v.shape) for k, v in old.items()}, Path("model.safetensors"))
    check_fits(model, {f"model.{k}": tuple(v.shape) for k, v in old.items()}, Path("checkpoint"), "model.")
    model.load_state_dict(old)  # strict
    assert "code_low" not in model.state_dict()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in old.items() if k in model.state_dict())
