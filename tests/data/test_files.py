"""Your own data: image folders and NumPy files, converted once into the memory-mapped cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import write_idx_dataset
from vaelab.data import cache_dir, dataset_info, load_dataset
from vaelab.data import folder as folder_module
from vaelab.data.convert import parse_image_size
from vaelab.errors import VaelabError


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def class_folder(root: Path, classes=("cat", "dog"), per_class=10, shape=(8, 8), suffix="png") -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            save(root / name / f"{i}.{suffix}", noise(shape, seed=100 * c + i))
    return root


def converted_entries() -> list[Path]:
    root = cache_dir() / "converted"
    return sorted(root.iterdir()) if root.is_dir() else []


# --- folders -------------------------------------------------------------------------------------------------

def test_grey_class_subfolders_give_labels_and_a_stratified_split(tmp_path):
    root = class_folder(tmp_path / "pets", per_class=10)
    data = load_dataset(str(root), test_fraction=0.2)
    assert data.classes == ("cat", "dog") and data.image_shape == (1, 8, 8)
    assert data.train_labels.bincount().tolist() == [8, 8] and data.test_labels.bincount().tolist() == [2, 2]
    assert data.train_images.dtype == torch.uint8 and not data.in_memory
    again = load_dataset(str(root), test_fraction=0.2)
    assert torch.equal(again.test_images, data.test_images)  # the split is deterministic
    first_cat = np.asarray(Image.open(root / "cat" / "0.png"))
    rows = [x[0].numpy() for x in torch.cat([data.train_images, data.test_images])]
    assert any(np.array_equal(first_cat, r) for r in rows)


def test_rgb_flat_folder_is_unlabelled(tmp_path):
    for i in range(10):
        save(tmp_path / "flat" / f"{i:02d}.jpg", noise((12, 10, 3), seed=i))
    data = load_dataset(str(tmp_path / "flat"))
    assert data.classes == () and not data.labelled and data.image_shape == (3, 12, 10)
    assert (len(data.train_images), len(data.test_images)) == (9, 1)
    assert set(data.train_labels.tolist()) == {-1}


def test_train_and_test_subfolders_give_the_split(tmp_path):
    root = tmp_path / "split"
    class_folder(root / "train", per_class=5)
    class_folder(root / "test", per_class=2)
    data = load_dataset(str(root), test_fraction=0.5)  # the given split wins over the fraction
    assert (len(data.train_images), len(data.test_images)) == (10, 4)
    assert data.identity()["split"] == "train/ and test/ folders"


def test_nested_folders_belong_to_their_class(tmp_path):
    root = class_folder(tmp_path / "nested", per_class=3)
    save(root / "cat" / "indoor" / "deep" / "x.png", noise((8, 8), seed=9))
    data = load_dataset(str(root), test_fraction=0)
    assert data.train_labels.bincount().tolist() == [4, 3]


def test_non_image_files_are_skipped_and_counted(tmp_path):
    root = class_folder(tmp_path / "mixed", per_class=3)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0")
    data = load_dataset(str(root), test_fraction=0)
    assert len(data.train_images) == 6 and data.identity()["skipped_files"] == 2
    assert "2 non-image files skipped" in data.origin


def test_a_corrupt_image_is_one_error_naming_it_and_leaves_no_cache(tmp_path):
    root = class_folder(tmp_path / "broken", per_class=3)
    (root / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(VaelabError, match=r"dog/1\.png: not a readable image"):
        load_dataset(str(root))
    assert converted_entries() == []


def test_mixed_sizes_need_image_size(tmp_path):
    root = tmp_path / "sizes"
    save(root / "a.png", noise((8, 8)))
    save(root / "b.png", noise((10, 12)))
    save(root / "c.png", noise((10, 12)))
    with pytest.raises(VaelabError, match=r"2 different sizes: 10x12 \(2\), 8x8 \(1\); choose one with --image-size"):
        load_dataset(str(root))
    data = load_dataset(str(root), image_size=(6, 6), test_fraction=0)
    assert data.image_shape == (1, 6, 6) and len(data.train_images) == 3


def test_resize_crops_the_centre_to_the_aspect_first(tmp_path):
    wide = np.zeros((10, 30), np.uint8)
    wide[:, 10:20] = 200  # the centre third; the sides are cropped away for a square target
    save(tmp_path / "wide" / "w.png", wide)
    same_scale = load_dataset(str(tmp_path / "wide"), image_size=(10, 10), test_fraction=0)
    assert set(same_scale.train_images.flatten().tolist()) == {200}
    shrunk = load_dataset(str(tmp_path / "wide"), image_size=(5, 5), test_fraction=0)
    assert shrunk.train_images.min() > 150  # Lanczos' support reaches just past the crop; no crop: mean 67


def test_channels_convert_grey_and_rgb(tmp_path):
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 255  # pure red: luma 0.299 * 255 = 76
    save(tmp_path / "red" / "r.png", colour)
    grey = load_dataset(str(tmp_path / "red"), channels=1, test_fraction=0)
    assert grey.image_shape == (1, 4, 4) and int(grey.train_images[0, 0, 0, 0]) == 76
    save(tmp_path / "grey" / "g.png", np.full((4, 4), 90, np.uint8))
    rgb = load_dataset(str(tmp_path / "grey"), channels=3, test_fraction=0)
    assert rgb.image_shape == (3, 4, 4) and set(rgb.train_images.flatten().tolist()) == {90}


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    save(tmp_path / "deep" / "d.png", np.array([[0, 257 * 128, 65535, 1000]], np.uint16))
    data = load_dataset(str(tmp_path / "deep"), test_fraction=0)
    assert data.train_images[0, 0, 0].tolist() == [0, 128, 255, 4]


def test_a_folder_with_any_colour_image_is_rgb(tmp_path):
    save(tmp_path / "some" / "g.png", noise((4, 4)))
    save(tmp_path / "some" / "c.png", noise((4, 4, 3)))
    assert load_dataset(str(tmp_path / "some"), test_fraction=0).image_shape == (3, 4, 4)


@pytest.mark.parametrize("layout", ["empty", "only text", "loose and classes", "half labelled"])
def test_folder_layouts_that_are_errors(tmp_path, layout):
    root = tmp_path / "bad"
    root.mkdir()
    expected = {"empty": "holds no images (0 other files skipped)",
                "only text": "holds no images (1 other file skipped)",
                "loose and classes": "has images at its top level",
                "half labelled": "one of train/ and test/ has class subfolders"}[layout]
    if layout == "only text":
        (root / "readme.md").write_text("x")
    if layout == "loose and classes":
        class_folder(root, per_class=1)
        save(root / "loose.png", noise((8, 8)))
    if layout == "half labelled":
        class_folder(root / "train", per_class=1)
        save(root / "test" / "t.png", noise((8, 8)))
    with pytest.raises(VaelabError, match=re.escape(expected)):
        load_dataset(str(root))


def test_missing_path_and_other_files(tmp_path):
    with pytest.raises(VaelabError, match="no such folder or file"):
        load_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(VaelabError, match="neither a folder of images nor a .npz or .npy file"):
        load_dataset(str(tmp_path / "data.csv"))


# --- NumPy files ---------------------------------------------------------------------------------------------

def test_keras_npz_layout(tmp_path):
    x_train, x_test = noise((20, 6, 6)), noise((5, 6, 6), seed=1)
    y_train, y_test = np.arange(20) % 4, np.arange(5) % 4
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = load_dataset(str(tmp_path / "mnist.npz"))
    assert data.image_shape == (1, 6, 6) and data.classes == ("0", "1", "2", "3")
    assert np.array_equal(data.train_images[:, 0].numpy(), x_train)
    assert data.test_labels.tolist() == y_test.tolist()


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_images_labels_npz_float_and_layouts(tmp_path, layout):
    rgb = np.random.default_rng(0).random((30, 5, 7, 3))  # float in [0, 1], NHWC
    stored = rgb if layout == "NHWC" else rgb.transpose(0, 3, 1, 2)
    np.savez_compressed(tmp_path / "a.npz", images=stored.astype(np.float32), labels=np.arange(30) % 3)
    data = load_dataset(str(tmp_path / "a.npz"), test_fraction=0.2)
    assert data.image_shape == (3, 5, 7) and (len(data.train_images), len(data.test_images)) == (24, 6)
    expected = np.rint(rgb.astype(np.float32) * 255).astype(np.uint8).transpose(0, 3, 1, 2)
    assert any(np.array_equal(data.train_images[0].numpy(), e) for e in expected)


def test_npy_is_unlabelled_images(tmp_path):
    np.save(tmp_path / "x.npy", noise((10, 3, 4, 4)))
    data = load_dataset(str(tmp_path / "x.npy"))
    assert data.image_shape == (3, 4, 4) and data.classes == () and len(data.test_images) == 1


@pytest.mark.parametrize("arrays,match", [
    ({"images": np.zeros((4, 5, 5), np.int64)}, "images of dtype int64; vaelab reads uint8"),
    ({"images": np.full((4, 5, 5), 2.0)}, r"float images must lie in \[0, 1\], found values from 2 to 2"),
    ({"images": np.full((4, 5, 5), np.nan)}, "NaN or infinite"),
    ({"images": np.zeros((4, 25), np.uint8)}, r"must be \[N, H, W\], \[N, H, W, C\] or \[N, C, H, W\]"),
    ({"images": np.zeros((4, 5, 5, 4), np.uint8)}, "got shape"),
    ({"images": np.zeros((4, 3, 5, 3), np.uint8)}, r"could be \[N, C, H, W\] or \[N, H, W, C\]"),
    ({"images": np.zeros((4, 5, 5), np.uint8), "labels": np.zeros(3, np.int64)}, "one integer per image"),
    ({"images": np.zeros((4, 5, 5), np.uint8), "labels": np.zeros(4)}, "labels of dtype float64"),
    ({"x_train": np.zeros((4, 5, 5), np.uint8), "x_test": np.zeros((2, 5, 5), np.uint8),
      "y_train": np.zeros(4, np.int64)}, "only one of y_train and y_test"),
    ({"pixels": np.zeros((4, 5, 5), np.uint8)}, "no arrays named x_train/x_test"),
    ({"images": np.array([None] * 4, dtype=object)}, "not a readable NumPy .npz file"),
])
def test_bad_arrays_are_clear_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(VaelabError, match=match):
        load_dataset(str(tmp_path / "bad.npz"))
    assert converted_entries() == []


def test_a_broken_npz_is_named(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK not a zip")
    with pytest.raises(VaelabError, match="bad.npz: not a readable NumPy .npz file"):
        load_dataset(str(tmp_path / "bad.npz"))


# --- the cache -----------------------------------------------------------------------------------------------

def test_second_load_decodes_no_image(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "pets", per_class=4)
    first = load_dataset(str(root))

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was opened")

    monkeypatch.setattr(folder_module.Image, "open", no_decoding)
    second = load_dataset(str(root))
    assert torch.equal(second.train_images, first.train_images)
    assert second.identity()["sha256"] == first.identity()["sha256"]
    assert isinstance(second.train_images.numpy().base, np.memmap) or not second.in_memory


def test_a_changed_file_invalidates_the_cache(tmp_path):
    root = class_folder(tmp_path / "pets", per_class=4)
    before = load_dataset(str(root), test_fraction=0)
    path = save(root / "dog" / "2.png", np.zeros((8, 8), np.uint8))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = load_dataset(str(root), test_fraction=0)
    assert after.identity()["sha256"] != before.identity()["sha256"]
    assert after.identity()["content_sha256"] != before.identity()["content_sha256"]
    assert any(not x.any() for x in after.train_images)
    assert len(converted_entries()) == 2


def test_other_settings_are_another_entry(tmp_path):
    root = class_folder(tmp_path / "pets", per_class=2)
    assert load_dataset(str(root), image_size=(4, 4)).image_shape == (1, 4, 4)
    assert load_dataset(str(root)).image_shape == (1, 8, 8)


def test_data_info_reports_without_converting(tmp_path):
    root = class_folder(tmp_path / "pets", per_class=3)
    (root / "notes.txt").write_text("x")
    info = dataset_info(str(root))
    assert info["images"] == 6 and info["classes"] == "2: cat (3), dog (3)" and info["channels"] == 1
    assert info["non-image files skipped"] == 1 and "not built" in info["cache"] and converted_entries() == []
    load_dataset(str(root))
    info = dataset_info(str(root))
    assert info["train images"] + info["test images"] == 6 and "ready" in info["cache"]


# --- provenance ----------------------------------------------------------------------------------------------

def test_provenance_records_path_hash_counts_and_settings(tmp_path):
    root = class_folder(tmp_path / "pets", per_class=5)
    identity = load_dataset(str(root), image_size=(4, 6), channels=3).identity()
    assert identity["path"] == str(root.resolve()) and len(identity["content_sha256"]) == 64
    assert identity["n_train"] + identity["n_test"] == 10 and identity["image_shape"] == [3, 4, 6]
    assert identity["conversion"]["image_size"] == (4, 6) and identity["conversion"]["channels"] == 3
    assert "Lanczos" in identity["conversion"]["resize"]


def test_uncompressed_hand_made_idx_files_are_not_verified(tmp_path, mnist_sample):
    folder = write_idx_dataset(tmp_path / "plain", mnist_sample.train_images[:8, 0], mnist_sample.train_labels[:8],
                               mnist_sample.test_images[:4, 0], mnist_sample.test_labels[:4])
    for gz in folder.glob("*.gz"):  # the same IDX bytes, not gzip'd: no published MD5 applies
        gz.with_suffix("").write_bytes(__import__("gzip").decompress(gz.read_bytes()))
        gz.unlink()
    origin = load_dataset("mnist", folder).origin
    assert "unofficial" in origin and "verified" not in origin


def test_data_dir_without_a_dataset_is_an_error_not_a_fallback(tmp_path):
    save(tmp_path / "pngs" / "a.png", noise((8, 8)))
    class_folder(tmp_path / "classes", per_class=1)
    for name in ("auto", "mnist"):
        for folder in ("pngs", "classes"):
            with pytest.raises(VaelabError, match=rf"holds no mnist dataset.*use --dataset .*{folder}"):
                load_dataset(name, tmp_path / folder)
    with pytest.raises(VaelabError, match="--data-dir is for mnist and fashion-mnist"):
        load_dataset(str(tmp_path / "pngs"), tmp_path)


def test_image_size_parsing():
    assert parse_image_size("32") == (32, 32) and parse_image_size("48x64") == (48, 64)
    for bad in ("0", "x", "32x", "a", "1x2x3"):
        with pytest.raises(VaelabError, match="image size must be N or HxW"):
            parse_image_size(bad)


# --- real data -----------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_fashion_mnist_exported_to_png_folders_trains_and_compares(shared_data, tmp_path):
    """2,000 real Fashion-MNIST images as PNG files in class subfolders, end to end: train, then compare."""
    import json

    import vaelab
    from vaelab.data.sources import FASHION_CLASSES
    from vaelab.metrics import Recipe

    fashion = load_dataset("fashion-mnist", shared_data / "fashion-mnist")
    root = tmp_path / "fashion-png"
    for c, name in enumerate(FASHION_CLASSES):
        for i, row in enumerate((fashion.train_labels == c).nonzero()[:200, 0].tolist()):
            save(root / name.replace("/", "-") / f"{i:03d}.png", fashion.train_images[row, 0].numpy())
    data = load_dataset(str(root))
    assert (len(data.train_images), len(data.test_images)) == (1800, 200) and data.image_shape == (1, 28, 28)
    assert data.test_labels.bincount().tolist() == [20] * 10
    config = vaelab.RunConfig().replace(data={"dataset": str(root)}, train={"steps": 20, "device": "cpu"})
    run = vaelab.train(config, tmp_path / "run", show_progress=False)
    assert json.loads((run / "config.json").read_text())["dataset_identity"]["n_train"] == 1800
    report = vaelab.compare(out=tmp_path / "compare", dataset=str(root), time_budget=4.0, iw_samples=10,
                            device="cpu", classifier=Recipe(min_images=5_400), show_progress=False)
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["dataset"]["path"] == str(root.resolve()) and (report / "report.html").is_file()
