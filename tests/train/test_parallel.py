"""Several runs at once: one single-threaded process per core, outcomes and errors carried back."""

import multiprocessing
from types import SimpleNamespace

import pytest
import torch
from test_training import assert_same_weights, tiny_config

import vaelab
from vaelab.errors import VaelabError
from vaelab.train import parallel
from vaelab.train.parallel import plan, train_many, waves


def test_plan_gives_each_core_a_run_and_threads_from_the_free_cores(monkeypatch):
    def machine(cores, free):
        monkeypatch.setattr(parallel, "CoreMeter", lambda: SimpleNamespace(cores=set(range(cores)), free=lambda: free))

    cpu = torch.device("cpu")
    machine(2, 2)
    assert plan(2, cpu) == (2, 1) and plan(6, cpu) == (2, 1)
    assert plan(1, cpu)[0] == 1
    machine(8, 8)
    assert plan(2, cpu) == (2, 4) and plan(3, cpu) == (3, 2)
    machine(8, 5)  # other programs keep three cores busy
    assert plan(2, cpu) == (2, 2) and plan(8, cpu) == (8, 1)
    machine(2, 1)  # a busy neighbour on 2 cores: single-threaded runs still share the cores
    assert plan(2, cpu) == (2, 1)
    assert plan(4, torch.device("cuda")) == (1, torch.get_num_threads())  # one GPU: one run after another
    assert [waves(n, 2) for n in (1, 2, 3, 6)] == [1, 1, 2, 3]


def test_runs_in_worker_processes_equal_runs_in_this_one(tiny_data_dir, tmp_path):
    config = tiny_config(tiny_data_dir, epochs=1)
    jobs = [("a", config, tmp_path / "a"), ("b", config.replace(train={"seed": 8}), tmp_path / "b"),
            ("c", config, tmp_path / "c")]
    assert train_many(jobs, processes=2, threads=1) == [tmp_path / n for n in "abc"]
    here = vaelab.train(config, tmp_path / "here", show_progress=False)
    assert_same_weights(here, tmp_path / "a")
    assert_same_weights(tmp_path / "a", tmp_path / "c")


def test_a_workers_error_names_its_run_and_stops_the_others(tiny_data_dir, tmp_path):
    good = tiny_config(tiny_data_dir, epochs=1)
    bad = good.replace(data={"data_dir": str(tmp_path / "nowhere")})
    with pytest.raises(VaelabError, match="^broken: "):
        train_many([("fine", good, tmp_path / "fine"), ("broken", bad, tmp_path / "broken")], processes=2,
                   threads=1)
    assert not (tmp_path / "broken").exists()


def test_a_killed_worker_is_named_in_one_error_and_the_others_are_stopped(tiny_data_dir, tmp_path, monkeypatch):
    """Each worker is SIGKILLed while writing its first checkpoint: the study ends with one error naming a run,
    no worker is left behind, and the folders hold nothing half-written (the staging folders are removed on the
    next run's start, as for a killed `vaelab train`)."""
    monkeypatch.setenv("VAELAB_FAULT", "checkpoint.safetensors:during@1")  # spawned workers inherit it
    config = tiny_config(tiny_data_dir, epochs=2)
    with pytest.raises(VaelabError, match=r"^training (a|b) stopped without a word \(exit code -9\)"):
        train_many([("a", config, tmp_path / "a"), ("b", config, tmp_path / "b")], processes=2, threads=1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert multiprocessing.active_children() == []
