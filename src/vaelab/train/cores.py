"""How many compute threads a process gets: the cores other programs leave free, not the cores there are --
where that is proven not to change what the run computes.

A multi-threaded torch process collapses when another program takes one of its cores: its OpenMP
threads wait for the one that lost its core (issue 12, the book VAE on 2 cores: 2 threads 1,737 img/s
alone and 495 beside one busy process, while 1 thread keeps 1,014). So `threads="auto"` counts the
cores the neighbours keep busy -- the machine's busy time on this process's cores minus this process's
own CPU time -- when a run starts and again every RECHECK_SECONDS while it trains, and runs at most
that many threads (never more than the process had when the run began: a worker given one core keeps
one).

Following the load is only safe where the thread count does not change the numbers, and that is a
property of the kernels, not of vaelab: on an AVX2 EPYC the MLP and the conv net gave bitwise the same
step with 1 and 2 threads; on an AVX-512 (bf16) EPYC the conv net and the LayerNorm MLP do not (their
weight-gradient reductions are split by thread), and `mlp-ln` does not under AVX2 kernels either. So a
run checks it when it starts (`same_at_thread_counts`: its own step and test pass, at every batch shape
it will use, at 1 thread and at all of them) and follows the load only if they agree bitwise. Where they
do not, `auto` fixes the count at the cores the process was given -- a number that does not depend on
the load, so a fresh run, a `--steps` replay and a resume compute the same -- and the run records it in
config.json like any fixed `--threads N`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence

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


def same_at_thread_counts(work: Callable[[], Sequence[torch.Tensor]], counts: Sequence[int]) -> bool:
    """Whether `work()` gives bitwise the same tensors at each thread count. Each try starts from the same
    random state (and leaves the caller's untouched), so only the kernels' thread split can differ."""
    before, results = torch.get_num_threads(), []
    try:
        for threads in counts:
            torch.set_num_threads(threads)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                results.append([t.detach().cpu() for t in work()])
    finally:
        torch.set_num_threads(before)
    first = results[0]
    return all(len(r) == len(first) and all(torch.equal(a, b) for a, b in zip(first, r)) for r in results[1:])


class ThreadGovernor:
    """Keeps this process's torch threads at the free cores (`auto`, where proven harmless) or at a fixed
    count, for one run.

    `start` sets the count as the run begins; `tick`, called once per step, re-counts every RECHECK_SECONDS
    when the count follows the load; `stop` gives the process back the count it had before. `recorded` is
    what config.json keeps: `auto` only while the count follows the load, else the fixed count."""

    def __init__(self, setting, meter: CoreMeter | None = None):
        self.setting, self.meter = setting, meter or CoreMeter()
        self.before = torch.get_num_threads()
        self.ceiling = self.before if setting == AUTO else setting
        self.threads = self.ceiling
        self.follows_load = False
        self.next_check = math.inf  # when tick re-counts: never, unless start chose to follow the load

    @property
    def recorded(self) -> int | str:
        return AUTO if self.follows_load else self.threads

    def start(self, invariant: Callable[[Sequence[int]], bool] | None = None) -> str:
        """Set the run's thread count; returns how it was chosen, for the run's first log line. `invariant`
        says whether the run computes the same at the given thread counts (None: the caller vouches for it)."""
        if self.setting != AUTO:
            self.apply(self.setting)
            return f"{plural_threads(self.threads)} (fixed: --threads, or the count the run recorded)"
        if self.ceiling == 1:  # one thread is all this process was given (OMP_NUM_THREADS, or a worker's share)
            self.apply(1)
            return "1 thread"
        if invariant is not None and not invariant([1, self.ceiling]):
            self.apply(self.ceiling)
            return (f"{plural_threads(self.ceiling)}, fixed: on this CPU the run's numbers differ between 1 and "
                    f"{self.ceiling} threads, so the count does not follow the load (--threads 1 leaves a core free)")
        free = self.meter.free()
        self.follows_load = True
        self.apply(min(self.ceiling, free))
        self.next_check = time.perf_counter() + RECHECK_SECONDS
        return f"{plural_threads(self.threads)} ({free} of {len(self.meter.cores)} cores free)"

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


def plural_threads(count: int) -> str:
    return f"{count} thread{'s' if count > 1 else ''}"


@contextlib.contextmanager
def on_free_cores():
    """Run a block (measuring, evaluating: no steps to re-count at) on the threads the free cores allow now."""
    governor = ThreadGovernor(AUTO)
    governor.start()
    try:
        yield
    finally:
        governor.stop()
