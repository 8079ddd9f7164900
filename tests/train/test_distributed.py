"""torchrun + DDP on 2 CPU processes (gloo) against single-process training at the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

LR = 5e-4
# Gradient averaging across ranks rounds differently from one big batch. Adam divides each gradient by its
# running RMS, so a near-zero gradient whose sign flips in the last bit moves a weight by up to ~lr the
# other way: after a few steps a weight may differ by O(lr) while almost all agree to float precision.
MAX_WEIGHT_DIFF = 2 * LR
TYPICAL_WEIGHT_DIFF = 1e-5  # 99% of weights
LOSS_RTOL = 1e-5


def vaelab(tmp_path, *args, processes=1):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                 "--standalone", "-m", "vaelab"] if processes > 1 else [sys.executable, "-m", "vaelab"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*launcher, "-q", "train", *map(str, args)], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def train_ae(tmp_path, data_dir, out, *extra, processes=1):
    vaelab(tmp_path, "--model", "ae", "--arch", "conv", "--dataset", "mnist", "--data-dir", data_dir,
           "--batch-size", "32", "--lr", LR, "--out", out, *extra, processes=processes)
    return out


def weight_diffs(a, b):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return torch.cat([(wa[k] - wb[k]).abs().flatten() for k in wa if not k.startswith("code_")])


def train_losses(run):
    return [json.loads(line)["train"]["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tiny_data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    return {
        "ddp": train_ae(tmp, tiny_data_dir, tmp / "ddp", "--epochs", "2", processes=2),
        "single": train_ae(tmp, tiny_data_dir, tmp / "single", "--epochs", "2"),
        "tmp": tmp,
    }


def test_two_processes_match_one_at_the_same_global_batch(runs):
    diffs = weight_diffs(runs["ddp"], runs["single"])
    assert diffs.max() <= MAX_WEIGHT_DIFF
    assert torch.quantile(diffs, 0.99) <= TYPICAL_WEIGHT_DIFF
    assert train_losses(runs["ddp"]) == pytest.approx(train_losses(runs["single"]), rel=LOSS_RTOL)
    config = json.loads((runs["ddp"] / "config.json").read_text())
    assert config["world_size"] == 2


def test_tolerance_separates_a_different_global_batch(runs, tiny_data_dir):
    """The same check fails for a run that differs for real (half the global batch)."""
    other = train_ae(runs["tmp"], tiny_data_dir, runs["tmp"] / "half", "--epochs", "2", "--batch-size", "16")
    assert weight_diffs(runs["ddp"], other).max() > 10 * MAX_WEIGHT_DIFF


def test_distributed_resume_is_bitwise_identical(runs, tiny_data_dir):
    tmp = runs["tmp"]
    stopped = train_ae(tmp, tiny_data_dir, tmp / "stopped", "--epochs", "1", processes=2)
    vaelab(tmp, "--resume", stopped, "--epochs", "2", processes=2)
    assert weight_diffs(stopped, runs["ddp"]).max() == 0
    assert train_losses(stopped) == train_losses(runs["ddp"])


def test_colour_images_from_the_memory_mapped_cache_train_the_same_with_two_processes(tmp_path):
    """Your own data under torchrun: an RGB .npz (converted once into the memory-mapped cache) trains with two
    processes as with one; the first run builds the cache, the others read batches from it."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = tmp_path / "colour.npz"
    np.savez(arrays, x_train=rng.integers(0, 256, (128, 16, 16, 3), dtype=np.uint8), y_train=np.arange(128) % 4,
             x_test=rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), y_test=np.arange(32) % 4)

    def train(out, processes):
        vaelab(tmp_path, "--model", "ae", "--arch", "conv", "--dataset", arrays, "--batch-size", "32", "--lr", LR,
               "--epochs", "1", "--out", out, processes=processes)
        return out

    single, ddp = train(tmp_path / "single", 1), train(tmp_path / "ddp", 2)
    config = json.loads((ddp / "config.json").read_text())
    assert config["world_size"] == 2 and config["model"]["image_shape"] == [3, 16, 16]
    diffs = weight_diffs(ddp, single)
    assert diffs.max() <= MAX_WEIGHT_DIFF and torch.quantile(diffs, 0.99) <= TYPICAL_WEIGHT_DIFF
