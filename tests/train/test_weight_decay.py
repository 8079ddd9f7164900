"""Decoupled weight decay (TrainConfig.weight_decay, `--weight-decay`): AdamW instead of Adam."""

import pytest
import torch
from test_training import assert_same_weights, losses, tiny_config, weights

import vaelab
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.train.loop import make_optimizer


def test_no_decay_is_plain_adam_and_a_decay_is_adamw():
    config = vaelab.preset("book-vae").replace(model={"arch": "mlp"})
    model = build_model(config.model)
    assert type(make_optimizer(model, config)) is torch.optim.Adam
    decayed = make_optimizer(model, config.replace(train={"weight_decay": 0.1}))
    assert type(decayed) is torch.optim.AdamW and decayed.param_groups[0]["weight_decay"] == 0.1


def test_a_step_without_gradient_shrinks_every_weight_by_lr_times_decay():
    """AdamW's decay is decoupled from the gradient: with a zero gradient Adam's update is 0, so a step
    multiplies each weight by exactly 1 - lr * weight_decay."""
    config = vaelab.preset("book-ae").replace(model={"arch": "mlp"}, train={"lr": 5e-3, "weight_decay": 0.1})
    model = build_model(config.model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = make_optimizer(model, config)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] * (1 - 5e-3 * 0.1), rtol=1e-6, atol=0, msg=name)


@pytest.mark.determinism
def test_decay_changes_training_and_resumes_bitwise(tiny_data_dir, tmp_path):
    config = tiny_config(tiny_data_dir, epochs=2).replace(train={"weight_decay": 0.1})
    plain = vaelab.train(config.replace(train={"weight_decay": 0.0}), tmp_path / "plain", show_progress=False)
    straight = vaelab.train(config, tmp_path / "straight", show_progress=False)
    assert not torch.equal(weights(plain)["encoder.net.1.weight"], weights(straight)["encoder.net.1.weight"])
    stopped = vaelab.train(config.replace(train={"epochs": 1}), tmp_path / "stopped", show_progress=False)
    vaelab.resume(stopped, epochs=2, show_progress=False)
    assert_same_weights(straight, stopped)
    assert losses(straight) == losses(stopped)


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_a_decay_outside_0_to_1_is_a_one_line_error(value):
    with pytest.raises(VaelabError, match="weight-decay must be at least 0 and below 1"):
        vaelab.config.validate(vaelab.preset("book-vae").replace(train={"weight_decay": value}))
