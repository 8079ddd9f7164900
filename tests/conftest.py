"""Shared fixtures: tiny IDX datasets made from the built-in MNIST sample, and the real data when present."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.data import DATASETS, load_dataset
from vaelab.data.idx import write_idx

# Where the integration tests look for real MNIST: $VAELAB_DATA_DIR (read now, because `isolated_cache`
# hides it from every test), then ../shared/data beside the checkout, where the project's machines keep it.
REAL_DATA_DIRS = [Path(p) for p in (os.environ.get("VAELAB_DATA_DIR"),) if p] + [
    Path(__file__).resolve().parents[1].parent / "shared" / "data"]


def write_idx_dataset(folder: Path, train_x, train_y, test_x, test_y) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (("train-images-idx3-ubyte.gz", train_x), ("train-labels-idx1-ubyte.gz", train_y),
                        ("t10k-images-idx3-ubyte.gz", test_x), ("t10k-labels-idx1-ubyte.gz", test_y)):
        write_idx(folder / name, np.asarray(array, dtype=np.uint8))  # IDX ubyte files, as MNIST ships them
    return folder


@pytest.fixture(scope="session")
def mnist_sample():
    return load_dataset("mnist-sample")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, mnist_sample) -> Path:
    """A 256/64-image 'mnist' in IDX form (real digits from the sample), for fast training tests."""
    d = mnist_sample
    return write_idx_dataset(tmp_path_factory.mktemp("tiny") / "mnist",
                             d.train_images[:256, 0], d.train_labels[:256], d.test_images[:64, 0], d.test_labels[:64])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """A data folder with real MNIST (the four IDX files, directly or in mnist/)."""
    for folder in REAL_DATA_DIRS:
        if DATASETS["mnist"].find_in(folder):
            return folder
    pytest.skip("real MNIST not found: set VAELAB_DATA_DIR to real MNIST to run these")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Never read or write the user's cache, never pick up a data dir from the environment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAELAB_DATA_DIR", raising=False)


@pytest.fixture
def rgb_data(monkeypatch, mnist_sample):
    """Training reads 96/32 random 3x16x16 images (a fixed seed), whatever dataset the run names: small colour
    data for the network, export and logging tests, with no image files to convert."""
    from vaelab.train import loop

    g = torch.Generator().manual_seed(0)
    data = dataclasses.replace(
        mnist_sample, origin="random colour images made by the test",  # keeps a name run configs accept
        train_images=torch.randint(0, 256, (96, 3, 16, 16), generator=g, dtype=torch.uint8),
        train_labels=torch.arange(96) % 10,
        test_images=torch.randint(0, 256, (32, 3, 16, 16), generator=g, dtype=torch.uint8),
        test_labels=torch.arange(32) % 10)
    monkeypatch.setattr(loop, "load_data", lambda config: data)
    return data
