"""Your own data through the CLI: train and evaluate on a folder, `vaelab data info`, one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import assert_one_line_error, run_cli


@pytest.fixture
def pngs(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "pngs" / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / "pngs" / c / f"{i}.png")
    return tmp_path / "pngs"


def test_train_and_evaluate_on_a_folder(pngs, tmp_path, capsys):
    code, out, err = run_cli(capsys, "-q", "train", "--dataset", pngs, "--image-size", "8", "--steps", "2",
                             "--out", tmp_path / "run")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["image_size"] == [8, 8] and config["model"]["image_shape"] == [3, 8, 8]
    identity = config["dataset_identity"]
    assert identity["path"] == str(pngs.resolve()) and identity["n_train"] + identity["n_test"] == 24
    code, out, err = run_cli(capsys, "-q", "evaluate", tmp_path / "run", "--json")
    assert code == 0, err
    assert json.loads(out)["dataset_sha256"] == identity["sha256"]


def test_data_info_prints_what_vaelab_sees(pngs, capsys):
    code, out, err = run_cli(capsys, "-q", "data", "info", pngs)
    assert code == 0, err
    assert "images:                  24" in out and "classes:                 2: a (12), b (12)" in out
    assert "sizes found:             10x12 (24)" in out and "not built" in out


def test_shapes_trains_in_rgb(tmp_path, capsys):
    code, _, err = run_cli(capsys, "-q", "train", "--dataset", "shapes", "--image-size", "16", "--steps", "2",
                           "--out", tmp_path / "shapes")
    assert code == 0, err
    assert json.loads((tmp_path / "shapes" / "config.json").read_text())["model"]["image_shape"] == [3, 16, 16]


@pytest.mark.parametrize("args,match", [
    (["train", "--data-dir", "{pngs}"], "holds no mnist dataset"),
    (["train", "--dataset", "{pngs}", "--data-dir", "{pngs}"], "--data-dir is for mnist and fashion-mnist"),
    (["train", "--dataset", "shapes", "--data-dir", "{pngs}"], "shapes is generated"),
    (["train", "--dataset", "{pngs}", "--image-size", "0"], "image size must be N or HxW"),
    (["train", "--dataset", "{pngs}", "--channels", "2"], "invalid choice"),
    (["train", "--dataset", "{pngs}", "--test-fraction", "1"], "test-fraction must be at least 0 and below 1"),
    (["train", "--dataset", "{pngs}/a/0.png"], "neither a folder of images nor a .npz or .npy file"),
    (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["data", "info", "{pngs}/missing.npz"], "missing.npz: no such file"),
    (["data", "info", "{pngs}/missing"], "missing: no such folder or file"),
])
def test_data_errors_are_one_line(pngs, tmp_path, capsys, args, match):
    args = [a.format(pngs=pngs) for a in args]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "out")]
    assert_one_line_error(capsys, *args, match=match)
    assert not (tmp_path / "out").exists()
