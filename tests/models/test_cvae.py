"""The conditional VAE: shapes on every architecture, labels reach it in training, a requested class comes out."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

import vaelab
from vaelab.config import ModelConfig
from vaelab.errors import VaelabError
from vaelab.metrics.conditional import conditioned_accuracy
from vaelab.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from test_training import assert_same_weights, tiny_config  # noqa: E402


@pytest.mark.parametrize("arch, shape", [("mlp", (1, 28, 28)), ("conv", (1, 28, 28)), ("conv", (3, 16, 16)),
                                         ("faces", (3, 32, 32))])
def test_shapes_on_every_architecture(arch, shape):
    model = build_model(ModelConfig(model="cvae", arch=arch, image_shape=shape, latent_dim=3, n_classes=10,
                                    r_loss_factor=1000.0))
    x, labels = torch.rand(5, *shape), torch.tensor([0, 3, 9, -1, 2])
    posterior = model.posterior(x, labels)
    assert posterior.mean.shape == posterior.logvar.shape == (5, 3)
    assert model.decode(posterior.mean, labels).shape == (5, *shape)
    assert model.sample(4, labels=torch.arange(4)).shape == model.sample(4).shape == (4, *shape)
    terms = model.loss(x, labels)
    assert set(terms) == {"loss", "reconstruction", "kl"} and terms["loss"].ndim == 0


def test_the_label_changes_the_image_and_no_label_is_label_minus_one():
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="cvae", arch="mlp", n_classes=10, r_loss_factor=1000.0)).eval()
    z = torch.randn(2, 2)
    assert not torch.equal(model.decode(z, torch.tensor([1, 1])), model.decode(z, torch.tensor([7, 7])))
    assert torch.equal(model.decode(z), model.decode(z, torch.tensor([-1, -1])))


def test_without_labels_is_a_one_line_error_and_leaves_no_folder(tiny_data_dir, tmp_path, monkeypatch, mnist_sample):
    from vaelab.train import loop

    unlabelled = dataclasses.replace(mnist_sample, classes=(), train_labels=torch.full((4000,), -1),
                                     test_labels=torch.full((1000,), -1))
    monkeypatch.setattr(loop, "load_data", lambda config: unlabelled)
    with pytest.raises(VaelabError) as error:
        vaelab.train(tiny_config(tiny_data_dir, model="cvae"), tmp_path / "run", show_progress=False)
    assert "\n" not in str(error.value) and "label" in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.determinism
def test_resume_is_bitwise_with_labels_and_label_dropout(tiny_data_dir, tmp_path):
    config = tiny_config(tiny_data_dir, epochs=2, model="cvae")
    straight = vaelab.train(config, tmp_path / "straight", show_progress=False)
    stopped = vaelab.train(config.replace(train={"epochs": 1}), tmp_path / "stopped", show_progress=False)
    vaelab.resume(stopped, epochs=2, show_progress=False)
    assert_same_weights(straight, stopped)
    assert vaelab.load(straight).config.n_classes == 10


def nearest_class_mean(images: torch.Tensor, labels: torch.Tensor):
    """A pixel-space classifier (about 80% on MNIST): the class whose mean image is nearest."""
    means = torch.stack([images[labels == c].float().mean(0).flatten() for c in range(10)])
    return lambda x: torch.cdist(x.flatten(1), means).argmin(1)


def test_a_briefly_trained_cvae_draws_the_requested_class_more_often_than_chance(tmp_path, mnist_sample):
    config = vaelab.preset("book-vae").replace(
        data={"dataset": "mnist-sample"}, model={"model": "cvae", "arch": "mlp"},
        train={"epochs": 2, "batch_size": 64, "lr": 2e-3, "seed": 0, "device": "cpu"})
    model = vaelab.load(vaelab.train(config, tmp_path / "cvae", show_progress=False))
    predict = nearest_class_mean(mnist_sample.train_images / 255.0, mnist_sample.train_labels)
    real = (predict(mnist_sample.test_images / 255.0) == mnist_sample.test_labels).float().mean().item()
    result = conditioned_accuracy(model, predict, per_class=50)
    assert result["chance"] == 0.1 and result["n_samples"] == 500
    assert result["conditioned_accuracy"] > 0.4, (result, real)  # chance is 0.1
