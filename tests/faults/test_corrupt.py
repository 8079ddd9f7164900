"""Damaged run folders: derived files are repaired from the checkpoint; a damaged checkpoint or config.json is a
one-line error (exit 2) that changes nothing, found before anything is built or written."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time

import pytest
import torch
from faultkit import assert_one_line_error, fault_config, fork, run_cli, untimed
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import vaelab
from vaelab.models.vae import VAE
from vaelab.runs import RunLock, read_metrics, render_metrics, tensors_sha256


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory):
    """A 1-epoch run, trained once; each test damages its own copy."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return vaelab.train(fault_config(tiny_data_dir, epochs=1), tmp_path_factory.mktemp("corrupt") / "run",
                            show_progress=False)


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def snapshot(run):
    return {p.name: p.read_bytes() for p in run.iterdir()}


def assert_resume_refused(capsys, run, match):
    """`train --resume` fails in one line and leaves every file as it was (config.json included)."""
    before = snapshot(run)
    assert_one_line_error(capsys, "train", "--resume", run, "--epochs", "2", match=match)
    assert snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"], "the failed resume left files behind"


def flip_bit(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << (offset % 8)
    path.write_bytes(bytes(data))


def huge_header(path):
    data = path.read_bytes()
    path.write_bytes((1 << 40).to_bytes(8, "little") + data[8:])


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "bit-flipped data": lambda p: flip_bit(p, p.stat().st_size - 1000),
    "bit-flipped header": lambda p: flip_bit(p, 20),
    "huge header length": huge_header,
    "empty": lambda p: p.write_bytes(b""),
    "deleted": lambda p: p.unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_weights_are_rebuilt_from_the_checkpoint(damage, run, capsys):
    good = {k: v.clone() for k, v in load_file(run / "model.safetensors").items()}  # not a view of the file
    DAMAGE[damage](run / "model.safetensors")
    code, _, err = run_cli(capsys, "evaluate", run)
    assert code == 0, err
    repaired = load_file(run / "model.safetensors")
    assert repaired.keys() == good.keys() and all(torch.equal(good[k], repaired[k]) for k in good)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_a_one_line_error(damage, run, capsys):
    DAMAGE[damage](run / "checkpoint.safetensors")
    match = "checkpoint.safetensors"
    assert_resume_refused(capsys, run, match)
    DAMAGE["bit-flipped data"](run / "model.safetensors")  # with the weights damaged too, nothing is left to read
    assert_one_line_error(capsys, "evaluate", run, match="safetensors")


def test_any_flipped_bit_in_the_checkpoint_is_caught(run, capsys):
    """30 seeded single-bit flips anywhere in the file (header, weights, optimiser, RNG)."""
    path = run / "checkpoint.safetensors"
    good = path.read_bytes()
    rng = random.Random(5)
    for offset in sorted(rng.sample(range(len(good)), 30)):
        flip_bit(path, offset)
        assert_resume_refused(capsys, run, "checkpoint.safetensors")
        path.write_bytes(good)


def rewrite_checkpoint(run, change) -> None:
    """Change a checkpoint's tensors or header entries and sign it again: a well-formed file with bad content."""
    path = run / "checkpoint.safetensors"
    tensors = load_file(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    change(tensors, metadata)
    metadata.pop("sha256", None)
    metadata["sha256"] = tensors_sha256(tensors, metadata)
    save_file(tensors, path, metadata)


def set_progress(**changes):
    def change(tensors, metadata):
        metadata["progress"] = json.dumps({**json.loads(metadata["progress"]), **changes})
    return change


def mid_epoch(permutation):
    def change(tensors, metadata):
        set_progress(step=2)(tensors, metadata)
        tensors["progress.permutation"] = permutation
    return change


def past_the_epoch(tensors, metadata):
    mid_epoch(torch.arange(256))(tensors, metadata)
    set_progress(step=8)(tensors, metadata)  # 256 images in batches of 32: steps 0-7


def first_optimiser_tensor(tensors):
    return next(k for k in tensors if k.startswith("optim.") and not k.endswith(".step"))


CONTENT = {
    "no param_groups": (lambda t, m: m.pop("param_groups"), "param_groups"),
    "param_groups of another model": (lambda t, m: m.update(param_groups=json.dumps([{"params": [0]}])),
                                      "parameter groups"),
    "unknown progress entry": (set_progress(colour="red"), "unknown progress entry 'colour'"),
    "epoch as text": (set_progress(epoch="three"), "progress entry 'epoch'"),
    "negative step": (set_progress(step=-1), "progress entry 'step'"),
    "RNG state of the wrong size": (lambda t, m: t.update({"rng.order": t["rng.order"][:100]}), "RNG state"),
    "RNG state missing": (lambda t, m: t.pop("rng.noise.0"), "RNG state 'noise.0' is missing"),
    "optimiser tensor of the wrong shape": (lambda t, m: t.update({first_optimiser_tensor(t): torch.zeros(3)}),
                                            "has shape (3,)"),
    "optimiser state of an unknown parameter": (lambda t, m: t.update({"optim.999.exp_avg": torch.zeros(1)}),
                                                "unknown parameter 999"),
    "permutation out of range": (mid_epoch(torch.arange(256) + 5), "not a permutation"),
    "permutation with repeats": (mid_epoch(torch.zeros(256, dtype=torch.int64)), "not a permutation"),
    "mid-epoch without a permutation": (set_progress(step=2), "not a permutation"),
    "step past the epoch": (past_the_epoch, "past the end of an epoch"),
    "no run record": (lambda t, m: m.pop("run"), "no valid run record"),
    "run record not a list": (lambda t, m: m.update(run=json.dumps({"history": 3, "weights_sha256": None})),
                              "no valid run record"),
    "another format": (lambda t, m: m.update(format="vaelab-checkpoint-1"), "not a vaelab checkpoint of this"),
    "weights of another size": (lambda t, m: t.update({"model.decoder.net.0.weight": torch.zeros(3, 3)}),
                                "does not fit the architecture"),
}


@pytest.mark.parametrize("case", CONTENT)
def test_a_well_formed_checkpoint_with_bad_content_is_a_one_line_error(case, run, capsys):
    change, match = CONTENT[case]
    rewrite_checkpoint(run, change)
    assert_resume_refused(capsys, run, match)


TORN = {
    "torn last line": lambda text: text[:-20],
    "binary": lambda text: "\x00\xff\xfe garbage",
    "a JSON list": lambda text: "[1, 2, 3]\n",
    "empty": lambda text: "",
}


@pytest.mark.parametrize("damage", TORN)
def test_damaged_metrics_are_repaired_from_the_checkpoint(damage, run, capsys):
    path = run / "metrics.jsonl"
    good = path.read_bytes()
    path.write_bytes(TORN[damage](good.decode()).encode("latin-1"))
    code, _, err = run_cli(capsys, "evaluate", run)
    assert code == 0, err
    assert len(read_metrics(run)) == 1 and path.read_bytes() == good
    path.unlink()
    assert untimed(read_metrics(run)) == untimed([json.loads(line) for line in good.decode().splitlines()])
    assert path.read_bytes() == render_metrics(read_metrics(run)) == good


def set_config(section, key, value):
    def change(config):
        config[section][key] = value
        return config
    return change


CONFIGS = {
    "latent_dim as text": (set_config("model", "latent_dim", "two"), "model.latent_dim must be of type int"),
    "fractional latent_dim": (set_config("model", "latent_dim", 2.5), "model.latent_dim must be of type int"),
    "negative latent_dim": (set_config("model", "latent_dim", -3), "latent-dim must be at least 1"),
    "latent_dim 10^12": (set_config("model", "latent_dim", 10**12), "latent-dim must be at most"),
    "latent_dim the weights do not have": (set_config("model", "latent_dim", 3), "does not fit the architecture"),
    "image_shape as text": (set_config("model", "image_shape", "abc"), "model.image_shape must be of type"),
    "image_shape of two sides": (set_config("model", "image_shape", [28, 28]), "model.image_shape must be of type"),
    "huge image": (set_config("model", "image_shape", [1, 10**6, 10**6]), "image_shape must be"),
    "lr as text": (set_config("train", "lr", "fast"), "train.lr must be of type float"),
    "seed 2^70": (set_config("train", "seed", 2**70), "seed must be between 0 and 2^62"),
    "boolean as a number": (set_config("train", "channels_last", 1), "train.channels_last must be of type bool"),
    "unknown model setting": (set_config("model", "colour", "red"), "unknown model setting(s): colour"),
    "unknown architecture": (set_config("model", "arch", "resnet"), "unknown architecture 'resnet'"),
    "unknown dataset": (set_config("data", "dataset", "cifar"), "unknown dataset 'cifar'"),
    "unknown pixel mode": (set_config("data", "pixels", "grey"), "unknown pixel mode 'grey'"),
    "unknown device": (set_config("train", "device", "tpu"), "unknown device 'tpu'"),
    "section missing": (lambda c: {k: v for k, v in c.items() if k != "train"}, "no 'train' section"),
    "not an object": (lambda c: [c], "not an object"),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_a_bad_config_is_a_one_line_error(case, run, capsys):
    change, match = CONFIGS[case]
    path = run / "config.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    assert_one_line_error(capsys, "evaluate", run, match=match)
    assert_resume_refused(capsys, run, match)


@pytest.mark.parametrize("content", [b"{\"data\": \"\xff\"}", b"{not json", b"[" * 100_000])
def test_an_unreadable_config_is_a_one_line_error(content, run, capsys):
    (run / "config.json").write_bytes(content)
    assert_one_line_error(capsys, "evaluate", run, match="config.json: unreadable")
    assert_resume_refused(capsys, run, "config.json")


def test_a_resume_that_fails_in_training_keeps_config_json(run, capsys, monkeypatch):
    """The new length is recorded with the first checkpoint the resumed run commits, not before."""
    before = (run / "config.json").read_bytes()
    monkeypatch.setattr(VAE, "loss", lambda self, x, labels=None, **options: {"loss": torch.tensor(float("nan"),
                                                                                         requires_grad=True)})
    assert_one_line_error(capsys, "train", "--resume", run, "--epochs", "5", match="loss became nan")
    assert (run / "config.json").read_bytes() == before
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "-q", "train", "--resume", run, "--epochs", "2")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2


def test_nan_weights_are_refused_at_start_up(run, capsys):
    def poison(tensors, metadata):
        for name in tensors:
            if name.startswith("model.") and tensors[name].is_floating_point():
                tensors[name] = torch.full_like(tensors[name], float("nan"))
        weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        record = json.loads(metadata["run"])
        metadata["run"] = json.dumps({**record, "weights_sha256": tensors_sha256(weights)})

    rewrite_checkpoint(run, poison)
    (run / "model.safetensors").unlink()
    assert_one_line_error(capsys, "explore", run, "--port", "0", match="holds NaN or infinite values")
    assert_one_line_error(capsys, "evaluate", run, match="holds NaN or infinite values")


def test_a_reader_never_writes_while_a_trainer_holds_the_run(run):
    """While another process holds the lock, a reader uses the checkpoint's copy and leaves the files alone."""
    torn = (run / "metrics.jsonl").read_bytes()[:-20]
    (run / "metrics.jsonl").write_bytes(torn)
    (run / "model.safetensors").unlink()
    ready = os.pipe()
    holder = fork(lambda: (RunLock(run).acquire(), os.write(ready[1], b"!"), time.sleep(60)), run.parent / "lock.log")
    try:
        assert os.read(ready[0], 1) == b"!"
        assert len(read_metrics(run)) == 1 and vaelab.load(run) is not None
        assert (run / "metrics.jsonl").read_bytes() == torn and not (run / "model.safetensors").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
