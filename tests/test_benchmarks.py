"""The benchmark scripts' own logic (no training, no timing): ratios, step shares, log parsing, thresholds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_speed():
    return script("train_speed")


@pytest.fixture(scope="module")
def time_to_quality():
    return script("time_to_quality")


def result(case: str, images_per_s: float, busy: bool = False) -> dict:
    return {"case": case, "arch": "conv", "batch_size": 128, "busy": busy, "images_per_s": images_per_s,
            "flops_per_image": 1e8}


def test_ratios_use_the_faster_tuned_loop_and_the_same_neighbour(train_speed):
    results = [result("tuned-conv-b128", 100), result("tuned-fp32-conv-b128", 400), result("plain-conv-b128", 200),
               result("vaelab-conv-b128-1x2", 600), result("vaelab-conv-b128-1x2-busy", 300, busy=True),
               result("tuned-fp32-conv-b128-busy", 200, busy=True), {"case": "pythae-conv-b128", "skipped": "no"}]
    train_speed.add_ratios(results, peak=100.0, bf16_peak=200.0)
    quiet, busy = results[3], results[4]
    assert quiet["x_tuned"] == pytest.approx(1.5)  # over tuned-fp32's 400, not bf16's 100
    assert quiet["x_plain"] == pytest.approx(3.0)
    assert "x_pythae" not in quiet and "x_quiet" not in quiet
    assert quiet["gflops"] == pytest.approx(60.0)
    assert (quiet["fraction_of_peak"], quiet["fraction_of_bf16_peak"]) == pytest.approx((0.6, 0.3))
    assert busy["x_tuned"] == pytest.approx(1.5)  # over the busy tuned loop's 200
    assert busy["x_quiet"] == pytest.approx(0.5)
    assert "x_plain" not in busy  # no busy plain loop: no ratio across conditions


def test_case_steps_scale_by_share_and_emulated_bf16(train_speed, monkeypatch):
    case = train_speed.CASES
    assert train_speed.case_steps(case["vaelab-conv-b128-1x2"], None) is None
    assert train_speed.case_steps(case["vaelab-conv-b128-1x2"], 150) == 45
    assert train_speed.case_steps(case["vaelab-mlp-b128-1x2"], 150) == 300
    assert train_speed.case_steps(case["vaelab-conv-b128-1x2-busy"], 150) == 15
    monkeypatch.setattr(train_speed, "native_bf16", lambda device: False)
    assert train_speed.case_steps(case["tuned-conv-b128"], 200) == 6
    assert train_speed.case_steps(case["tuned-fp32-conv-b128"], 200) == 60
    assert train_speed.case_steps(case["tuned-conv-b128"], 1) == 1
    monkeypatch.setattr(train_speed, "native_bf16", lambda device: True)
    assert train_speed.case_steps(case["tuned-conv-b128"], 200) == 60


def test_every_busy_case_has_its_quiet_case(train_speed):
    busy = [name for name, case in train_speed.DEFAULT_CASES.items() if case.busy]
    assert busy and all(name.removesuffix("-busy") in train_speed.DEFAULT_CASES for name in busy)


def test_execution_layout_is_the_last_line_vaelab_wrote(train_speed):
    log = ("cpu: 1 process x 2 threads (2 of 2 cores free), fp32, channels-last layout\nepoch 1  train loss 3\n"
           "cpu: 2 processes x 1 thread (fixed: --threads, or the count the run recorded), fp32, contiguous (NCHW) "
           "layout\n")
    assert train_speed.execution_layout(log) == "2x1"
    assert train_speed.execution_layout("epoch 1  train loss 3\n") is None


def epoch(number: int, loss: float) -> dict:
    return {"epoch": number, "seconds": 10.0, "test": {"loss": loss}}


def test_first_reached_takes_the_first_epoch_at_or_below_each_target(time_to_quality):
    history = [epoch(1, 50.0), epoch(2, 45.0), epoch(3, 44.5), epoch(4, 44.8)]
    walls = {1: 15.0, 2: 27.0, 3: 39.0, 4: 51.0}
    rows = time_to_quality.first_reached(history, walls, [46, 45, 44])
    assert rows[0] == {"target": 46, "reached": True, "epoch": 2, "test_loss": 45.0, "train_seconds": 20.0,
                       "wall_seconds": 27.0}
    assert rows[1]["reached"] and rows[1]["epoch"] == 2  # exactly at the target counts
    assert rows[2] == {"target": 44, "reached": False, "epoch": 3, "test_loss": 44.5, "train_seconds": 30.0,
                       "wall_seconds": 39.0}  # not reached: the best epoch and when it came


def test_first_reached_without_epochs(time_to_quality):
    assert time_to_quality.first_reached([], {}, [46]) == [{"target": 46, "reached": False}]


def test_epoch_line_matches_vaelabs_log(time_to_quality):
    match = time_to_quality.EPOCH_LINE.match
    assert match("epoch 12  train loss 44.1  test loss 44.3 (rec 40 + kl 4.3)  33.0 s  1800 img/s").group(1) == "12"
    assert match("epoch 3/16  train loss 50  test loss 51").group(1) == "3"
    assert not match("resuming runs/x at epoch 3 step 0")


def test_precision_pairs_count_bf16_better_in_each_measure_s_own_direction():
    precision_quality = script("precision_quality")
    rows = [{"model": "ae", "precision": p, "seed": seed, "steps": steps, "reconstruction_accuracy": rec,
             "knn_accuracy": knn, "test_loss": loss}
            for p, seed, steps, rec, knn, loss in [("fp32", 0, 100, 0.80, 0.70, 2.0), ("bf16", 0, 150, 0.82, 0.69, 1.5),
                                                   ("fp32", 1, 100, 0.80, 0.70, 2.0), ("bf16", 1, 140, 0.81, 0.72, 2.5),
                                                   ("fp32", 2, 100, 0.80, 0.70, 2.0)]]  # seed 2 has no pair
    pairs = precision_quality.paired(rows)
    assert pairs["ae.steps"] == {"differences": [50, 40], "mean": 45, "bf16_better": 2, "pairs": 2}
    assert pairs["ae.knn_accuracy"]["bf16_better"] == 1
    assert pairs["ae.test_loss"]["bf16_better"] == 1  # lower is better
    assert "vae.steps" not in pairs
    assert "2 of 2" in precision_quality.table(rows, pairs)
