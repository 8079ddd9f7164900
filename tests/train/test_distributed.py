"""torchrun + DDP on 2 CPU processes (gloo) against single-process training at the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

LR = 5e-4


@dataclass(frozen=True)
class Tolerance:
    """How far 2 processes may end from 1 at the same global batch. Gradient averaging across ranks rounds
    differently from one big batch, and Adam divides each gradient by its running RMS, so a near-zero gradient
    whose sign flips in the last bit moves a weight by up to ~lr the other way: after a few steps a weight may
    differ by O(lr) while almost all agree far more closely. bf16 autocast rounds every matmul and convolution
    to 8 bits of mantissa, and the kernels a batch of 16 gets differ from a batch of 32's, so it drifts more.

    Measured 2026-12-04 on a 2-core AVX-512 + bf16 EPYC, native kernels and AVX2 kernels forced
    (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2), seeds 0-2, both tests' runs
    (12 pairs per precision): fp32 max 3.6e-4, 99th percentile <= 2.1e-5 (AVX2 kernels, seed 2; native <= 2.9e-7),
    train loss rel. <= 2.3e-7; bf16 max <= 3.1e-3, 99th percentile <= 3.3e-4, train loss rel. <= 9.3e-5. A real
    difference (half the global batch, seed 0) is max 1.6e-2 / 99th percentile 8.8e-3 (MNIST, 2 epochs) and
    4.5e-3 / 2.2e-3 (colour, 1 epoch) in either precision."""

    max_weight: float
    typical_weight: float  # the 99th percentile of the weights' differences
    loss_rel: float


TOLERANCE = {"fp32": Tolerance(2 * LR, 1e-4, 1e-5), "bf16": Tolerance(10 * LR, 7e-4, 3e-4)}


def vaelab(tmp_path, *args, processes=1, expect=0, fault=None):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                 "--standalone", "-m", "vaelab"] if processes > 1 else [sys.executable, "-m", "vaelab"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"VAELAB_FAULT": fault} if fault else {})}
    result = subprocess.run([*launcher, "-q", "train", *map(str, args)], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == expect, result.stderr[-3000:]
    return result


def train_ae(tmp_path, data_dir, out, *extra, processes=1, precision="fp32"):
    vaelab(tmp_path, "--model", "ae", "--arch", "conv", "--dataset", "mnist", "--data-dir", data_dir,
           "--batch-size", "32", "--lr", LR, "--precision", precision, "--out", out, *extra, processes=processes)
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


@pytest.mark.determinism
def assert_within(tolerance: Tolerance, ddp, single):
    diffs = weight_diffs(ddp, single)
    assert diffs.max() <= tolerance.max_weight
    assert torch.quantile(diffs, 0.99) <= tolerance.typical_weight
    assert train_losses(ddp) == pytest.approx(train_losses(single), rel=tolerance.loss_rel)


def test_two_processes_match_one_at_the_same_global_batch(runs):
    assert_within(TOLERANCE["fp32"], runs["ddp"], runs["single"])
    config = json.loads((runs["ddp"] / "config.json").read_text())
    assert config["world_size"] == 2


@pytest.mark.determinism
def test_two_processes_match_one_in_bf16_within_its_own_tolerance(tiny_data_dir, tmp_path):
    ddp = train_ae(tmp_path, tiny_data_dir, tmp_path / "ddp", "--epochs", "2", processes=2, precision="bf16")
    single = train_ae(tmp_path, tiny_data_dir, tmp_path / "single", "--epochs", "2", precision="bf16")
    assert_within(TOLERANCE["bf16"], ddp, single)


def test_tolerance_separates_a_different_global_batch(runs, tiny_data_dir):
    """The same check fails for a run that differs for real (half the global batch)."""
    other = train_ae(runs["tmp"], tiny_data_dir, runs["tmp"] / "half", "--epochs", "2", "--batch-size", "16")
    assert weight_diffs(runs["ddp"], other).max() > 10 * TOLERANCE["fp32"].max_weight


@pytest.mark.determinism
def test_distributed_resume_is_bitwise_identical(runs, tiny_data_dir):
    tmp = runs["tmp"]
    stopped = train_ae(tmp, tiny_data_dir, tmp / "stopped", "--epochs", "1", processes=2)
    vaelab(tmp, "--resume", stopped, "--epochs", "2", processes=2)
    assert weight_diffs(stopped, runs["ddp"]).max() == 0
    assert train_losses(stopped) == train_losses(runs["ddp"])


@pytest.mark.determinism
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_colour_images_from_the_memory_mapped_cache_train_the_same_with_two_processes(precision, tmp_path):
    """Your own data under torchrun: an RGB .npz (converted once into the memory-mapped cache) trains with two
    processes as with one; the first run builds the cache, the others read batches from it."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = tmp_path / "colour.npz"
    np.savez(arrays, x_train=rng.integers(0, 256, (128, 16, 16, 3), dtype=np.uint8), y_train=np.arange(128) % 4,
             x_test=rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), y_test=np.arange(32) % 4)

    def train(out, processes):
        vaelab(tmp_path, "--model", "ae", "--arch", "conv", "--dataset", arrays, "--batch-size", "32", "--lr", LR,
               "--epochs", "1", "--precision", precision, "--out", out, processes=processes)
        return out

    single, ddp = train(tmp_path / "single", 1), train(tmp_path / "ddp", 2)
    config = json.loads((ddp / "config.json").read_text())
    assert config["world_size"] == 2 and config["model"]["image_shape"] == [3, 16, 16]
    assert_within(TOLERANCE[precision], ddp, single)


