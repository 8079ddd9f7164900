"""`--log tensorboard[=DIR]`: the event files hold what metrics.jsonl holds, per step and per epoch, plus pictures."""

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.runs import read_metrics

pytest.importorskip("tensorboard", reason="--log tensorboard needs tensorboard: pip install 'vaelab[tensorboard]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag):
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def config(data_dir, epochs, precision="fp32"):  # 256 training images in batches of 64: 4 steps per epoch
    return vaelab.preset("book-vae").replace(data={"dataset": "mnist", "data_dir": str(data_dir)},
                                             model={"arch": "mlp"},
                                             train={"epochs": epochs, "batch_size": 64, "device": "cpu",
                                                    "precision": precision})


def test_scalars_and_pictures_match_metrics_jsonl(tiny_data_dir, tmp_path):
    run = vaelab.train(config(tiny_data_dir, 2), tmp_path / "run", show_progress=False, logs="tensorboard")
    log = events(run / "tensorboard")
    metrics = read_metrics(run)
    for part in ("train", "test"):
        for name, value in metrics[0][part].items():
            logged = scalars(log, f"{part}/{name}")
            assert [step for step, _ in logged] == [4, 8]
            assert logged[0][1] == pytest.approx(value, rel=1e-6) and logged[1][1] == pytest.approx(
                metrics[1][part][name], rel=1e-6)
    steps = scalars(log, "step/loss")
    assert [step for step, _ in steps] == list(range(1, 9))
    assert {"step/reconstruction", "step/kl", "speed/images_per_s"} <= set(log.Tags()["scalars"])
    # an epoch's training mean is the mean of its steps' batch means (equal batches here)
    assert sum(v for _, v in steps[:4]) / 4 == pytest.approx(metrics[0]["train"]["loss"], rel=1e-5)
    pictures = log.Images("reconstructions")
    assert [p.step for p in pictures] == [4, 8] and (pictures[0].height, pictures[0].width) == (2 * 28 + 1, 8 * 29 - 1)
    assert [p.step for p in log.Images("samples")] == [4, 8]


@pytest.mark.determinism
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_logging_changes_no_weight_and_a_resume_continues_the_curves(precision, tiny_data_dir, tmp_path, capsys):
    """The CLI run is the book-vae preset's (the defaults) with the precision pinned on both sides: `auto` would
    mean bf16 on a CPU with bf16 in hardware and fp32 elsewhere."""
    plain = vaelab.train(config(tiny_data_dir, 2, precision), tmp_path / "plain", show_progress=False)
    assert main(["-q", "train", "--dataset", "mnist", "--data-dir", str(tiny_data_dir), "--arch", "mlp",
                 "--batch-size", "64", "--epochs", "1", "--device", "cpu", "--precision", precision,
                 "--out", str(tmp_path / "logged"),
                 "--log", f"tensorboard={tmp_path / 'tb'}"]) == 0
    assert main(["-q", "train", "--resume", str(tmp_path / "logged"), "--epochs", "2",
                 "--log", f"tensorboard={tmp_path / 'tb'}"]) == 0
    a, b = load_file(plain / "model.safetensors"), load_file(tmp_path / "logged" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "logged" / "tensorboard").exists()
    log = events(tmp_path / "tb")
    assert [step for step, _ in scalars(log, "step/loss")] == list(range(1, 9))
    assert [step for step, _ in scalars(log, "test/loss")] == [4, 8]


def test_bad_log_values(tmp_path):
    with pytest.raises(VaelabError, match="unknown log 'wandb'; choose from: tensorboard"):
        vaelab.train(vaelab.preset("book-vae"), tmp_path / "run", logs="wandb")
    with pytest.raises(VaelabError, match="give a folder after '='"):
        vaelab.train(vaelab.preset("book-vae"), tmp_path / "run", logs="tensorboard=")
    assert not (tmp_path / "run").exists()
