"""Training in worker processes: several runs at once, or one run as a DDP group on this machine.

Several runs: a small network's step is too short for two threads to share well, and a multi-threaded
process collapses when a neighbour takes one of its cores (OpenMP threads spin waiting for each other),
while one single-threaded process per core keeps each run at its one-core speed. So on a CPU the runs go
in waves of as many processes as there are cores, each with free cores // processes threads (at least one);
on a GPU they go one after another in this process.

One run, `--procs N`: N processes of this machine train it together as torchrun would start them
(`launch`), over gloo on a CPU or nccl with one GPU each; the training loop does the rest (distributed.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
from pathlib import Path

import torch

from vaelab.config import RunConfig
from vaelab.errors import VaelabError, os_error
from vaelab.train.cores import CoreMeter, free_cores

log = logging.getLogger("vaelab")
POLL_SECONDS = 1.0  # how often the parent checks that no worker died without a word
STOP_GRACE_SECONDS = 60.0  # how long stopping workers get to agree and save their checkpoint before they are killed


def plan(runs: int, device: torch.device) -> tuple[int, int]:
    """(processes, threads per process) for `runs` runs on `device`. Single-threaded processes share a core
    without waiting for each other, so there are as many as cores (and runs); only threads beyond one per
    process are limited to the free cores, since a multi-threaded process collapses beside a neighbour."""
    if device.type != "cpu" or runs <= 1:
        return 1, torch.get_num_threads()
    meter = CoreMeter()
    processes = max(1, min(runs, len(meter.cores)))
    return processes, max(1, meter.free() // processes)


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
    pending = list(enumerate(jobs))
    workers: dict[int, Worker] = {}
    outcomes: dict[int, tuple[str, str]] = {}
    level = log.getEffectiveLevel()
    try:
        while pending or len(outcomes) < len(workers):
            while pending and len(workers) - len(outcomes) < processes:
                index, (name, config, out) = pending.pop(0)
                workers[index] = start_worker(context, train_job, f"training {name}",
                                              (name, config.to_dict(), str(out), threads, level))
            collect(workers, outcomes, first=True)
            failed = [(i, status, message) for i, (status, message) in outcomes.items() if status != "ok"]
            if failed:  # the first word that is not "ok" ends the study, as one process's would
                index, status, message = failed[0]
                if status == "interrupted":
                    raise KeyboardInterrupt
                raise VaelabError(f"{jobs[index][0]}: {message}")
    except BaseException:
        stop(workers, outcomes)  # each saves a checkpoint and stops
        raise
    finally:
        release(workers)
    return [out for _, _, out in jobs]


def train_job(name: str, config: dict, out: str, threads: int, level: int, outcome) -> None:
    """One run in a worker process; the outcome goes back through its pipe, never as an exception."""
    from vaelab.train.loop import train

    torch.set_num_threads(threads)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[{name}] %(message)s"))
    handler.addFilter(lambda record: record.module == "loop")  # its epochs, not the data's provenance again
    log.addHandler(handler)
    log.setLevel(level)
    send_outcome(outcome, lambda: train(RunConfig.from_dict(config), out, show_progress=False))


def send_outcome(outcome, work) -> None:
    """Run `work()` in a worker and send the parent one (status, message): ok, interrupted (a checkpoint was
    saved; the message says where and how to resume) or error (the one line the parent prints)."""
    from vaelab.train.loop import TrainingInterrupted

    try:
        work()
        outcome.send(("ok", ""))
    except (TrainingInterrupted, KeyboardInterrupt) as exc:
        outcome.send(("interrupted", str(exc)))
    except VaelabError as exc:
        outcome.send(("error", str(exc)))
    except OSError as exc:
        outcome.send(("error", os_error(exc)))


def launch(entry: str, args: tuple, kwargs: dict, world_size: int) -> None:
    """Run `vaelab.train.loop.<entry>(*args, **kwargs)` (train or resume) in `world_size` fresh processes that
    form one DDP group, with the environment torchrun would give them; each gets its share of the free cores.
    Errors, Ctrl-C and a rank that dies come back as they would from one process."""
    cores = free_cores()
    if world_size > cores:
        log.warning("%d processes on %d free core%s: they will wait for each other; fewer processes would be faster",
                    world_size, cores, "s" if cores > 1 else "")
    threads = max(1, min(torch.get_num_threads(), cores) // world_size)
    context = multiprocessing.get_context("spawn")
    port, level = free_port(), log.getEffectiveLevel()
    workers: dict[int, Worker] = {}
    outcomes: dict[int, tuple[str, str]] = {}
    try:
        for rank in range(world_size):
            workers[rank] = start_worker(context, rank_job, f"training process {rank} of {world_size}",
                                         (rank, world_size, port, threads, entry, args, kwargs, level))
        collect(workers, outcomes)
    except BaseException as exc:  # Ctrl-C here, or a rank died: the others stop with a checkpoint if they can
        stop(workers, outcomes)
        if isinstance(exc, KeyboardInterrupt):  # the ranks' own word says where they stopped and how to go on
            raise_outcome(outcomes)
        raise
    finally:
        release(workers)
    raise_outcome(outcomes)


def raise_outcome(outcomes: dict[int, tuple[str, str]]) -> None:
    """The group's outcome as one process would give it: the first rank's error, else its interruption."""
    from vaelab.train.loop import TrainingInterrupted

    errors = [message for status, message in (outcomes[r] for r in sorted(outcomes)) if status == "error"]
    if errors:
        raise VaelabError(errors[0])
    interrupted = [message for status, message in outcomes.values() if status == "interrupted" and message]
    if interrupted:
        raise TrainingInterrupted(interrupted[0])


# --- supervising worker processes: one pipe each, so a killed worker cannot leave a shared queue's lock held ---
Worker = tuple[multiprocessing.Process, multiprocessing.connection.Connection]


def start_worker(context, target, name: str, args: tuple) -> Worker:
    """Start `target(*args, outcome)` in a fresh process; it sends one (status, message) through `outcome`."""
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=target, name=name, daemon=False, args=(*args, writer))
    process.start()
    writer.close()  # the worker holds the only writing end: its exit closes the pipe
    return process, reader


def collect(workers: dict[int, Worker], outcomes: dict, deadline: float | None = None, quiet: bool = False,
            first: bool = False) -> None:
    """Wait for the (status, message) of every worker not yet in `outcomes` (with `first`, of the next one to
    answer; or until `deadline` seconds). A worker that dies without one is an error naming it, or, when
    `quiet`, an outcome of its own."""
    waited, answered = 0.0, len(outcomes)
    while len(outcomes) < len(workers) and (deadline is None or waited < deadline):
        if first and len(outcomes) > answered:
            return
        waiting = {reader: key for key, (_, reader) in workers.items() if key not in outcomes}
        ready = multiprocessing.connection.wait(list(waiting), timeout=POLL_SECONDS)
        for reader in ready:
            key = waiting[reader]
            try:
                outcomes[key] = reader.recv()
            except EOFError:  # it exited without a word
                process = workers[key][0]
                process.join()
                if not quiet:
                    raise VaelabError(f"{process.name} stopped without a word (exit code {process.exitcode}); "
                                      f"the others were stopped") from None
                outcomes[key] = ("died", "")
        waited += 0 if ready else POLL_SECONDS


def stop(workers: dict[int, Worker], outcomes: dict) -> None:
    """Ask every worker still at work to stop (each saves a checkpoint), and hear what each says."""
    for key, (process, _) in workers.items():
        if key not in outcomes and process.is_alive():
            os.kill(process.pid, signal.SIGINT)
    collect(workers, outcomes, deadline=STOP_GRACE_SECONDS, quiet=True)


def release(workers: dict[int, Worker]) -> None:
    for process, reader in workers.values():
        process.join(timeout=STOP_GRACE_SECONDS)
        if process.is_alive():  # stuck in a collective with a dead peer, or deaf to the stop
            process.kill()
            process.join()
        reader.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_job(rank: int, world_size: int, port: int, threads: int, entry: str, args: tuple, kwargs: dict,
             level: int, outcome) -> None:
    """One rank of a launched group: torchrun's environment, this rank's threads, its outcome back through a pipe."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    logging.basicConfig(level=level if rank == 0 else logging.WARNING, format="%(message)s")
    from vaelab.train import loop

    def work():
        try:
            getattr(loop, entry)(*args, **kwargs)
        except RuntimeError as exc:  # a collective whose peer is gone: the parent names the rank that died
            raise VaelabError(f"training process {rank}: {str(exc).splitlines()[0][:300]}") from None

    send_outcome(outcome, work)
