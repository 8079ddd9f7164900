"""Several training runs at once on one machine: one process per run, the cores shared out between them.

A small network's step is too short for two threads to share well, and a multi-threaded process
collapses when a neighbour takes one of its cores (OpenMP threads spin waiting for each other), while
one single-threaded process per core keeps each run at its one-core speed. So on a CPU the runs go in
waves of as many processes as there are cores, each with cores // processes threads; on a GPU they go
one after another in this process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
from pathlib import Path

import torch

from vaelab.config import RunConfig
from vaelab.errors import VaelabError

log = logging.getLogger("vaelab")
POLL_SECONDS = 1.0  # how often the parent checks that no worker died without a word


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def plan(runs: int, device: torch.device) -> tuple[int, int]:
    """(processes, threads per process) for `runs` runs on `device`."""
    if device.type != "cpu" or runs <= 1:
        return 1, torch.get_num_threads()
    cores = available_cores()
    processes = max(1, min(runs, cores))
    return processes, max(1, cores // processes)


def waves(runs: int, processes: int) -> int:
    """How many rounds `runs` runs take with `processes` at a time: a study's time budget is split by it."""
    return -(-runs // processes)


def train_many(jobs: list[tuple[str, RunConfig, Path]], processes: int, threads: int,
               show_progress: bool = True) -> list[Path]:
    """Train (name, config, out) jobs, `processes` at a time; return the run folders in the jobs' order.
    Ctrl-C stops every run with a checkpoint, as a single `vaelab train` does. Worker processes log their
    epochs, prefixed with the run's name, instead of drawing progress bars over each other."""
    from vaelab.train.loop import train

    if processes == 1:
        return [train(config, out, show_progress=show_progress) for _, config, out in jobs]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited thread pools or locks
    results = context.Queue()
    pending = list(enumerate(jobs))
    running: dict[int, multiprocessing.Process] = {}
    level = log.getEffectiveLevel()
    try:
        while pending or running:
            while pending and len(running) < processes:
                index, (name, config, out) = pending.pop(0)
                worker = context.Process(target=train_job, name=name, daemon=False,
                                         args=(index, name, config.to_dict(), str(out), threads, level, results))
                worker.start()
                running[index] = worker
            try:
                index, status, message = results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                dead = [i for i, w in running.items() if w.exitcode not in (None, 0)]  # 0: its word is on the way
                if dead:
                    name = jobs[dead[0]][0]
                    raise VaelabError(f"training {name} stopped without a word (exit code {running[dead[0]].exitcode})")
                continue
            running.pop(index).join()
            if status == "interrupted":
                raise KeyboardInterrupt
            if status == "error":
                raise VaelabError(f"{jobs[index][0]}: {message}")
    except BaseException:
        for worker in running.values():  # each saves a checkpoint and stops
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGINT)
        for worker in running.values():
            worker.join()
        raise
    return [out for _, _, out in jobs]


def train_job(index: int, name: str, config: dict, out: str, threads: int, level: int, results) -> None:
    """One run in a worker process; the outcome goes back through `results`, never as an exception."""
    from vaelab.train.loop import TrainingInterrupted, train

    torch.set_num_threads(threads)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[{name}] %(message)s"))
    handler.addFilter(lambda record: record.module == "loop")  # its epochs, not the data's provenance again
    log.addHandler(handler)
    log.setLevel(level)
    try:
        train(RunConfig.from_dict(config), out, show_progress=False)
        results.put((index, "ok", ""))
    except (TrainingInterrupted, KeyboardInterrupt) as exc:
        results.put((index, "interrupted", str(exc)))
    except VaelabError as exc:
        results.put((index, "error", str(exc)))
