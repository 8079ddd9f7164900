"""Tiny trained runs for the explorer tests, built once per session (a few seconds on 2 cores)."""

from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab.metrics.classifier import Recipe, ReferenceClassifier, ReferenceCNN


def train_run(out, data_dir, preset: str, latent_dim: int = 2):
    config = vaelab.preset(preset).replace(train={"epochs": 1, "batch_size": 64},
                                           data={"dataset": "mnist", "data_dir": str(data_dir)},
                                           model={"latent_dim": latent_dim})
    vaelab.train(config, out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def explore_runs(tiny_data_dir, tmp_path_factory):
    """A 2-D VAE, a 2-D AE and a 3-D VAE trained for one epoch on 256 images (64 test images)."""
    root = tmp_path_factory.mktemp("explore-runs")
    with pytest.MonkeyPatch.context() as env:  # never touch the user's cache
        env.setenv("XDG_CACHE_HOME", str(root / "cache"))
        env.delenv("VAELAB_DATA_DIR", raising=False)
        return {"vae": train_run(root / "vae", tiny_data_dir, "book-vae"),
                "ae": train_run(root / "ae", tiny_data_dir, "book-ae"),
                "vae3": train_run(root / "vae3", tiny_data_dir, "book-vae", latent_dim=3)}


def untrained_classifier(data):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = ReferenceCNN(data.image_shape, len(data.classes)).eval()
    return ReferenceClassifier(network, data.name, 0.1, Recipe()), None


@pytest.fixture(scope="session")
def find_classifier():
    """A stand-in for finding the cached reference classifier: the real network class with seeded random
    weights, so the overlay can be tested without minutes of classifier training."""
    return untrained_classifier
