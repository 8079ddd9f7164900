"""A run's length: epochs, exact steps, or a time budget (vaelab.train.length)."""

import json

import pytest
from safetensors import safe_open
from test_training import ONE_THREAD, assert_same_weights, interrupt_at, losses, tiny_config

import vaelab
from vaelab.errors import VaelabError
from vaelab.runs import read_metrics
from vaelab.train import TrainingInterrupted
from vaelab.train.length import RunLength, format_duration, parse_duration

STEPS_PER_EPOCH = 8  # the tiny dataset: 256 training images at batch 32


def checkpoint_header(run):
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        meta = f.metadata()
    return json.loads(meta["progress"]), json.loads(meta["param_groups"])


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("90", 90), ("5m", 300), ("1h30m", 5400), ("2.5m", 150),
                                           (" 1H ", 3600), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["fast", "0s", "-5m", "5 minutes", "m", "", "nan", 0])
def test_bad_durations_are_one_line_errors(text):
    with pytest.raises(VaelabError, match="time budget"):
        parse_duration(text)


def test_each_length_runs_its_schedule_to_the_end():
    epochs = RunLength.of(epochs=2, steps=None, time_budget=None, steps_per_epoch=10)
    assert epochs.total == 20 and epochs.fraction(0, 999.0) == 0.025 and epochs.done(20, 0.0)
    steps = RunLength.of(epochs=2, steps=7, time_budget=None, steps_per_epoch=10)
    assert steps.fraction(6, 0.0) == pytest.approx(6.5 / 7) and not steps.done(6, 1e9) and steps.done(7, 0.0)
    budget = RunLength.of(epochs=2, steps=None, time_budget=60.0, steps_per_epoch=10)
    assert budget.fraction(10**6, 30.0) == 0.5 and budget.fraction(0, 90.0) == 1.0
    assert not budget.done(10**6, 59.9) and budget.done(0, 60.0)


def test_steps_end_mid_epoch_and_the_cut_epoch_is_recorded(tiny_data_dir, tmp_path):
    config = tiny_config(tiny_data_dir).replace(train={"steps": 11})
    run = vaelab.train(config, tmp_path / "run", show_progress=False)
    history = read_metrics(run)
    assert [(m["epoch"], m["steps"], m["images"]) for m in history] == [(1, 8, 256), (2, 11, 3 * 32)]
    progress, _ = checkpoint_header(run)
    assert progress["steps_done"] == 11 and progress["step"] == 0 and progress["epoch"] == 2


@pytest.mark.determinism
def test_steps_interrupted_and_resumed_is_bitwise_identical(tiny_data_dir, tmp_path, monkeypatch):
    config = tiny_config(tiny_data_dir, model="vae").replace(data={"pixels": "dynamic"},
                                                             train={"steps": 13, "lr_schedule": "warmup-cosine",
                                                                    **ONE_THREAD})
    straight = vaelab.train(config, tmp_path / "straight", show_progress=False)
    interrupt_at(monkeypatch, 10)
    with pytest.raises(TrainingInterrupted, match="epoch 2 after step 2"):
        vaelab.train(config, tmp_path / "stopped", show_progress=False)
    monkeypatch.undo()
    vaelab.resume(tmp_path / "stopped", show_progress=False)
    assert_same_weights(straight, tmp_path / "stopped")
    assert losses(straight) == losses(tmp_path / "stopped")


def test_time_budget_decays_the_rate_to_the_end_and_resume_spends_the_rest(tiny_data_dir, tmp_path):
    config = tiny_config(tiny_data_dir).replace(train={"time_budget": 1.5, "lr_schedule": "warmup-cosine",
                                                       "lr": 1e-3})
    run = vaelab.train(config, tmp_path / "run", show_progress=False)
    progress, groups = checkpoint_header(run)
    assert 1.5 <= progress["elapsed_seconds"] < 5
    assert groups[0]["lr"] < 0.05 * 1e-3  # the cosine reached (nearly) zero at the budget
    steps = progress["steps_done"]
    assert read_metrics(run)[-1]["steps"] == steps > STEPS_PER_EPOCH

    vaelab.resume(run, show_progress=False)  # the budget is spent: nothing to do
    assert checkpoint_header(run)[0]["steps_done"] == steps
    vaelab.resume(run, time_budget=3.0, show_progress=False)
    progress, _ = checkpoint_header(run)
    assert 3.0 <= progress["elapsed_seconds"] < 7 and progress["steps_done"] > steps


@pytest.mark.determinism
def test_a_budgeted_run_is_replayed_by_its_step_count(tiny_data_dir, tmp_path):
    budgeted = vaelab.train(tiny_config(tiny_data_dir).replace(train={"time_budget": 1.0}), tmp_path / "budget",
                            show_progress=False)
    steps = read_metrics(budgeted)[-1]["steps"]
    replay = tiny_config(tiny_data_dir).replace(train={"steps": steps})
    a = vaelab.train(replay, tmp_path / "a", show_progress=False)
    b = vaelab.train(replay, tmp_path / "b", show_progress=False)
    assert read_metrics(a)[-1]["steps"] == steps
    assert_same_weights(a, b)


def test_length_settings_conflict(tiny_data_dir, tmp_path):
    with pytest.raises(VaelabError, match="not both"):
        vaelab.train(tiny_config(tiny_data_dir).replace(train={"steps": 5, "time_budget": 10.0}), tmp_path / "x")
    run = vaelab.train(tiny_config(tiny_data_dir, epochs=1), tmp_path / "run", show_progress=False)
    with pytest.raises(VaelabError, match="one new length"):
        vaelab.resume(run, epochs=2, steps=30)
