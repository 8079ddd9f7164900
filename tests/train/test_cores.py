"""Thread counts from the free cores: counting neighbours, choosing and re-choosing, and why changing is safe."""

import logging
import subprocess
import sys
import time

import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.models import build_model
from vaelab.train import cores
from vaelab.train.cores import CoreMeter, ThreadGovernor, free_of


class ScriptedMeter:
    """A CoreMeter whose neighbours' load is read from a list, one value per reading."""

    def __init__(self, loads, n_cores=2):
        self.cores, self.loads = set(range(n_cores)), list(loads)

    def neighbours(self):
        return self.loads.pop(0)

    def free(self):
        return free_of(len(self.cores), self.neighbours())


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_neighbour_takes_a_core_from_six_tenths_of_one():
    assert [free_of(2, load) for load in (None, 0.0, 0.59, 0.6, 1.0, 1.5, 1.6, 9.0)] == [2, 2, 2, 1, 1, 1, 1, 1]
    assert free_of(8, 2.7) == 5


def test_auto_runs_on_the_free_cores_and_follows_them(monkeypatch, caplog):
    torch.set_num_threads(2)
    monkeypatch.setattr(cores, "RECHECK_SECONDS", 0.0)
    governor = ThreadGovernor("auto", ScriptedMeter([1.0, 0.9, 0.1, 0.2]))
    assert governor.start() == "1 thread (1 of 2 cores free)" and torch.get_num_threads() == 1
    with caplog.at_level(logging.INFO, logger="vaelab"):
        governor.tick()  # still busy
        assert torch.get_num_threads() == 1
        governor.tick()  # the neighbour left
        assert torch.get_num_threads() == 2 and "cores came free: 2 compute threads now" in caplog.text
        governor.tick()
        assert torch.get_num_threads() == 2
    governor.stop()
    assert torch.get_num_threads() == 2


def test_auto_never_exceeds_what_the_process_was_given():
    torch.set_num_threads(1)  # a worker given one core, or OMP_NUM_THREADS=1
    governor = ThreadGovernor("auto", ScriptedMeter([]))  # never asked
    assert governor.start() == "1 thread" and torch.get_num_threads() == 1


def test_a_fixed_count_is_kept_and_given_back(monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setattr(cores, "RECHECK_SECONDS", 0.0)
    governor = ThreadGovernor(1, ScriptedMeter([]))
    assert governor.start() == "1 thread (--threads)"
    governor.tick()
    assert torch.get_num_threads() == 1
    governor.stop()
    assert torch.get_num_threads() == 2


def test_the_meter_counts_the_machines_busy_time_less_this_process(monkeypatch):
    readings = iter([(0.0, 10.0, 3.0), (2.0, 13.0, 4.0)])  # (wall, busy seconds of the cores, own CPU seconds)
    monkeypatch.setattr(CoreMeter, "read", lambda self: next(readings))
    assert CoreMeter().neighbours() == pytest.approx((3.0 - 1.0) / 2.0)


@pytest.mark.skipif(cores.busy_seconds({0}) is None, reason="needs Linux /proc/stat")
def test_the_meter_sees_a_busy_neighbour():
    meter = CoreMeter()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # past its start-up
        meter.neighbours()
        time.sleep(0.5)
        assert meter.neighbours() >= 0.6
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_a_training_step_gives_bitwise_the_same_weights_with_one_or_two_threads(arch):
    """Why `auto` may change the thread count mid-run and a resumed run is still bitwise the uninterrupted one."""
    def train(threads):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="vae", arch=arch)).to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        x = torch.rand(4, 64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        for batch in x:
            optimizer.zero_grad()
            model.loss(batch.contiguous(memory_format=torch.channels_last))["loss"].backward()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(train(1), train(2))


def test_measuring_runs_on_the_free_cores_and_gives_the_threads_back(monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setattr(cores, "CoreMeter", lambda: ScriptedMeter([1.0]))
    with cores.on_free_cores():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_each_epoch_records_its_processes_and_threads(tiny_data_dir, tmp_path):
    from test_training import tiny_config

    import vaelab
    from vaelab.runs import read_metrics

    run = vaelab.train(tiny_config(tiny_data_dir, epochs=1).replace(train={"threads": 1}), tmp_path / "run",
                       show_progress=False)
    assert [(e["processes"], e["threads"]) for e in read_metrics(run)] == [(1, 1)]
