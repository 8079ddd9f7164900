"""Tiny trained runs for the explorer tests, built once per session (a few seconds on 2 cores)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from pagekit import train_run

from vaelab.data.idx import write_idx
from vaelab.metrics.classifier import Recipe, ReferenceClassifier, ReferenceCNN


@contextlib.contextmanager
def one_torch_thread():
    """As `vaelab explore` serves: on a small shared machine, tiny forward passes split over
    several cores mostly wait for each other (ten times slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def explore_threads():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def explore_data_dir(mnist_sample, tmp_path_factory):
    """250 training images of all ten digits (every 16th of the sample, which is sorted by digit)
    and 100 test images, as IDX files."""
    data_dir = tmp_path_factory.mktemp("explore-data") / "mnist"
    data_dir.mkdir()
    d = mnist_sample
    for name, array in (("train-images-idx3-ubyte.gz", d.train_images[::16, 0]),
                        ("train-labels-idx1-ubyte.gz", d.train_labels[::16]),
                        ("t10k-images-idx3-ubyte.gz", d.test_images[::10, 0]),
                        ("t10k-labels-idx1-ubyte.gz", d.test_labels[::10])):
        write_idx(data_dir / name, array.numpy())
    return data_dir


@pytest.fixture(scope="session")
def explore_runs(explore_data_dir, tmp_path_factory):
    """A 2-D VAE, a 2-D AE, a 3-D VAE and a 2-D conditional VAE (MLP), each trained for two epochs on
    `explore_data_dir`."""
    root = tmp_path_factory.mktemp("explore-runs")
    with pytest.MonkeyPatch.context() as env, one_torch_thread():  # never touch the user's cache
        env.setenv("XDG_CACHE_HOME", str(root / "cache"))
        env.delenv("VAELAB_DATA_DIR", raising=False)
        return {"vae": train_run(root / "vae", explore_data_dir, "book-vae"),
                "ae": train_run(root / "ae", explore_data_dir, "book-ae"),
                "vae3": train_run(root / "vae3", explore_data_dir, "book-vae", latent_dim=3),
                "cvae": train_run(root / "cvae", explore_data_dir, "book-vae", model="cvae", arch="mlp")}


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
