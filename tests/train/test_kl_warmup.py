"""KL warm-up: the KL term's weight rises from 0 to 1 over the first part of a run (TrainConfig.kl_warmup)."""

import pytest
import torch
from test_training import assert_same_weights, tiny_config, weights

import vaelab
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.runs import read_metrics
from vaelab.train.loop import kl_warmup_weight


def test_the_weight_rises_linearly_then_stays_at_one():
    assert [kl_warmup_weight(f, 0.25) for f in (0.0, 0.125, 0.25, 0.5, 1.0)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert kl_warmup_weight(0.0, 0.0) == 1.0  # off


def test_the_weight_scales_only_the_kl_term():
    torch.manual_seed(0)
    model = build_model(vaelab.preset("book-vae").replace(model={"arch": "mlp"}).model)
    x = torch.rand(16, 1, 28, 28)
    torch.manual_seed(1)
    full = model.loss(x)
    torch.manual_seed(1)
    warm = model.loss(x, kl_weight=0.5)
    assert torch.equal(warm["kl"], full["kl"]) and torch.equal(warm["reconstruction"], full["reconstruction"])
    assert torch.allclose(warm["loss"], full["reconstruction"] + 0.5 * full["kl"])


def test_warmup_changes_training_and_evaluation_keeps_the_full_objective(tiny_data_dir, tmp_path):
    plain = tiny_config(tiny_data_dir, model="vae").replace(train={"lr_schedule": "warmup-cosine"})
    straight = vaelab.train(plain, tmp_path / "plain", show_progress=False)
    off = vaelab.train(plain.replace(train={"kl_warmup": 0.0}), tmp_path / "off", show_progress=False)
    assert_same_weights(straight, off)  # 0 is exactly the plain VAE
    warm = vaelab.train(plain.replace(train={"kl_warmup": 0.5}), tmp_path / "warm", show_progress=False)
    assert not torch.equal(weights(straight)["encoder.net.1.weight"], weights(warm)["encoder.net.1.weight"])
    first, last = read_metrics(warm)
    # epoch 1 lies inside the warm-up: its training loss weighs the KL by less than 1; the test loss never does
    assert first["train"]["loss"] < first["train"]["reconstruction"] + first["train"]["kl"] - 1e-6
    for epoch in (first, last):
        assert epoch["test"]["loss"] == pytest.approx(epoch["test"]["reconstruction"] + epoch["test"]["kl"])


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_a_warmup_outside_the_run_is_a_one_line_error(value):
    with pytest.raises(VaelabError, match="kl-warmup must be a fraction of the run"):
        vaelab.config.validate(vaelab.preset("book-vae").replace(train={"kl_warmup": value}))
