"""Every bad input through the CLI: one line on stderr, exit code 2, no traceback, nothing half-written."""

import json
import shutil

import pytest

from vaelab.cli import main


def run_cli(capsys, *args):
    try:
        code = main([*map(str, args)])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, *args, match):
    code, _, err = run_cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and "error:" in lines[-1] and match in lines[-1], err
    assert "Traceback" not in err
    return lines[-1]


@pytest.fixture
def trained(tiny_data_dir, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("runs") / "vae"
    code, _, _ = run_cli(capsys, "-q", "train", "--dataset", "mnist", "--data-dir", tiny_data_dir, "--arch", "mlp",
                         "--epochs", "1", "--out", out)
    assert code == 0
    return out


def test_train_evaluate_resume(trained, capsys):
    code, out, _ = run_cli(capsys, "evaluate", trained)
    assert code == 0 and "neg_elbo" in out and "nats per image" in out
    result = json.loads((trained / "eval.json").read_text())
    assert result["n_test"] == 64 and set(result["test"]) == {"loss", "reconstruction", "kl", "mse", "neg_elbo"}
    code, _, _ = run_cli(capsys, "-q", "train", "--resume", trained, "--epochs", "2")
    assert code == 0 and len((trained / "metrics.jsonl").read_text().splitlines()) == 2


def test_preset_then_flags(tiny_data_dir, tmp_path, capsys):
    code, _, _ = run_cli(capsys, "-q", "train", "--preset", "book-ae", "--dataset", "mnist", "--data-dir",
                         tiny_data_dir, "--epochs", "0", "--latent-dim", "3", "--out", tmp_path / "ae")
    config = json.loads((tmp_path / "ae" / "config.json").read_text())
    assert code == 0 and config["model"]["model"] == "ae" and config["model"]["latent_dim"] == 3
    assert config["model"]["r_loss_factor"] == 1.0 and config["train"]["epochs"] == 0


@pytest.mark.parametrize("flag,value,match", [
    ("--dataset", "cifar", "unknown dataset 'cifar'; choose from: auto, mnist, fashion-mnist, mnist-sample"),
    ("--model", "gan", "unknown model 'gan'; choose from: ae, vae"),
    ("--arch", "resnet", "unknown architecture 'resnet'; choose from: conv, faces, mlp, mlp-ln"),
    ("--preset", "book", "unknown preset 'book'; choose from: book-ae, book-vae"),
    ("--likelihood", "poisson", "unknown likelihood 'poisson'; choose from: bernoulli, gaussian"),
    ("--pixels", "grey", "unknown pixel mode 'grey'; choose from: continuous, dynamic, static"),
    ("--device", "tpu", "unknown device 'tpu'"),
    ("--precision", "fp16", "unknown precision 'fp16'; choose from: fp32, bf16, auto"),
    ("--lr-schedule", "step", "unknown lr-schedule 'step'; choose from: constant, warmup-cosine"),
    ("--lr", "0", "lr must be a positive number, got 0.0"),
    ("--lr=-1e-3", None, "lr must be a positive number"),
    ("--batch-size", "0", "batch-size must be at least 1, got 0"),
    ("--latent-dim", "0", "latent-dim must be at least 1, got 0"),
    ("--epochs", "-1", "epochs must be 0 or more"),
    ("--r-loss-factor", "0", "r-loss-factor must be a positive number"),
    ("--epochs", "ten", "invalid int value: 'ten'"),
])
def test_bad_settings(flag, value, match, tiny_data_dir, tmp_path, capsys):
    flags = (flag,) if value is None else (flag, value)
    assert_one_line_error(capsys, "train", "--dataset", "mnist", "--data-dir", tiny_data_dir, "--out",
                          tmp_path / "run", *flags, match=match)
    assert list(tmp_path.iterdir()) == []


def test_missing_truncated_and_corrupt_files(tiny_data_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    assert_one_line_error(capsys, "train", "--dataset", "mnist", "--data-dir", data, "--out", tmp_path / "r",
                          match="is missing t10k-labels-idx1-ubyte.gz")
    shutil.copy(tiny_data_dir / "t10k-labels-idx1-ubyte.gz", data)
    raw = (data / "train-images-idx3-ubyte.gz").read_bytes()
    (data / "train-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    assert_one_line_error(capsys, "train", "--dataset", "mnist", "--data-dir", data, "--out", tmp_path / "r",
                          match="train-images-idx3-ubyte.gz: cannot read gzip data")
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    assert_one_line_error(capsys, "train", "--dataset", "mnist", "--data-dir", data, "--out", tmp_path / "r",
                          match="train-images-idx3-ubyte.gz")
    shutil.copy(tiny_data_dir / "train-labels-idx1-ubyte.gz", data / "train-images-idx3-ubyte.gz")
    assert_one_line_error(capsys, "train", "--dataset", "mnist", "--data-dir", data, "--out", tmp_path / "r",
                          match="wrong magic number 2049")
    assert not (tmp_path / "r").exists()


def test_checkpoint_from_another_architecture(trained, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    config = json.loads((other / "config.json").read_text())
    config["model"]["arch"] = "conv"
    (other / "config.json").write_text(json.dumps(config))
    assert_one_line_error(capsys, "evaluate", other, match="does not fit the architecture in config.json")
    assert_one_line_error(capsys, "train", "--resume", other, "--epochs", "3",
                          match="does not fit the architecture in config.json")


def test_not_a_run_folder(tmp_path, capsys):
    assert_one_line_error(capsys, "evaluate", tmp_path, match="is not a vaelab run folder")
    assert_one_line_error(capsys, "evaluate", tmp_path / "nope", match="no such run folder")
    assert_one_line_error(capsys, "train", "--resume", tmp_path, match="is not a vaelab run folder")


def test_resume_refuses_other_settings(trained, capsys):
    assert_one_line_error(capsys, "train", "--resume", trained, "--lr", "0.1", match="only its length")


def test_unwritable_or_occupied_output(trained, tiny_data_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    common = ("train", "--dataset", "mnist", "--data-dir", tiny_data_dir, "--epochs", "1")
    assert_one_line_error(capsys, *common, "--out", blocker / "run", match="cannot write to")
    assert_one_line_error(capsys, *common, "--out", "/proc/vaelab-run", match="cannot write to")
    assert_one_line_error(capsys, *common, "--out", trained, match="already exists and is not empty")


def test_usage_errors_are_one_line(capsys):
    assert_one_line_error(capsys, "train", "--no-such-flag", match="unrecognized arguments")
    assert_one_line_error(capsys, match="the following arguments are required: command")


@pytest.mark.parametrize("args, match", [
    (("--time-budget", "fast"), "not a duration"),
    (("--time-budget", "0s"), "positive duration"),
    (("--epochs", "3", "--steps", "4"), "--epochs and --steps both set"),
    (("--steps", "0"), "steps must be at least 1"),
])
def test_bad_run_lengths(tiny_data_dir, tmp_path, capsys, args, match):
    assert_one_line_error(capsys, "train", "--dataset", "mnist", "--data-dir", tiny_data_dir, "--arch", "mlp",
                          *args, "--out", tmp_path / "run", match=match)
    assert not (tmp_path / "run").exists()


def test_global_options_go_before_or_after_the_command(tiny_data_dir, tmp_path, capsys):
    """-q and --version anywhere, as git-style tools take them; a command's -q does not undo one given before."""
    from vaelab import __version__
    from vaelab.cli import build_parser

    for argv in (["-q", "train"], ["train", "-q"], ["-q", "train", "-q"], ["data", "info", "x", "-q"],
                 ["-q", "data", "info", "x"], ["data", "-q", "info", "x"]):
        assert build_parser().parse_args(argv).quiet is True, argv
    assert build_parser().parse_args(["train"]).quiet is False
    for argv in (["--version"], ["train", "--version"], ["data", "info", "--version"]):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0 and out == f"vaelab {__version__}\n", argv
    code, out, err = run_cli(capsys, "train", "--dataset", "mnist", "--data-dir", tiny_data_dir, "--arch", "mlp",
                             "--epochs", "1", "--out", tmp_path / "run", "-q")
    assert code == 0 and out == f"{tmp_path / 'run'}\n" and err == "", err
