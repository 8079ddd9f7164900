"""The conversion cache: each file source converted once into memory-mapped uint8 arrays.

An entry is a folder named by the SHA-256 of the source's fingerprint (path, every file's
name, size and modification time, and the conversion settings), so a changed, added or
removed file, or other settings, make a new entry; an unchanged source is opened without
decoding anything. The entry holds `.npy` files (uint8 images [N, C, H, W], int64 labels;
never pickles) that are opened as memory maps: a batch reads only its own rows from disk,
so a dataset larger than memory trains. It is built in a hidden folder and renamed into
place when complete, so an interrupted conversion leaves no entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.errors import VaelabError

FORMAT = "vaelab-converted-1"
META = "meta.json"
SPLITS = ("train", "test")


def fingerprint_key(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One converted source in the cache."""

    folder: Path

    @property
    def ready(self) -> bool:
        return (self.folder / META).is_file()

    def meta(self) -> dict:
        return json.loads((self.folder / META).read_text(encoding="utf-8"))

    def arrays(self) -> dict[str, np.ndarray]:
        """train/test images and labels as copy-on-write memory maps (nothing is read until used)."""
        try:
            return {f"{split}_{part}": np.load(self.folder / f"{split}_{part}.npy", mmap_mode="c", allow_pickle=False)
                    for split in SPLITS for part in ("images", "labels")}
        except (OSError, ValueError) as exc:
            raise VaelabError(f"the cache entry {self.folder} is damaged ({exc}); delete it and run again") from None


class Writer:
    """The arrays of an entry being built: `images(split, shape)` gives a writable memory map to fill."""

    def __init__(self, folder: Path):
        self.folder = folder

    def images(self, split: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.lib.format.open_memmap(self.folder / f"{split}_images.npy", mode="w+", dtype=np.uint8,
                                         shape=shape)

    def labels(self, split: str, labels: np.ndarray) -> None:
        np.save(self.folder / f"{split}_labels.npy", labels.astype(np.int64), allow_pickle=False)


def entry_for(root: Path, fingerprint: dict) -> Entry:
    return Entry(root / fingerprint_key(fingerprint))


def build(entry: Entry, convert) -> Entry:
    """Fill a fresh entry with `convert(writer) -> meta` and rename it into place; nothing is left on failure."""
    entry.folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(entry.folder)
    staging = entry.folder.with_name(f".{entry.folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        meta = convert(Writer(staging))
        (staging / META).write_text(json.dumps({"format": FORMAT, **meta}, indent=1), encoding="utf-8")
        try:
            os.rename(staging, entry.folder)
        except OSError:
            if not entry.ready:  # not another process finishing the same conversion first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def remove_stale(folder: Path) -> None:
    """Staging folders of conversions whose process is gone (killed mid-way)."""
    for staging in folder.parent.glob(f".{folder.name}.tmp-*"):
        pid = staging.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
