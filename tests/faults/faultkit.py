"""The fault-injection suite's tools: training in forked children that die on cue, and what a reader finds.

Every training process here is a fork of the test process (torch is imported once, so a kill-and-resume
cycle costs well under a second) running on one thread, so runs are bitwise comparable. A child dies at a
write boundary through the VAELAB_FAULT hook (vaelab.runs.fault_point) or from a signal sent by the test.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import vaelab
from vaelab.cli import main as cli_main
from vaelab.errors import VaelabError
from vaelab.runs import FAULT_ENV, is_run, read_metrics, read_record

EPOCHS = 2  # the first epoch (a new run's first commit) and a later one, which is also the last
TIMING = ("seconds", "images_per_s")  # wall-clock fields: the only ones allowed to differ between runs
# Adam's first construction imports torch._dynamo (seconds of CPU): do it once here, not in every forked child
torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def fault_config(data_dir: Path, epochs: int = EPOCHS, precision: str = "fp32"):
    """The MLP VAE on 256 images, 8 steps an epoch, with dynamic binarisation (so the noise RNG matters)."""
    return vaelab.preset("book-vae").replace(
        data={"dataset": "mnist", "data_dir": str(data_dir), "pixels": "dynamic"},
        model={"arch": "mlp"}, train={"epochs": epochs, "batch_size": 32, "seed": 3, "device": "cpu",
                                      "precision": precision})


def cli_args(data_dir: Path, out: Path, epochs: int = EPOCHS, precision: str = "fp32") -> list[str]:
    """The same run as `fault_config`, on the command line (the precision pinned: `auto` is bf16 on some CPUs)."""
    return ["-q", "train", "--dataset", "mnist", "--data-dir", str(data_dir), "--pixels", "dynamic", "--arch", "mlp",
            "--epochs", str(epochs), "--batch-size", "32", "--seed", "3", "--device", "cpu", "--precision", precision,
            "--out", str(out)]


@dataclass
class Child:
    pid: int
    stderr_path: Path

    def wait(self) -> int:
        """The exit code, or minus the signal that killed it (as subprocess reports it)."""
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


def fork(work, stderr_path: Path, fault: str | None = None) -> Child:
    """Run `work()` in a forked child whose exit code is its return value (99 and a traceback on an exception).
    The child writes stderr (and the 'vaelab' log) to `stderr_path`, trains on one thread, and has
    VAELAB_FAULT set to `fault`."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Child(pid, stderr_path)
    code = 99
    try:
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        logger = logging.getLogger("vaelab")
        logger.handlers = [logging.StreamHandler(sys.stderr)]
        logger.setLevel(logging.WARNING)
        logger.propagate = False
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
        torch.set_num_threads(1)
        if fault:
            os.environ[FAULT_ENV] = fault
        else:
            os.environ.pop(FAULT_ENV, None)
        code = work()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0)


def train_in_child(config, out: Path, log: Path, fault: str | None = None) -> Child:
    def work():
        vaelab.train(config, out, show_progress=False)
        return 0
    return fork(work, log, fault)


def continue_in_child(config, out: Path, log: Path, fault: str | None = None) -> Child:
    """What a user does after a crash: resume the run if it exists, else start it again into the same folder."""
    def work():
        if is_run(out):
            vaelab.resume(out, epochs=config.train.epochs, show_progress=False)
        else:
            vaelab.train(config, out, show_progress=False)
        return 0
    return fork(work, log, fault)


def cli_in_child(args: list[str], log: Path, fault: str | None = None) -> Child:
    return fork(lambda: cli_main(args), log, fault)


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


@dataclass
class Snapshot:
    """A run folder as a reader sees it: the weights `vaelab.load` gives and the metrics history."""

    weights: dict[str, torch.Tensor] | None
    metrics: list[dict]

    @classmethod
    def of(cls, run: Path) -> "Snapshot":
        model = vaelab.load(run)
        return cls({k: v.contiguous() for k, v in model.state_dict().items()}, untimed(read_metrics(run)))

    def same(self, other: "Snapshot") -> bool:
        if self.metrics != other.metrics or (self.weights is None) != (other.weights is None):
            return False
        return self.weights is None or (self.weights.keys() == other.weights.keys() and all(
            torch.equal(self.weights[k], other.weights[k]) for k in self.weights))


def finished_epochs(run: Path, scratch: Path, reference: list[Snapshot]) -> int | None:
    """How many epochs a reader finds finished in `run` after a crash, checking that `vaelab.load` and the
    metrics give exactly the uninterrupted run's state after that many (None: no run folder exists).
    It reads a copy, so that the original is left for the resume to repair."""
    if not run.exists():
        return None
    copy = scratch / "inspected"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    done = len(read_record(copy).history)
    if done == 0:
        with pytest.raises(VaelabError, match="no finished epoch yet"):
            vaelab.load(copy)
        assert read_metrics(copy) == []
    else:
        assert Snapshot.of(copy).same(reference[done]), f"the folder mixes epoch {done} with another epoch"
    return done


def leftovers(run: Path) -> list[str]:
    """Hidden files a killed process could leave: staging folders, lock files, temporaries."""
    found = [p.name for p in run.parent.iterdir() if p.name.startswith(f".{run.name}.")]
    if run.is_dir():
        found += [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    return found


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process: exit code, stdout, stderr."""
    try:
        code = cli_main([*map(str, args)])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, *args, match: str) -> str:
    """Exit 2 and exactly one line on stderr, `vaelab: error: ...` containing `match`, no traceback."""
    code, _, err = run_cli(capsys, *args)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("vaelab: error: ") and match in err, err
    return err
