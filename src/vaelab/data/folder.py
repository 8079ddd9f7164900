"""A folder of your own images (PNG, JPEG, BMP, GIF, WebP, TIFF), decoded with Pillow.

The layout is torchvision's ImageFolder convention:

    DIR/cat/1.png  DIR/dog/2.jpg       class subfolders: the labels are the sorted folder names;
                                       images deeper down belong to their class (DIR/cat/indoor/3.png)
    DIR/1.png  DIR/2.png               a flat folder: unlabelled
    DIR/train/...  DIR/test/...        the split as given (each half flat or with class subfolders);
                                       otherwise a stratified split by --test-fraction (convert.py)

Files are images by their extension; other files are skipped and counted, and a file
named like an image that Pillow cannot read is an error naming it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vaelab.data.convert import Conversion, fit, stratified_split
from vaelab.errors import VaelabError

log = logging.getLogger("vaelab")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GREY_MODES = ("1", "L", "LA", "I", "F")  # and 16-bit "I;16*"; palette images count as colour
PILLOW_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Listing:
    """What a folder holds: its image files (in a fixed order), their labels and given split."""

    root: Path
    files: tuple[Path, ...]
    labels: np.ndarray  # int64 per file; -1 when unlabelled
    splits: np.ndarray | None  # per file True = test, when train/ and test/ give the split
    classes: tuple[str, ...]
    skipped: int  # files that are not images by their extension


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def walk(folder: Path) -> tuple[list[Path], int]:
    """Every image file under `folder` (sorted, hidden folders left out) and the number of other files."""
    images, skipped = [], 0
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if is_image(name):
                images.append(Path(parent) / name)
            else:
                skipped += 1
    return images, skipped


def read_half(folder: Path) -> tuple[dict[str, list[Path]] | list[Path], int]:
    """A folder's class subfolders ({class: files}) or, when it has none, its own images (flat)."""
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    top = [Path(e.path) for e in entries if e.is_file() and is_image(e.name)]
    skipped = sum(e.is_file() and not is_image(e.name) for e in entries)
    classes = {}
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            images, other = walk(Path(entry.path))
            skipped += other
            if images:
                classes[entry.name] = images
    if top and classes:
        raise VaelabError(f"{folder} has images at its top level ({top[0].name}, ...) and class subfolders "
                          f"({', '.join(list(classes)[:3])}); move the loose images into a class folder, or "
                          f"the classes out, so the labels are unambiguous")
    return (classes if classes else top), skipped


def list_folder(root: Path) -> Listing:
    if not os.access(root, os.R_OK | os.X_OK):
        raise VaelabError(f"{root}: cannot read this folder")
    halves = {"train": root / "train", "test": root / "test"}
    given = all(p.is_dir() for p in halves.values())
    parts = {name: read_half(path) for name, path in halves.items()} if given else {None: read_half(root)}
    skipped = sum(s for _, s in parts.values())
    if given:
        loose, _ = walk(root)
        outside = [p for p in loose if not any(h in p.parents for h in halves.values())]
        if outside:
            raise VaelabError(f"{root} has train/ and test/ subfolders, and also {outside[0].relative_to(root)}; "
                              f"images belong inside train/ or test/")
    kinds = {isinstance(found, dict) for found, _ in parts.values() if found}
    if len(kinds) > 1:
        raise VaelabError(f"{root}: one of train/ and test/ has class subfolders and the other does not")
    labelled = kinds == {True}
    classes = tuple(sorted({c for found, _ in parts.values() if found for c in found})) if labelled else ()
    files, labels, test = [], [], []
    for name, (found, _) in parts.items():
        groups = found.items() if labelled else [(None, found)]
        for cls, paths in groups:
            files += paths
            labels += [classes.index(cls) if labelled else -1] * len(paths)
            test += [name == "test"] * len(paths)
    if not files:
        raise VaelabError(f"{root} holds no images ({skipped} other file{'s' if skipped != 1 else ''} skipped); "
                          f"vaelab reads {', '.join(s[1:] for s in IMAGE_SUFFIXES)} files, directly in the folder "
                          f"(unlabelled) or in class subfolders")
    return Listing(root, tuple(files), np.array(labels, dtype=np.int64), np.array(test) if given else None,
                   classes, skipped)


def not_an_image(path: Path, exc: Exception) -> VaelabError:
    return VaelabError(f"{path}: not a readable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")


def headers(listing: Listing, progress) -> tuple[Counter, bool]:
    """(Counter of (height, width), whether any image is in colour), from the files' headers only."""
    sizes, colour = Counter(), False
    for path in progress(listing.files, "reading headers"):
        try:
            with Image.open(path) as image:
                width, height = image.size
                mode = image.mode
        except PILLOW_ERRORS as exc:
            raise not_an_image(path, exc) from None
        sizes[(height, width)] += 1
        colour = colour or not (mode in GREY_MODES or mode.startswith("I;"))
    return sizes, colour


def sizes_text(sizes: Counter, limit: int = 6) -> str:
    shown = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common(limit))
    return shown + (f" and {len(sizes) - limit} more" if len(sizes) > limit else "")


@dataclass(frozen=True)
class FolderSource:
    path: Path
    conversion: Conversion

    kind = "image folder"

    def listing(self) -> Listing:
        return list_folder(self.path)

    def fingerprint(self, listing: Listing) -> dict:
        files = []
        for path in listing.files:
            stat = path.stat()
            files.append([str(path.relative_to(self.path)), stat.st_size, stat.st_mtime_ns])
        return {"kind": self.kind, "path": str(self.path), "files": files, "conversion": self.conversion.recorded()}

    def target(self, listing: Listing, progress) -> tuple[tuple[int, int], int, Counter]:
        sizes, colour = headers(listing, progress)
        size = self.conversion.image_size
        if size is None:
            if len(sizes) > 1:
                raise VaelabError(f"{self.path}: the images have {len(sizes)} different sizes: {sizes_text(sizes)}; "
                                  f"choose one with --image-size N or HxW (each image is centre-cropped to that "
                                  f"aspect and resized)")
            size = next(iter(sizes))
        return size, self.conversion.channels or (3 if colour else 1), sizes

    def convert(self, writer, listing: Listing, progress) -> dict:
        size, channels, sizes = self.target(listing, progress)
        if listing.splits is not None:
            train, test = np.flatnonzero(~listing.splits), np.flatnonzero(listing.splits)
        else:
            train, test = stratified_split(listing.labels if listing.classes else None, len(listing.files),
                                           self.conversion.test_fraction)
        content = hashlib.sha256()
        outputs = {"train": writer.images("train", (len(train), channels, *size)),
                   "test": writer.images("test", (len(test), channels, *size))}
        order = [(split, row, index) for split, indices in (("train", train), ("test", test))
                 for row, index in enumerate(indices)]
        for split, row, index in progress(order, "converting"):
            path = listing.files[index]
            data = path.read_bytes()
            content.update(str(path.relative_to(self.path)).encode() + b"\0" + data)
            try:
                with Image.open(io.BytesIO(data)) as image:
                    outputs[split][row] = fit(image, size, channels)
            except PILLOW_ERRORS as exc:
                raise not_an_image(path, exc) from None
        for split, indices in (("train", train), ("test", test)):
            outputs[split].flush()
            writer.labels(split, listing.labels[indices])
        return {"classes": list(listing.classes), "content_sha256": content.hexdigest(),
                "source_sizes": sizes_text(sizes), "skipped_files": listing.skipped,
                "split": "train/ and test/ folders" if listing.splits is not None else
                f"stratified, test fraction {self.conversion.test_fraction}"}
