import gzip

import numpy as np
import pytest

from vaelab.data.idx import read_images, read_labels, write_idx
from vaelab.errors import VaelabError


def test_round_trip_gz_and_raw(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    for suffix in (".gz", ""):
        write_idx(tmp_path / f"x{suffix}", images)
        write_idx(tmp_path / f"y{suffix}", labels)
        np.testing.assert_array_equal(read_images(tmp_path / f"x{suffix}"), images)
        np.testing.assert_array_equal(read_labels(tmp_path / f"y{suffix}"), labels)


def test_header_is_big_endian_idx(tmp_path):
    write_idx(tmp_path / "x", np.zeros((3, 2, 4), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    assert raw[:16] == bytes.fromhex("00000803" "00000003" "00000002" "00000004")
    assert len(raw) == 16 + 3 * 2 * 4


def test_truncated_file_names_file_and_sizes(tmp_path):
    write_idx(tmp_path / "x", np.zeros((10, 28, 28), np.uint8))
    data = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(data[:-100])
    with pytest.raises(VaelabError, match=r"x: header announces 10 items .* truncated"):
        read_images(tmp_path / "x")


def test_wrong_count_in_header(tmp_path):
    write_idx(tmp_path / "y", np.zeros(5, np.uint8))
    data = bytearray((tmp_path / "y").read_bytes())
    data[4:8] = (6).to_bytes(4, "big")
    (tmp_path / "y").write_bytes(bytes(data))
    with pytest.raises(VaelabError, match="announces 6 items"):
        read_labels(tmp_path / "y")


def test_wrong_magic(tmp_path):
    write_idx(tmp_path / "y.gz", np.zeros(5, np.uint8))
    with pytest.raises(VaelabError, match="wrong magic number 2049 .* 2051"):
        read_images(tmp_path / "y.gz")


def test_truncated_gzip_stream(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((10, 28, 28), np.uint8))
    data = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(VaelabError, match="x.gz: cannot read gzip data"):
        read_images(tmp_path / "x.gz")


def test_not_gzip_at_all(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"hello, not gzip")
    with pytest.raises(VaelabError, match="truncated or corrupt"):
        read_images(tmp_path / "x.gz")


def test_shorter_than_header(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"\x00\x00"))
    with pytest.raises(VaelabError, match="shorter than an IDX header"):
        read_images(tmp_path / "x.gz")


def test_missing_file(tmp_path):
    with pytest.raises(VaelabError, match="file not found"):
        read_images(tmp_path / "nope.gz")
