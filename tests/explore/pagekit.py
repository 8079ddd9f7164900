"""Models for the explorer's tests: tiny trained runs (`train_run`) and, for the exported page, untrained models
of every network vaelab decodes with, their BatchNorm layers given running statistics and affine weights far
from their initial 0 and 1 (so that folding them is tested)."""

from __future__ import annotations

import torch

import vaelab
from vaelab.config import ModelConfig
from vaelab.explore.page import Explorer, model_page_run
from vaelab.models import build_model

# (model, network, image shape): every decoder network, a colour image, and a conditional model
NETWORKS = [("vae", "mlp", (1, 28, 28)), ("vae", "mlp-ln", (1, 28, 28)), ("vae", "conv", (1, 28, 28)),
            ("vae", "conv", (3, 28, 28)), ("vae", "faces", (3, 32, 32)), ("cvae", "mlp", (1, 28, 28)),
            ("cvae", "conv", (1, 28, 28))]
LIKELIHOODS = ["bernoulli", "gaussian"]
CLASSES = [str(digit) for digit in range(10)]


def train_run(out, data_dir, preset: str, latent_dim: int = 2, **model):
    config = vaelab.preset(preset).replace(train={"epochs": 2, "batch_size": 32},
                                           data={"dataset": "mnist", "data_dir": str(data_dir)},
                                           model={"latent_dim": latent_dim, **model})
    vaelab.train(config, out, show_progress=False)
    return out


def random_model(model: str, arch: str, image_shape, likelihood: str = "bernoulli", seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_model(ModelConfig(model=model, arch=arch, likelihood=likelihood, image_shape=image_shape,
                                          n_classes=len(CLASSES) if model == "cvae" else 0))
        for norm in network.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.running_mean.normal_(0, 0.5)
                norm.running_var.uniform_(0.3, 3)
                norm.weight.data.uniform_(0.5, 1.5)
                norm.bias.data.normal_(0, 0.3)
    return network.eval()


def model_page(models: dict, images: int = 20) -> Explorer:
    """The exported page of untrained `models` (name: model), each showing the codes of random images."""
    runs = []
    for name, network in models.items():
        generator = torch.Generator().manual_seed(1)
        test_x = torch.rand(images, *network.config.image_shape, generator=generator)
        labels = torch.arange(images) % len(CLASSES)
        runs.append(model_page_run(network, name, name, "random", CLASSES, test_x, labels))
    return Explorer(runs)
