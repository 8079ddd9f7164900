"""The training levers: bf16 autocast, channels-last, the learning-rate schedule. Each must leave training
reproducible and resumable, and change the numbers only as much as rounding does."""

import pytest
import torch
from test_training import ONE_THREAD, assert_same_weights, interrupt_at, losses

import vaelab
from vaelab.models import build_model
from vaelab.runs import read_config, read_metrics
from vaelab.train import TrainingInterrupted, speed
from vaelab.train.length import RunLength
from vaelab.train.speed import WARMUP, autocast, native_bf16, set_learning_rate, warmup_cosine


def conv_config(data_dir, epochs=2, **train):
    return vaelab.preset("book-vae").replace(
        data={"dataset": "mnist", "data_dir": str(data_dir)},
        train={"epochs": epochs, "batch_size": 32, "seed": 3, "device": "cpu", **train})


FAST = {"precision": "bf16", "channels_last": True, "lr_schedule": "warmup-cosine", "lr": 2e-3}


def test_warmup_cosine_shape():
    assert warmup_cosine(0.0) == 0.0 and warmup_cosine(WARMUP / 2) == pytest.approx(0.5)
    assert warmup_cosine(WARMUP) == pytest.approx(1.0) and warmup_cosine(1.0) == pytest.approx(0.0)
    after = [warmup_cosine(WARMUP + i * (1 - WARMUP) / 50) for i in range(51)]
    assert all(a > b for a, b in zip(after, after[1:]))
    assert warmup_cosine(WARMUP + (1 - WARMUP) / 2) == pytest.approx(0.5)


def test_learning_rate_is_read_at_each_steps_midpoint():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    rates = []
    length = RunLength.of(epochs=1, steps=None, time_budget=None, steps_per_epoch=100)
    for step in range(100):
        set_learning_rate(optimizer, 2e-3, "warmup-cosine", length.fraction(step, seconds=0.0))
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(2e-3 * warmup_cosine(0.005)) and rates[0] > 0 and rates[-1] > 0
    assert max(rates) == pytest.approx(2e-3, rel=0.01) and rates.index(max(rates)) in (4, 5)
    set_learning_rate(optimizer, 2e-3, "constant", length.fraction(57, seconds=0.0))
    assert optimizer.param_groups[0]["lr"] == 2e-3


def test_bf16_autocast_keeps_loss_terms_and_codes_in_fp32():
    model = build_model(vaelab.preset("book-vae").model)
    x = torch.rand(4, 1, 28, 28)
    with autocast("bf16", torch.device("cpu")):
        assert model.encoder(x).dtype == torch.bfloat16  # the network itself runs in bf16
        posterior = model.posterior(x)
        mean, logvar = posterior.mean, posterior.logvar
        terms = model.loss(x)
    assert mean.dtype == logvar.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in terms.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.determinism
def test_levers_keep_ctrl_c_and_resume_bitwise(tiny_data_dir, tmp_path, monkeypatch):
    """The schedule is a function of the global step, so a resumed run continues it exactly."""
    config = conv_config(tiny_data_dir, epochs=2, **FAST, **ONE_THREAD)
    straight = vaelab.train(config, tmp_path / "straight", show_progress=False)
    interrupt_at(monkeypatch, 8 + 3)  # 8 steps per epoch: stop after step 3 of epoch 2
    with pytest.raises(TrainingInterrupted, match="epoch 2 after step 3"):
        vaelab.train(config, tmp_path / "stopped", show_progress=False)
    monkeypatch.undo()
    vaelab.resume(tmp_path / "stopped", show_progress=False)
    assert_same_weights(straight, tmp_path / "stopped")
    assert losses(straight) == losses(tmp_path / "stopped")
    recorded = read_config(straight)[0].train
    assert (recorded.precision, recorded.channels_last, recorded.lr_schedule) == ("bf16", True, "warmup-cosine")


def test_each_lever_changes_the_numbers_only_by_rounding(tiny_data_dir, tmp_path):
    """fp32 vs bf16 and NCHW vs NHWC from the same initial weights: test losses within 2% after 2 epochs;
    the schedule, a real change of the optimisation, gives a different run."""
    plain = {"precision": "fp32", "channels_last": False}
    runs = {name: vaelab.train(conv_config(tiny_data_dir, **{**plain, **train}), tmp_path / name, show_progress=False)
            for name, train in {"fp32": {}, "bf16": {"precision": "bf16"}, "nhwc": {"channels_last": True},
                                "cosine": {"lr_schedule": "warmup-cosine"}}.items()}
    test = {name: read_metrics(run)[-1]["test"]["loss"] for name, run in runs.items()}
    assert test["bf16"] == pytest.approx(test["fp32"], rel=0.02)
    assert test["nhwc"] == pytest.approx(test["fp32"], rel=1e-3)
    assert test["cosine"] != test["fp32"]


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_resolved_and_recorded(tiny_data_dir, tmp_path, monkeypatch, native):
    """`auto` means bf16 only where the hardware computes it; the run folder says which one was used."""
    monkeypatch.setattr(speed, "native_bf16", lambda device: native)
    run = vaelab.train(conv_config(tiny_data_dir, epochs=1, precision="auto"), tmp_path / "run", show_progress=False)
    assert read_config(run)[0].train.precision == ("bf16" if native else "fp32")


def test_the_default_is_the_fastest_configuration_and_the_layout_applies_only_to_conv_nets(tiny_data_dir, tmp_path,
                                                                                          caplog):
    """Without flags a run takes auto precision and channels-last; the start line says what was chosen, and an
    MLP (no conv weights) keeps the contiguous layout."""
    caplog.set_level("INFO", logger="vaelab")
    for arch, layout in (("conv", "channels-last layout"), ("mlp", "contiguous (NCHW) layout")):
        config = vaelab.RunConfig().replace(data={"dataset": "mnist", "data_dir": str(tiny_data_dir)},
                                            model={"arch": arch}, train={"epochs": 1, "device": "cpu"})
        assert (config.train.precision, config.train.channels_last) == ("auto", True)
        caplog.clear()
        run = vaelab.train(config, tmp_path / arch, show_progress=False)
        start = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("cpu: "))
        assert start.endswith(layout) and read_config(run)[0].train.precision in ("fp32", "bf16"), start


def test_devices_without_a_bf16_probe_stay_in_fp32():
    assert native_bf16(torch.device("meta")) is False


@pytest.mark.parametrize("env, native", [({}, True), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
                                         ({"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}, True),
                                         ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, False),
                                         ({"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True)])
def test_bf16_is_native_only_where_the_kernels_in_use_have_it(env, native, monkeypatch):
    """A CPU with bf16 in hardware whose older kernels were picked by the environment emulates bf16 (slower than
    fp32), so `auto` keeps fp32 there."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert native_bf16(torch.device("cpu")) is native
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert native_bf16(torch.device("cpu")) is False
