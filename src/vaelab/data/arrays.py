"""NumPy files: `.npz` with Keras' mnist.npz keys (x_train, y_train, x_test, y_test) or `images` and an
optional `labels`, and `.npy` (images only, unlabelled).

Images are uint8 in [0, 255] or floating point in [0, 1], shaped [N, H, W] (grey), [N, H, W, C]
or [N, C, H, W] with C = 1 or 3. Files are read with allow_pickle=False: an object array is an
error, never code run.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.data.convert import Conversion, adapt, stratified_split
from vaelab.data.idx import file_digest
from vaelab.errors import VaelabError

KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
CHUNK = 1024  # images converted at a time: bounded memory for any file size
SUFFIXES = (".npz", ".npy")


def channels_first(images: np.ndarray, where: str) -> np.ndarray:
    """A [N, C, H, W] view of [N, H, W], [N, H, W, C] or [N, C, H, W] images (C = 1 or 3)."""
    shape = images.shape
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        last, second = shape[3] in (1, 3), shape[1] in (1, 3)
        if last and not second:
            return images.transpose(0, 3, 1, 2)
        if second and not last:
            return images
        if last and second:
            raise VaelabError(f"{where}: images of shape {shape} could be [N, C, H, W] or [N, H, W, C]; "
                              f"store them as [N, H, W, C] with a side larger than 3")
    raise VaelabError(f"{where}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W] with C = 1 or 3, "
                      f"got shape {shape}")


def check_pixels(images: np.ndarray, where: str) -> None:
    """uint8, or float within [0, 1] (checked in chunks: the array may be memory-mapped)."""
    if images.dtype == np.uint8:
        return
    if not np.issubdtype(images.dtype, np.floating):
        raise VaelabError(f"{where}: images of dtype {images.dtype}; vaelab reads uint8 in [0, 255] or "
                          f"float in [0, 1]")
    for start in range(0, len(images), CHUNK):
        chunk = images[start:start + CHUNK]
        if not np.isfinite(chunk).all():
            raise VaelabError(f"{where}: float images hold NaN or infinite values")
        low, high = chunk.min(), chunk.max()
        if low < 0 or high > 1:
            raise VaelabError(f"{where}: float images must lie in [0, 1], found values from {low:g} to {high:g} "
                              f"(uint8 images are read as [0, 255])")


def check_labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    if labels.ndim != 1 or len(labels) != n:
        raise VaelabError(f"{where}: labels must be one integer per image ({n}), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise VaelabError(f"{where}: labels of dtype {labels.dtype}; they must be integers 0, 1, 2, ...")
    if n and labels.min() < 0:
        raise VaelabError(f"{where}: labels must be 0 or more, found {labels.min()}")
    return labels.astype(np.int64)


def to_uint8(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    return np.rint(images.astype(np.float32) * 255).astype(np.uint8)


def read(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """{'train': ..., 'test': ...} or {'all': ...} of (images [N, C, H, W], labels or None)."""
    try:
        if path.suffix == ".npy":
            found = {"all": (np.load(path, mmap_mode="r", allow_pickle=False), None)}
            return {split: check(path, split, images, labels) for split, (images, labels) in found.items()}
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if {"x_train", "x_test"} <= keys:
                if ("y_train" in keys) != ("y_test" in keys):
                    raise VaelabError(f"{path}: has only one of y_train and y_test; give both or neither")
                found = {split: (archive[f"x_{split}"], archive[f"y_{split}"] if f"y_{split}" in keys else None)
                         for split in ("train", "test")}
            elif "images" in keys:
                found = {"all": (archive["images"], archive["labels"] if "labels" in keys else None)}
            else:
                raise VaelabError(f"{path}: no arrays named x_train/x_test (as Keras' mnist.npz) or images; "
                                  f"found {', '.join(sorted(keys)) or 'none'}")
            return {split: check(path, split, images, labels) for split, (images, labels) in found.items()}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise VaelabError(f"{path}: not a readable NumPy {path.suffix} file ({exc})") from None


def check(path: Path, split: str, images: np.ndarray, labels: np.ndarray | None):
    where = f"{path} ({'images' if split == 'all' else 'x_' + split})"
    images = channels_first(images, where)
    check_pixels(images, where)
    return images, None if labels is None else check_labels(labels, len(images), where)


@dataclass(frozen=True)
class ArraySource:
    path: Path
    conversion: Conversion

    kind = "NumPy file"

    def listing(self):
        if not self.path.is_file():
            raise VaelabError(f"{self.path}: no such file")
        return None

    def fingerprint(self, listing) -> dict:
        stat = self.path.stat()
        return {"kind": self.kind, "path": str(self.path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "conversion": self.conversion.recorded()}

    def convert(self, writer, listing, progress) -> dict:
        parts = read(self.path)
        labelled = {labels is not None for _, labels in parts.values()}
        if len(labelled) > 1:
            raise VaelabError(f"{self.path}: labels are given for some images but not for others")
        labelled, given = labelled == {True}, "all" not in parts
        if not given:
            images, labels = parts["all"]
            train, test = stratified_split(labels, len(images), self.conversion.test_fraction)
            parts = {"train": (images, labels, train), "test": (images, labels, test)}
        else:
            parts = {split: (images, labels, np.arange(len(images))) for split, (images, labels) in parts.items()}
        shapes = {images.shape[2:] for images, _, _ in parts.values()}
        if len(shapes) > 1 and self.conversion.image_size is None:
            raise VaelabError(f"{self.path}: train and test images differ in size "
                              f"({' and '.join('x'.join(map(str, s)) for s in shapes)}); choose one with --image-size")
        size = self.conversion.image_size or next(iter(shapes))
        channels = self.conversion.channels or max(images.shape[1] for images, _, _ in parts.values())
        n_classes = max((int(labels.max()) + 1 for _, labels, _ in parts.values() if labels is not None and
                         len(labels)), default=0)
        work = [(split, start) for split, (_, _, rows) in parts.items() for start in range(0, len(rows), CHUNK)]
        outputs = {split: writer.images(split, (len(rows), channels, *size)) for split, (_, _, rows) in parts.items()}
        for split, start in progress(work, "converting", unit="chunk"):
            images, _, rows = parts[split]
            outputs[split][start:start + CHUNK] = adapt(to_uint8(images[rows[start:start + CHUNK]]), size, channels)
        for split, (_, labels, rows) in parts.items():
            outputs[split].flush()
            writer.labels(split, labels[rows] if labelled else np.full(len(rows), -1))
        return {"classes": [str(c) for c in range(n_classes)] if labelled else [],
                "content_sha256": file_digest(self.path, "sha256"), "skipped_files": 0,
                "source_sizes": ", ".join("x".join(map(str, s)) for s in shapes),
                "split": "x_train / x_test" if given else
                f"stratified, test fraction {self.conversion.test_fraction}"}