# --- `--procs N`: vaelab starts the group itself ---------------------------------------------------------------

@pytest.mark.determinism
def test_procs_2_interrupted_mid_epoch_resumes_bitwise(runs, tiny_data_dir):
    """`--procs 2` is torchrun with 2 processes: Ctrl-C reaches rank 0 just after epoch 1 is committed, every rank
    stops at the next step with a checkpoint, the command exits 130 with the resume hint, and `--resume` (two
    processes again, from config.json) ends bitwise where torchrun's uninterrupted run did."""
    tmp = runs["tmp"]
    result = vaelab(tmp, "--model", "ae", "--arch", "conv", "--dataset", "mnist", "--data-dir", tiny_data_dir,
                    "--batch-size", "32", "--lr", LR, "--precision", "fp32", "--epochs", "2", "--procs", "2",
                    "--out", tmp / "stopped2",
                    expect=130, fault="commit:after@1!INT")
    assert "interrupted in epoch 2 after step 1" in result.stderr and "--resume" in result.stderr
    assert len(train_losses(tmp / "stopped2")) == 1
    config = json.loads((tmp / "stopped2" / "config.json").read_text())
    assert config["world_size"] == 2 and config["train"]["procs"] == 2
    vaelab(tmp, "--resume", tmp / "stopped2")
    assert weight_diffs(tmp / "stopped2", runs["ddp"]).max() == 0
    assert train_losses(tmp / "stopped2") == train_losses(runs["ddp"])


def test_procs_2_with_a_rank_killed_mid_write_keeps_the_last_epoch_and_resumes_bitwise(runs, tiny_data_dir):
    """Rank 0 dies (SIGKILL) while writing epoch 2's checkpoint: one line names it, the other rank is stopped,
    the folder holds epoch 1, and the resumed run is bitwise the uninterrupted one."""
    tmp = runs["tmp"]
    result = vaelab(tmp, "--model", "ae", "--arch", "conv", "--dataset", "mnist", "--data-dir", tiny_data_dir,
                    "--batch-size", "32", "--lr", LR, "--precision", "fp32", "--epochs", "2", "--procs", "2",
                    "--out", tmp / "killed",
                    expect=2, fault="checkpoint.safetensors:during@2")
    assert "vaelab: error: training process 0 of 2 stopped without a word" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(train_losses(tmp / "killed")) == 1
    vaelab(tmp, "--resume", tmp / "killed")
    assert weight_diffs(tmp / "killed", runs["ddp"]).max() == 0
    assert train_losses(tmp / "killed") == train_losses(runs["ddp"])


def test_procs_2_ctrl_c_to_the_launching_process_stops_every_rank_with_a_checkpoint(tmp_path, tiny_data_dir):
    """SIGINT to vaelab's own process only (not its group): it passes the stop on, every rank saves, and the
    command ends as one process would, exit 130 with where it stopped and how to go on."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "vaelab", "train", "--model", "ae", "--arch", "mlp", "--dataset", "mnist",
               "--data-dir", str(tiny_data_dir), "--batch-size", "32", "--epochs", "1000", "--procs", "2",
               "--out", str(out)]
    launched = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists():  # epoch 1 committed
        assert launched.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    launched.send_signal(signal.SIGINT)
    _, stderr = launched.communicate(timeout=120)
    assert launched.returncode == 130, stderr[-2000:]
    assert "checkpoint saved - continue with: vaelab train --resume" in stderr
    assert 1 <= len(train_losses(out)) < 1000 and (out / "checkpoint.safetensors").is_file()


def test_procs_and_threads_take_auto_or_a_count(tmp_path, tiny_data_dir, capsys):
    from vaelab.cli import main

    for flag, value, message in [("--procs", "two", "expected 'auto' or a whole number, got 'two'"),
                                 ("--threads", "0", "threads must be 'auto' or a whole number from 1 to 1024")]:
        try:
            code = main(["-q", "train", "--model", "ae", "--dataset", "mnist", "--data-dir", str(tiny_data_dir), flag,
                         value, "--out", str(tmp_path / "never")])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "never").exists()


def test_a_mid_epoch_checkpoint_gives_each_process_its_own_running_sums():
    from vaelab.train.distributed import Cluster
    from vaelab.train.loop import own_sums

    saved = {"loss": 1.0, "kl": 2.0, "loss@1": 10.0, "kl@1": 20.0}
    assert own_sums(saved, Cluster(0, 2)) == {"loss": 1.0, "kl": 2.0}
    assert own_sums(saved, Cluster(1, 2)) == {"loss": 10.0, "kl": 20.0}
    # resumed with another number of processes: rank 0 carries every image's terms once, the others none
    assert own_sums(saved, Cluster()) == {"loss": 11.0, "kl": 22.0}
    assert own_sums(saved, Cluster(0, 3)) == {"loss": 11.0, "kl": 22.0} and own_sums(saved, Cluster(2, 3)) == {}
    assert own_sums({"loss": 1.0}, Cluster(0, 2)) == {"loss": 1.0} and own_sums({"loss": 1.0}, Cluster(1, 2)) == {}
