"""How many compute threads a process gets: the cores other programs leave free, not the cores there are.

A multi-threaded torch process collapses when another program takes one of its cores: its OpenMP
threads wait for the one that lost its core (issue 12, the book VAE on 2 cores: 2 threads 1,737 img/s
alone and 495 beside one busy process, while 1 thread keeps 1,014). So `threads="auto"` counts the
cores the neighbours keep busy -- the machine's busy time on this process's cores minus this process's
own CPU time -- when a run starts and again every RECHECK_SECONDS while it trains, and runs at most
that many threads (never more than the process had when the run began: a worker given one core keeps
one). Changing the thread count does not change the numbers on the CPUs measured (bitwise the same
weights with 1 or 2 threads, tests/train/test_cores.py), so a run may adapt mid-way and still resume
bitwise; pass `--threads N` to fix the count.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time

import torch

log = logging.getLogger("vaelab")
AUTO = "auto"
PROBE_SECONDS = 0.1  # the shortest window a start-up count is taken over (/proc/stat ticks are 10 ms)
RECHECK_SECONDS = 2.0  # how often a training process re-counts while it runs
TAKEN_FROM = 0.6  # a neighbour busy for this fraction of a core or more takes that core


def busy_seconds(cores: set[int]) -> float | None:
    """Seconds the given cores have spent running anything since boot (Linux /proc/stat); None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            lines = [line.split() for line in stat if line.startswith("cpu") and line[3].isdigit()]
    except OSError:
        return None
    ticks = 0
    for name, user, nice, system, idle, iowait, irq, softirq, steal, *_ in lines:
        if int(name[3:]) in cores:  # steal: a hypervisor gave the core to someone else, so it was not free
            ticks += int(user) + int(nice) + int(system) + int(irq) + int(softirq) + int(steal)
    return ticks / os.sysconf("SC_CLK_TCK")


class CoreMeter:
    """Counts the cores other processes kept busy between two readings."""

    def __init__(self):
        # the cores this process may run on: its affinity mask where the OS has one
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        self.cores = set(affinity)
        self.reading = self.read()

    def read(self) -> tuple[float, float | None, float]:
        return time.perf_counter(), busy_seconds(self.cores), time.process_time()

    def neighbours(self) -> float | None:
        """Cores' worth of other processes' work since the last call (None where it cannot be measured)."""
        (wall0, busy0, own0), (wall1, busy1, own1) = self.reading, self.read()
        self.reading = (wall1, busy1, own1)
        if busy0 is None or busy1 is None or wall1 <= wall0:
            return None
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)

    def free(self) -> int:
        """The cores left to this process now (at least one)."""
        wait = PROBE_SECONDS - (time.perf_counter() - self.reading[0])
        if wait > 0:
            time.sleep(wait)
        return free_of(len(self.cores), self.neighbours())


def free_of(cores: int, neighbours: float | None) -> int:
    """Cores minus those the neighbours take (a neighbour needs TAKEN_FROM of a core to count), at least 1."""
    if neighbours is None:
        return cores
    return max(1, cores - int(neighbours + 1 - TAKEN_FROM))


def free_cores() -> int:
    """The cores other programs leave free, counted over a short probe."""
    return CoreMeter().free()


class ThreadGovernor:
    """Keeps this process's torch threads at the free cores (`auto`) or at a fixed count, for one run.

    `start` sets the count as the run begins; `tick`, called once per step, re-counts every RECHECK_SECONDS;
    `stop` gives the process back the count it had before."""

    def __init__(self, setting, meter: CoreMeter | None = None):
        self.setting, self.meter = setting, meter or CoreMeter()
        self.before = torch.get_num_threads()
        self.ceiling = self.before if setting == AUTO else setting
        self.threads = self.ceiling
        self.next_check = math.inf  # when tick re-counts: never, unless start chose `auto` with cores to choose from

    def start(self) -> str:
        """Set the run's thread count; returns how it was chosen, for the run's first log line."""
        if self.setting != AUTO:
            self.apply(self.setting)
            return f"{self.threads} thread{'s' if self.threads > 1 else ''} (--threads)"
        if self.ceiling == 1:  # one thread is all this process was given (OMP_NUM_THREADS, or a worker's share)
            self.apply(1)
            return "1 thread"
        free = self.meter.free()
        self.apply(min(self.ceiling, free))
        self.next_check = time.perf_counter() + RECHECK_SECONDS
        cores = len(self.meter.cores)
        return f"{self.threads} thread{'s' if self.threads > 1 else ''} ({free} of {cores} cores free)"

    def tick(self) -> None:
        """Called every step: one clock read, and a re-count when it is due."""
        now = time.perf_counter()
        if now < self.next_check:
            return
        self.next_check = now + RECHECK_SECONDS
        neighbours = self.meter.neighbours()
        threads = min(self.ceiling, free_of(len(self.meter.cores), neighbours))
        if threads != self.threads:
            log.info("%s: %d compute thread%s now", "other programs took cores" if threads < self.threads
                     else "cores came free", threads, "s" if threads > 1 else "")
            self.apply(threads)

    def apply(self, threads: int) -> None:
        self.threads = threads
        torch.set_num_threads(threads)

    def stop(self) -> None:
        torch.set_num_threads(self.before)


@contextlib.contextmanager
def on_free_cores():
    """Run a block (measuring, evaluating: no steps to re-count at) on the threads the free cores allow now."""
    governor = ThreadGovernor(AUTO)
    governor.start()
    try:
        yield
    finally:
        governor.stop()
