"""IDX reader (the MNIST file format) that checks everything it reads.

An IDX file is a big-endian header (magic, item count, dimensions) followed by
unsigned bytes. We validate magic, dimensions and that the payload has exactly
the announced size, so a truncated or foreign file fails with a message that
names the file instead of producing garbage tensors.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from vaelab.errors import VaelabError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def read_idx_bytes(path: Path) -> bytes:
    """The raw (decompressed when the name ends in .gz) bytes of an IDX file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise VaelabError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise VaelabError(f"{path}: cannot read gzip data ({exc}); the file is truncated or corrupt") from None


def parse_idx(data: bytes, path: Path, magic: int) -> np.ndarray:
    """Parse IDX bytes into an uint8 array, checking magic, dimensions and size."""
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header_size = 4 + 4 * ndim
    found = int.from_bytes(data[0:4], "big") if len(data) >= 4 else None
    if found is not None and found != magic:
        kind = "image" if magic == IMAGES_MAGIC else "label"
        raise VaelabError(f"{path}: wrong magic number {found} (an IDX {kind} file has {magic})")
    if len(data) < header_size:
        raise VaelabError(f"{path}: only {len(data)} bytes, shorter than an IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise VaelabError(
            f"{path}: header announces {dims[0]} items of shape {dims[1:]} ({expected} bytes) "
            f"but the file has {len(data)} bytes; it is truncated or corrupt"
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


def read_images(path: Path) -> np.ndarray:
    """uint8 array [N, H, W] from an IDX image file."""
    return parse_idx(read_idx_bytes(path), path, IMAGES_MAGIC)


def read_labels(path: Path) -> np.ndarray:
    """uint8 array [N] from an IDX label file."""
    return parse_idx(read_idx_bytes(path), path, LABELS_MAGIC)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uint8 array as IDX (gzip when the name ends in .gz): the inverse of the readers."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (files may be larger than memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
