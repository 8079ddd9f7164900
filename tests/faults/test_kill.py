"""SIGKILL at every write boundary and at random instants, SIGTERM then SIGKILL in the handler, signals at
start-up: afterwards a reader finds the run exactly before or after the epoch in progress, and resuming
gives bitwise the weights and metrics of a run that never stopped."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from faultkit import (
    EPOCHS,
    Snapshot,
    cli_args,
    cli_in_child,
    continue_in_child,
    fault_config,
    finished_epochs,
    fork,
    leftovers,
    train_in_child,
)

import vaelab
from vaelab.models.vae import VAE

FILES = ("checkpoint.safetensors", "model.safetensors", "metrics.jsonl")
PHASES = ("before", "during", "after")
# (boundary, the epoch being written when it is reached); N counts that file's writes in the process
BOUNDARIES = (
    [(f"config.json:{phase}", 1) for phase in PHASES]
    + [(f"{name}:{phase}@{epoch}", epoch) for epoch in (1, EPOCHS) for name in FILES for phase in PHASES]
    + [("commit:before", 1), ("commit:after", 1)]
)


def resume_and_compare(run, scratch, config, reference):
    child = continue_in_child(config, run, scratch / "resume.log")
    assert child.wait() == 0, child.stderr
    assert Snapshot.of(run).same(reference[EPOCHS]), "the resumed run differs from the uninterrupted one"
    assert leftovers(run) == [], "a killed process's files were not cleaned up"
    return child.stderr


@pytest.mark.parametrize("boundary, epoch", BOUNDARIES, ids=[b for b, _ in BOUNDARIES])
def test_sigkill_at_a_write_boundary(boundary, epoch, tiny_data_dir, tmp_path, reference):
    config, run = fault_config(tiny_data_dir), tmp_path / "run"
    child = train_in_child(config, run, tmp_path / "train.log", fault=boundary)
    assert child.wait() == -signal.SIGKILL, child.stderr
    done = finished_epochs(run, tmp_path, reference)
    if done is None:  # killed before the new run's first commit: nothing of it is visible
        assert epoch == 1 and not boundary.startswith(("commit:after", "model", "metrics")), boundary
    else:
        assert done in (epoch - 1, epoch), f"{boundary}: {done} epochs finished"
    said = resume_and_compare(run, tmp_path, config, reference)
    if boundary.endswith("during") or ":during@" in boundary:
        assert "removed" in said and "leftover" in said and said.count("\n") == 1, said


@pytest.mark.determinism
@pytest.mark.parametrize("precision, kills", [("fp32", 20), ("bf16", 8)])
def test_sigkill_at_random_instants(precision, kills, tiny_data_dir, tmp_path, references):
    """Kills at seeded random times over a whole run (its duration measured here, once), in both precisions:
    bf16 autocast runs other kernels than fp32, and a resume must meet the uninterrupted run in each."""
    config, reference = fault_config(tiny_data_dir, precision=precision), references(precision)
    started = time.perf_counter()
    assert train_in_child(config, tmp_path / "timed", tmp_path / "timed.log").wait() == 0
    duration = time.perf_counter() - started
    rng = random.Random(13)
    seen = []
    for attempt in range(kills):
        scratch = tmp_path / f"try{attempt}"
        scratch.mkdir()
        run = scratch / "run"
        child = train_in_child(config, run, scratch / "train.log")
        time.sleep(rng.uniform(0, duration))
        os.kill(child.pid, signal.SIGKILL)  # a child that already finished is a zombie until waited for
        assert child.wait() in (0, -signal.SIGKILL), child.stderr
        seen.append(finished_epochs(run, scratch, reference))
        resume_and_compare(run, scratch, config, reference)
    print(f"finished epochs found after each random kill: {seen}")
    assert len(set(seen)) >= 2, f"the kills did not spread over the run: {seen}"


def sigterm_at_step(step: int):
    """A child's work: train, sending itself SIGTERM from inside the given training step (counted from 1)."""
    calls = {"n": 0}
    original = VAE.loss

    def loss(self, x, labels=None, **options):
        if self.training:
            calls["n"] += 1
            if calls["n"] == step:
                os.kill(os.getpid(), signal.SIGTERM)
        return original(self, x, labels, **options)

    VAE.loss = loss


@pytest.mark.determinism
@pytest.mark.parametrize("phase, precision", [(phase, "fp32") for phase in PHASES] + [("after", "bf16")])
def test_sigterm_then_sigkill_during_the_handler(phase, precision, tiny_data_dir, tmp_path, references):
    """SIGTERM in epoch 2 makes the handler write a mid-epoch checkpoint (the run's 2nd); SIGKILL hits it."""
    config, run, reference = fault_config(tiny_data_dir, precision=precision), tmp_path / "run", references(precision)

    def work():
        sigterm_at_step(8 + 3)
        vaelab.train(config, run, show_progress=False)
        return 0

    child = fork(work, tmp_path / "train.log", fault=f"checkpoint.safetensors:{phase}@2")
    assert child.wait() == -signal.SIGKILL, child.stderr
    assert finished_epochs(run, tmp_path, reference) == 1
    resume_and_compare(run, tmp_path, config, reference)


@pytest.mark.determinism
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_second_ctrl_c_while_saving_changes_nothing(precision, tiny_data_dir, tmp_path, references):
    """Ctrl-C after epoch 1, then Ctrl-C again while the handler writes its checkpoint: exit 130, one line. The
    command line's run is the reference's configuration (same precision: `auto` would differ by CPU)."""
    run = tmp_path / "run"
    child = cli_in_child(cli_args(tiny_data_dir, run, precision=precision), tmp_path / "cli.log",
                         fault="model.safetensors:after!INT,checkpoint.safetensors:during@2!INT")
    assert child.wait() == 130, child.stderr
    assert child.stderr.startswith("vaelab: interrupted in epoch 2") and child.stderr.count("\n") == 1, child.stderr
    resume_and_compare(run, tmp_path, fault_config(tiny_data_dir, precision=precision), references(precision))


@pytest.mark.parametrize("fault", ["config.json:before!TERM", "config.json:during!TERM", "config.json:after!TERM",
                                   "config.json:after!INT"])
def test_a_signal_at_start_up_exits_130_and_leaves_nothing(fault, tiny_data_dir, tmp_path, reference):
    run = tmp_path / "run"
    child = cli_in_child(cli_args(tiny_data_dir, run), tmp_path / "cli.log", fault=fault)
    assert child.wait() == 130, child.stderr
    assert child.stderr == "vaelab: interrupted\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "cli.log"], "the start-up left files behind"
    resume_and_compare(run, tmp_path, fault_config(tiny_data_dir), reference)


def test_sigkill_while_the_resume_repairs_the_folder(tiny_data_dir, tmp_path, reference):
    """Killed after epoch 2's commit, before its weights; the resume that rewrites them is killed halfway too."""
    config, run = fault_config(tiny_data_dir), tmp_path / "run"
    assert train_in_child(config, run, tmp_path / "train.log", fault="model.safetensors:before@2").wait() == -9
    repair = continue_in_child(config, run, tmp_path / "repair.log", fault="model.safetensors:during@1")
    assert repair.wait() == -signal.SIGKILL, repair.stderr
    assert finished_epochs(run, tmp_path, reference) == EPOCHS
    resume_and_compare(run, tmp_path, config, reference)
