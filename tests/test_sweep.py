"""The beta-VAE and `vaelab sweep`: beta = 1 is the VAE bitwise, beta -> 0 frees the KL, the sweep's report
folder, the smallest fixing beta, and bad input as a one-line error that leaves nothing behind."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch

import vaelab
from tests.test_compare import TINY_CLASSIFIER, assert_one_line_error, digits  # noqa: F401  (a fixture)
from vaelab.config import ModelConfig
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.sweep import parse_betas, smallest_fixing_beta, sweep_groups


def test_beta_one_is_the_vae_bitwise():
    x = torch.rand(16, 1, 28, 28)
    grads = []
    for config in (ModelConfig(arch="mlp"), ModelConfig(arch="mlp", beta=1.0)):
        torch.manual_seed(0)
        model = build_model(config)
        terms = model.loss(x)
        assert torch.equal(terms["loss"], terms["reconstruction"] + terms["kl"])  # the VAE's negative ELBO
        terms["loss"].backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_beta_weights_the_kl_and_nothing_else():
    x = torch.rand(8, 1, 28, 28)
    terms = {}
    for beta in (1.0, 0.25):
        torch.manual_seed(0)
        model = build_model(ModelConfig(arch="mlp", beta=beta))
        terms[beta] = model.loss(x)
    assert torch.equal(terms[1.0]["kl"], terms[0.25]["kl"])
    assert torch.allclose(terms[0.25]["loss"], terms[0.25]["reconstruction"] + 0.25 * terms[0.25]["kl"])


def trained_kl(beta: float, x: torch.Tensor, steps: int = 150) -> float:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mlp", likelihood="bernoulli", beta=beta))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(steps):
        loss = model.loss(x[(step * 64) % len(x):][:64])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return model.posterior(x).kl().mean().item()


def test_beta_towards_zero_leaves_the_kl_free(mnist_sample):
    """Without its weight the KL is no longer pressed down: measured after the same training, it ends far
    above the VAE's (the encoder uses the code freely, as an AE would)."""
    x = (mnist_sample.train_images[::4].float() / 255 > 0.5).float()
    free, vae = trained_kl(0.0, x), trained_kl(1.0, x)
    assert free > 3 * vae and free > 5.0, (free, vae)


@pytest.mark.parametrize("text,match", [
    ("", "--beta needs a comma-separated list"), (" , ", "--beta needs a comma-separated list"),
    ("0,-0.1", "every weight must be a number from 0"), ("0.1,abc", "'abc' is not a number"),
    ("nan", "every weight must be a number from 0"), ("inf", "every weight must be a number from 0"),
    ("1,,2", "'' is not a number"),
])
def test_bad_beta_lists(text, match):
    with pytest.raises(VaelabError, match=match):
        parse_betas(text)


def test_beta_lists_are_sorted_without_repeats():
    assert parse_betas("1, 0.1,0,1e-2,0.1") == [0.0, 0.01, 0.1, 1.0]


def test_the_groups_are_the_reference_then_each_beta_per_seed():
    groups = sweep_groups([0.0, 0.5], {"dataset": "mnist", "epochs": 1}, 1000, seeds=2)
    assert [label for label, _ in groups] == ["AE", "β=0", "β=0.5"]
    assert [[name for name, _ in jobs] for _, jobs in groups] == [
        ["ae-seed0", "ae-seed1"], ["beta0-seed0", "beta0-seed1"], ["beta0.5-seed0", "beta0.5-seed1"]]
    assert [c.model.beta for _, c in groups[2][1]] == [0.5, 0.5] and groups[0][1][1][1].train.seed == 1
    assert {c.model.arch for _, jobs in groups for _, c in jobs} == {"mlp-ln"}


def metrics(flaw1: float, flaw2: float, flaw3: float) -> dict:
    return {"samples": {"precision_vs_reconstructions": flaw1},
            "latent": {"gaussian_kl": flaw2, "spread_ratio": flaw3}}


