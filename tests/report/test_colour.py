"""The report's figures in colour: views of an RGB model keep its channels, and every figure draws them."""

import dataclasses
import io

import numpy as np
import torch
from PIL import Image

from vaelab.config import ModelConfig
from vaelab.models import build_model
from vaelab.report.figures import render, tile
from vaelab.report.views import build_view

HISTORY = [{"epoch": 1, "train": {"loss": 2.0, "reconstruction": 1.5, "kl": 0.5},
            "test": {"loss": 2.1, "reconstruction": 1.6, "kl": 0.5}}]


def colour_data(mnist_sample, n_test=60):
    g = torch.Generator().manual_seed(0)
    return dataclasses.replace(
        mnist_sample, train_images=torch.randint(0, 256, (100, 3, 16, 16), generator=g, dtype=torch.uint8),
        train_labels=torch.arange(100) % 10,
        test_images=torch.randint(0, 256, (n_test, 3, 16, 16), generator=g, dtype=torch.uint8),
        test_labels=torch.arange(n_test) % 10)


def test_tile_keeps_colour_channels():
    images = np.zeros((2, 3, 4, 5, 3))
    images[1, 2, ..., 0] = 1.0  # the last image red
    mosaic = tile(images)
    assert mosaic.shape == (2 * 5 - 1, 3 * 6 - 1, 3)
    assert (mosaic[5:, 12:, 0] == 1).all() and (mosaic[5:, 12:, 1:] == 0).all() and (mosaic[4, :, :] == 0.5).all()


def test_every_figure_of_an_rgb_model_is_in_colour(mnist_sample):
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="vae", arch="mlp", latent_dim=3, image_shape=(3, 16, 16),
                                    r_loss_factor=1000.0)).eval()
    view = build_view("VAE", model, colour_data(mnist_sample), "continuous", HISTORY)
    assert view.sample_images.shape == (20, 16, 16, 3) and view.originals.shape[1:] == (16, 16, 3)
    assert view.grid_images.shape[2:] == (16, 16, 3) and view.traversals.shape[-1] == 3
    figures = {figure.name: figure for figure in render([view])}
    assert {"samples", "grid", "reconstructions", "posteriors", "traversals"} <= set(figures)
    png = np.asarray(Image.open(io.BytesIO(figures["reconstructions"].png)).convert("RGB")).astype(int)
    red, green, blue = png[..., 0], png[..., 1], png[..., 2]
    assert (np.abs(red - green) + np.abs(green - blue) > 100).sum() > 1000  # the random colour originals