def test_the_smallest_fixing_beta_needs_a_difference_beyond_the_seeds_spread():
    ae = [metrics(0.5, 3.0, 4.0), metrics(0.6, 3.2, 4.2)]
    series = [(0.0, [metrics(0.52, 3.1, 4.1), metrics(0.62, 3.0, 4.0)]),  # within the spread
              (0.1, [metrics(0.9, 3.3, 2.0), metrics(0.92, 3.1, 2.1)]),  # flaw 1 and 3 fixed, flaw 2 not
              (1.0, [metrics(0.95, 0.1, 1.5), metrics(0.97, 0.2, 1.4)])]
    fixes = [smallest_fixing_beta(flaw, ae, series) for flaw in (1, 2, 3)]
    assert [f["beta"] for f in fixes] == [0.1, 1.0, 0.1]
    assert fixes[1]["spread"] == pytest.approx(math.sqrt(0.02) + math.sqrt(0.005))
    assert smallest_fixing_beta(2, ae, series[:2])["beta"] is None


def test_with_one_seed_any_improvement_counts():
    fix = smallest_fixing_beta(3, [metrics(0.5, 3.0, 4.0)], [(0.0, [metrics(0.5, 3.0, 4.0)]),
                                                            (0.3, [metrics(0.5, 3.0, 3.99)])])
    assert fix["beta"] == 0.3 and fix["spread"] is None


@pytest.fixture(scope="module")
def sweep_report(digits, tmp_path_factory):  # noqa: F811
    with pytest.MonkeyPatch.context() as patch:  # module scope: keep the classifier out of the user's cache
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        # in this process: no start-up per run
        patch.setattr(importlib.import_module("vaelab.sweep"), "plan", lambda runs, device: (1, 1))
        return vaelab.sweep("0,1", tmp_path_factory.mktemp("sweep") / "sweep", dataset="mnist", data_dir=str(digits),
                            epochs=1, classifier=TINY_CLASSIFIER, show_progress=False)


def test_the_sweep_report(sweep_report):
    result = json.loads((sweep_report / "metrics.json").read_text())
    assert result["format"] == "vaelab-sweep-1" and result["betas"] == [0.0, 1.0]
    assert result["reference"]["label"] == "AE" and [r["label"] for r in result["runs"]] == ["β=0", "β=1"]
    assert [r["beta"] for r in result["runs"]] == [0.0, 1.0] and result["reference"]["model"] == "ae"
    assert "kl" in result["runs"][0]["metrics"]["likelihood"] and "iw_nll" in result["runs"][1]["metrics"]["likelihood"]
    assert [f["flaw"] for f in result["fixes"]] == [1, 2, 3]
    assert {f["file"] for f in result["figures"]} == {"figures/dial.png", "figures/scatters.png"}
    assert all((sweep_report / f["file"]).stat().st_size > 1000 for f in result["figures"])
    html = (sweep_report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "smallest" in html
    assert "seed-to-seed spread is unknown" in html or "no β of the sweep" in html
    assert {p.name for p in (sweep_report / "runs").iterdir()} == {"ae", "beta0", "beta1"}
    config = json.loads((sweep_report / "runs" / "beta0" / "config.json").read_text())
    assert config["model"]["beta"] == 0.0


@pytest.mark.parametrize("args,match", [
    (["--beta", ""], "--beta needs a comma-separated list"),
    (["--beta", "0,-1"], "every weight must be a number from 0"),
    (["--beta", "0,x"], "'x' is not a number"),
    (["--beta", "0,1", "--seeds", "0"], "seeds must be at least 1"),
])
def test_bad_sweep_input_is_one_line(capsys, tmp_path, digits, args, match):  # noqa: F811
    out = tmp_path / "sweep"
    assert_one_line_error(capsys, "sweep", *args, "--dataset", "mnist", "--data-dir", digits, "--epochs", "1",
                          "--out", out, match=match, out=out)


def test_train_takes_beta_for_the_vae_only(capsys, tmp_path, digits):  # noqa: F811
    out = tmp_path / "run"
    assert_one_line_error(capsys, "train", "--model", "ae", "--beta", "0.5", "--dataset", "mnist", "--data-dir",
                          digits, "--epochs", "1", "--out", out, match="beta weights a KL term; the ae has none",
                          out=out)
