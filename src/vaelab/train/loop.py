"""The training loop: one epoch = slices of a permutation of one in-memory tensor.

    for each epoch:
        order = randperm(N)                        (saved in the checkpoint if we stop mid-epoch)
        for each batch of `order`:                 (this process's shard when distributed)
            x = pixels(images[batch])              (dynamic binarisation draws here)
            lr = base lr * schedule(how far through the run)
            loss = model.loss(x)["loss"]           (under bf16 autocast if asked); backward; Adam step
        test-set loss terms -> metrics.jsonl; weights + checkpoint written atomically

Two seeded generators drive all randomness: an order generator for the epoch
permutations (the same on every rank) and the global torch RNG for noise
(dynamic binarisation, reparameterisation; seeded per rank). Both are saved in
every checkpoint, so a run that is stopped and resumed ends with bitwise the
same weights as one that never stopped (same machine, CPU). Under torchrun the
same loop runs on every rank with a DDP-wrapped model (see distributed.py).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import platform
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors
import torch
from tqdm.auto import tqdm

from vaelab import __version__
from vaelab.config import RunConfig
from vaelab.data import ImageData, fixed_test_pixels, load_data, pixel_transform
from vaelab.errors import VaelabError
from vaelab.models import build_model, model_class
from vaelab.runs import (
    CHECKPOINT,
    CONFIG,
    Record,
    RunFolder,
    check_config,
    cpu_tensors,
    read_config,
    refuse_existing,
    repair_derived,
    tensors_sha256,
    write_json,
    write_metrics,
    write_weights,
)
from vaelab.train.checkpoint import Progress, load_checkpoint, save_checkpoint
from vaelab.train.cores import ThreadGovernor, same_at_thread_counts
from vaelab.train.distributed import Cluster, join, leave, rank_device, resolve_procs
from vaelab.train.evaluation import loss_terms
from vaelab.train.length import RunLength, format_duration
from vaelab.train.logs import TensorBoardLog, make_logger
from vaelab.train.speed import (
    autocast,
    check_levers,
    resolve_precision,
    set_learning_rate,
    set_memory_format,
    uses_channels_last,
)

log = logging.getLogger("vaelab")
NAN_CHECK_EVERY = 50  # steps between finiteness checks (each check is a device sync)


class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM: a checkpoint was saved; the run can be resumed."""

    @classmethod
    def at(cls, run_dir: Path, progress: Progress) -> "TrainingInterrupted":
        return cls(f"interrupted in epoch {progress.epoch + 1} after step {progress.step}; "
                   f"checkpoint saved - continue with: vaelab train --resume {run_dir}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise VaelabError(f"unknown device {name!r}; choose from: auto, cpu, cuda, mps")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaelabError("--device cuda: no CUDA GPU is available to this PyTorch build")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise VaelabError("--device mps: Apple's MPS backend is not available here")
    return torch.device(name)


FUSED_ADAM_SINCE = {"cuda": (2, 0), "cpu": (2, 4)}  # the torch version that has a fused Adam kernel per device


def make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """Adam (AdamW with a weight decay), fused into one kernel over all parameters where torch has it (the 2-D
    MLP VAE trains 8% faster on a CPU core: the optimiser step is about a tenth of its step time). Not for
    channels-last weights: a resumed optimiser's state comes back in the default layout, and the fused kernel
    then pairs the wrong elements (a resumed bf16 + channels-last conv run diverged from the uninterrupted one)."""
    device = next(model.parameters()).device.type
    version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    fused = (device in FUSED_ADAM_SINCE and version >= FUSED_ADAM_SINCE[device]
             and all(p.is_contiguous() for p in model.parameters()))
    adam = torch.optim.AdamW if config.train.weight_decay else torch.optim.Adam
    return adam(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay, fused=fused or None)


def versions() -> dict[str, str]:
    return {"vaelab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


@contextlib.contextmanager
def stop_requests():
    """Turn Ctrl-C and SIGTERM into a flag the loop checks between steps."""
    requested = {"signal": None}

    def handler(signum, frame):
        requested["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def epoch_batches(n: int, batch_size: int, permutation: torch.Tensor, start_step: int):
    """Index tensors for the batches of one epoch, from `start_step` on (the last may be short)."""
    for step in range(start_step, math.ceil(n / batch_size)):
        yield step, permutation[step * batch_size:(step + 1) * batch_size]


@dataclass
class Session:
    """Everything one training process holds: model, optimiser, data, RNGs, where it writes."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: ImageData
    config: RunConfig
    folder: RunFolder
    device: torch.device
    cluster: Cluster
    order_rng: torch.Generator  # epoch permutations: identical on every rank
    history: list[dict] = dataclasses.field(default_factory=list)  # finished epochs' metrics (rank 0)
    weights_sha256: str | None = None  # checksum of the last finished epoch's weights (rank 0)
    config_to_write: dict | None = None  # a resumed run's new config.json, written at its first commit
    logger: TensorBoardLog | None = None  # --log, rank 0 only: called per step, per epoch, per commit
    threads: ThreadGovernor | None = None  # re-counts the free cores as the run trains (`--threads auto`)

    def rng_states(self) -> dict[str, torch.Tensor]:
        """The generator states to checkpoint (a collective: every rank must call it)."""
        states = {"order": self.order_rng.get_state()}
        for rank, state in enumerate(self.cluster.gather(torch.get_rng_state())):
            states[f"noise.{rank}"] = state
        if self.device.type == "cuda":
            for rank, state in enumerate(self.cluster.gather(torch.cuda.get_rng_state(self.device))):
                states[f"cuda.{rank}"] = state
        return states

    def restore_rng(self, states: dict[str, torch.Tensor], epoch: int) -> None:
        self.order_rng.set_state(states["order"])
        rank = self.cluster.rank
        saved_world_size = sum(name.startswith("noise.") for name in states)
        if saved_world_size == self.cluster.world_size:
            torch.set_rng_state(states[f"noise.{rank}"])
            if self.device.type == "cuda" and f"cuda.{rank}" in states:
                torch.cuda.set_rng_state(states[f"cuda.{rank}"], self.device)
        else:  # resumed with another number of processes: a fresh, still reproducible noise stream
            log.warning("resuming with %d processes, not the checkpoint's: results will not be bitwise those "
                        "of an uninterrupted run", self.cluster.world_size)
            torch.manual_seed(noise_seed(self.config.train.seed, rank) + 1_000_003 * epoch)

    def save(self, progress: Progress, history: list[dict] | None) -> None:
        """Checkpoint; at an epoch's end (`history` given) also the weights and metrics derived from it.

        The checkpoint's rename is the one commit point: it carries the history and the weights' checksum,
        so the files written after it are repaired from it if a crash cuts them short (vaelab.runs).
        Rank 0 writes, the others wait."""
        rng = self.rng_states()
        if self.cluster.is_main:
            weights = cpu_tensors(self.model.state_dict()) if history is not None else None
            if weights is not None:
                self.history, self.weights_sha256 = history, tensors_sha256(weights)
            save_checkpoint(self.folder.path / CHECKPOINT, self.model, self.optimizer, progress, rng,
                            Record(self.history, self.weights_sha256))
            self.folder.commit()
            if self.config_to_write is not None:
                write_json(self.folder.path / CONFIG, self.config_to_write)
                self.config_to_write = None
            if weights is not None:
                write_weights(self.folder.path, weights)
                write_metrics(self.folder.path, self.history)
            if self.logger is not None:
                self.logger.commit(self.folder.path)
        self.cluster.barrier()


def noise_seed(seed: int, rank: int) -> int:
    """Rank 0 uses the run's seed, so a one-process run is the same with or without torchrun."""
    return seed + rank


def fit(session: Session, progress: Progress, show_progress: bool = True) -> Progress:
    """Train for the run's length (epochs, steps or time budget), checkpointing after each epoch."""
    model, optimizer, config, cluster = session.model, session.optimizer, session.config, session.cluster
    pixels = pixel_transform(config.data.pixels)
    test_x = fixed_test_pixels(session.data.test_images, config.data.pixels)
    test_labels = session.data.test_labels if model.takes_labels else None
    fits_prior = model.prior_fit_images > 0  # an AE's box, from the codes of the first training images
    prior_x = fixed_test_pixels(session.data.train_images[:model.prior_fit_images], config.data.pixels)
    # in-memory data moves to the device once; memory-mapped data stays on disk and each batch is gathered from it
    images = session.data.train_images.to(session.device) if session.data.in_memory else session.data.train_images
    # a conditional model gets each batch's labels (gathered only for it: other models train as before)
    labels = session.data.train_labels.to(session.device) if model.takes_labels else None
    n, batch_size = len(images), config.train.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    length = RunLength.of(config.train.epochs, config.train.steps, config.train.time_budget, steps_per_epoch)
    channels_last = uses_channels_last(model, config.train.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    history = session.history
    forward = model
    if cluster.distributed:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[session.device] if session.device.type == "cuda" else None)
    model.train()
    show_progress = show_progress and cluster.is_main
    clock_zero = time.perf_counter() - progress.elapsed_seconds  # the run's clock carries across resumes
    (seconds,) = cluster.maximum([time.perf_counter() - clock_zero])

    with stop_requests() as stop:
        while not length.done(progress.steps_done, seconds):
            epoch = progress.epoch + 1
            if progress.step == 0 or progress.permutation is None:
                progress = dataclasses.replace(progress, permutation=torch.randperm(n, generator=session.order_rng),
                                               step=0, sums={}, epoch_seconds=0.0)
            order = progress.permutation.to(session.device)
            sums = {k: torch.tensor(v, dtype=torch.float64) for k, v in own_sums(progress.sums, cluster).items()}
            zero = torch.zeros((), dtype=torch.float64)
            recent_losses: list[torch.Tensor] = []
            bar = tqdm(total=n, initial=min(progress.step * batch_size, n), unit="img", leave=False,
                       desc=f"epoch {epoch_label(epoch, config)}", dynamic_ncols=True,
                       disable=None if show_progress else True)  # None: off when not a terminal
            started = time.perf_counter()
            first_step = progress.step
            for step, batch in epoch_batches(n, batch_size, order, progress.step):
                index = cluster.shard(batch)
                if len(batch) >= cluster.world_size:  # every process needs an image (DDP waits for all of them)
                    rows = images[index] if images.device == index.device else images[index.cpu()].to(session.device)
                    x = pixels(rows).contiguous(memory_format=memory_format)
                    fraction = length.fraction(progress.steps_done, seconds)
                    set_learning_rate(optimizer, config.train.lr, config.train.lr_schedule, fraction)
                    with autocast(config.train.precision, session.device):
                        terms = forward(x, None if labels is None else labels[index.to(labels.device)],
                                        kl_weight=kl_warmup_weight(fraction, config.train.kl_warmup))
                    optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    optimizer.step()
                    for name, value in terms.items():
                        sums[name] = sums.get(name, zero) + value.detach().cpu().double() * len(index)
                    recent_losses.append(terms["loss"].detach())
                    if session.logger is not None:
                        session.logger.step(progress.steps_done + 1, terms)
                progress.step, progress.images_seen = step + 1, progress.images_seen + len(batch)
                progress.steps_done += 1
                if session.threads is not None:
                    session.threads.tick()
                if len(recent_losses) == NAN_CHECK_EVERY or progress.step == steps_per_epoch:
                    check_finite(recent_losses, epoch, progress.step, session)
                    recent_losses = []
                    seen = min(progress.step * batch_size, n)
                    bar.set_postfix({k: f"{v.item() / seen * cluster.world_size:.4g}" for k, v in sums.items()},
                                    refresh=False)
                bar.update(len(batch))
                seconds, stopping = cluster.maximum([time.perf_counter() - clock_zero,
                                                     float(stop["signal"] is not None)])
                if stopping:
                    check_finite(recent_losses, epoch, progress.step, session)
                    bar.close()
                    progress.sums = gathered_sums(sums, cluster)
                    progress.epoch_seconds += time.perf_counter() - started
                    progress.elapsed_seconds = seconds
                    session.save(progress, history=None)
                    raise TrainingInterrupted.at(session.folder.final, progress)
                if length.done(progress.steps_done, seconds):
                    check_finite(recent_losses, epoch, progress.step, session)
                    break  # the last epoch, cut short by the steps or the budget
            bar.close()
            if progress.step == first_step:  # the budget ran out as the epoch began: nothing to record
                break

            epoch_images = min(progress.step * batch_size, n)
            step_seconds = progress.epoch_seconds + time.perf_counter() - started
            names = sorted(sums)
            totals = cluster.sum(torch.stack([sums[k] for k in names])).tolist()
            train_means = {k: total / epoch_images for k, total in zip(names, totals)}
            progress = dataclasses.replace(progress, epoch=epoch, step=0, permutation=None, sums={},
                                           train_seconds=progress.train_seconds + step_seconds)
            if cluster.is_main:
                if fits_prior:
                    model.fit_prior(prior_x.to(session.device), config.train.eval_batch_size)
                test = loss_terms(model, test_x, config.train.eval_batch_size, labels=test_labels)
                history.append({"epoch": epoch, "train": train_means, "test": test, "seconds": round(step_seconds, 3),
                                "images": epoch_images, "images_per_s": round(epoch_images / step_seconds, 1),
                                "images_seen": progress.images_seen, "steps": progress.steps_done,
                                "processes": cluster.world_size, "threads": torch.get_num_threads()})
                if session.logger is not None:
                    session.logger.epoch(progress.steps_done, history[-1], model, test_x)
                log.info("epoch %s  train loss %.4g  test loss %.4g%s  %.1f s  %.0f img/s", epoch_label(epoch, config),
                         train_means["loss"], test["loss"],
                         f" (rec {test['reconstruction']:.4g} + kl {test['kl']:.4g})" if "kl" in test else "",
                         step_seconds, epoch_images / step_seconds)
            (seconds,) = cluster.maximum([time.perf_counter() - clock_zero])
            progress.elapsed_seconds = seconds
            session.save(progress, history)
    if config.train.time_budget is not None and cluster.is_main:
        log.info("the %s budget took %d steps; `--steps %d` replays that count exactly",
                 format_duration(config.train.time_budget), progress.steps_done, progress.steps_done)
    return progress


def gathered_sums(sums: dict[str, torch.Tensor], cluster: Cluster) -> dict[str, float]:
    """Every process's running sums of the unfinished epoch, for its checkpoint (a collective): rank 0's under the
    terms' names, rank r's under 'name@r', so that each process resumes with its own."""
    names = sorted(sums)
    if not names:  # stopped before the epoch's first step, on every rank alike
        return {}
    parts = cluster.gather(torch.stack([sums[k] for k in names]))
    return {(k if rank == 0 else f"{k}@{rank}"): v
            for rank, part in enumerate(parts) for k, v in zip(names, part.tolist())}


def own_sums(saved: dict[str, float], cluster: Cluster) -> dict[str, float]:
    """This process's part of a checkpoint's running sums; resumed with another number of processes, rank 0
    carries all of them, so the epoch's means still count every image once."""
    saved_ranks = 1 + max((int(k.rpartition("@")[2]) for k in saved if "@" in k), default=0)
    if saved_ranks == cluster.world_size:
        suffix = f"@{cluster.rank}"
        return ({k: v for k, v in saved.items() if "@" not in k} if cluster.rank == 0 else
                {k.rpartition("@")[0]: v for k, v in saved.items() if k.endswith(suffix)})
    totals: dict[str, float] = {}
    for key, value in saved.items() if cluster.rank == 0 else ():
        name = key.rpartition("@")[0] or key
        totals[name] = totals.get(name, 0.0) + value
    return totals


def kl_warmup_weight(fraction: float, warmup: float) -> float:
    """The KL term's weight at `fraction` of the run: rising linearly from 0 to 1 over the first `warmup` of it
    (Bowman et al. 2016; Sønderby et al. 2016), then 1, so the run ends on the model's own objective. Early on
    the decoder learns to use the codes before the KL pulls them together: the study's VAE ends with better
    separated classes in the same time (docs/training.md)."""
    return min(1.0, fraction / warmup) if warmup > 0 else 1.0


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def epoch_label(epoch: int, config: RunConfig) -> str:
    """'3/10' when the run is measured in epochs; '3' when steps or a time budget decide its length."""
    if config.train.steps is None and config.train.time_budget is None:
        return f"{epoch}/{config.train.epochs}"
    return str(epoch)


def check_finite(losses: list[torch.Tensor], epoch: int, last_step: int, session: Session) -> None:
    finite = torch.isfinite(torch.stack(losses)) if losses else torch.ones(1, dtype=torch.bool)
    if session.cluster.agree(not bool(finite.all())):
        folder = session.folder
        bad = (~finite).nonzero()
        where = f"step {last_step - len(losses) + 1 + int(bad[0])}" if len(bad) else "a step on another rank"
        value = torch.stack(losses)[~finite][0].item() if len(bad) else "non-finite"
        kept = (f"the last good checkpoint in {folder.final} is kept" if folder.path == folder.final
                else "no checkpoint had been written yet, so no run folder was left")
        raise VaelabError(f"loss became {value} in epoch {epoch}, {where}; training stopped and {kept}; "
                          f"try a lower --lr")


def build_for_training(config: RunConfig, device: torch.device) -> torch.nn.Module:
    """The run's model on `device`, in the memory layout it trains in."""
    return set_memory_format(build_model(config.model).to(device), config.train.channels_last)


def join_run(config: RunConfig) -> tuple[torch.device, Cluster]:
    """This process's device and its place in the run's group of processes (a group of one without torchrun)."""
    device = resolve_device(config.train.device)
    cluster = join(device)
    return rank_device(device, cluster), cluster


def training_data(config: RunConfig) -> ImageData:
    data = load_data(config.data)
    trains = config.train.epochs > 0 or config.train.steps is not None or config.train.time_budget is not None
    if not len(data.train_images) or (trains and not len(data.test_images)):  # each epoch ends with a test pass
        raise VaelabError(f"{data.name} has {len(data.train_images)} training and {len(data.test_images)} test "
                          f"images; training needs at least one of each")
    if model_class(config.model.model).takes_labels and not data.labelled:
        raise VaelabError(f"the {config.model.model} conditions on labels and {data.name} has none: "
                          "train an ae or a vae, or give it labelled images")
    return data


def launched(entry: str, args: tuple, kwargs: dict, config: RunConfig) -> bool:
    """Start the processes `--procs` asks for, unless this process is one of a group already; True if it did
    (the run has then trained in them, or their error or interruption has been raised here)."""
    procs = resolve_procs(config.train.procs, resolve_device(config.train.device))
    if procs == 1 or "WORLD_SIZE" in os.environ:
        return False
    from vaelab.train.parallel import launch

    launch(entry, args, kwargs, procs)
    return True


def thread_probe(model: torch.nn.Module, config: RunConfig, data: ImageData,
                 device: torch.device) -> Callable[[], list[torch.Tensor]]:
    """The run's arithmetic in miniature, for `same_at_thread_counts`: a training step's loss terms and gradients
    at each batch size an epoch uses (a full batch and the short last one), and the test pass's terms at each
    evaluation batch size. Each try trains a fresh copy of the model, so the run's own weights, gradients and
    buffers (BatchNorm's running statistics) are untouched and every try starts from the same state."""
    pixels = pixel_transform(config.data.pixels)
    memory_format = torch.channels_last if uses_channels_last(model, config.train.channels_last) else None
    n, batch = len(data.train_images), config.train.batch_size
    train_sizes = sorted({min(batch, n), n % batch} - {0})
    n_test, eval_batch = len(data.test_images), config.train.eval_batch_size
    n_probe_test = min(n_test, eval_batch + n_test % eval_batch)  # a full evaluation batch and the short last one
    test_x = fixed_test_pixels(data.test_images[:n_probe_test], config.data.pixels)
    test_labels = data.test_labels[:n_probe_test] if model.takes_labels else None

    def work() -> list[torch.Tensor]:
        probe, results = copy.deepcopy(model), []
        for size in train_sizes:
            x = pixels(data.train_images[:size].to(device))
            x = x.contiguous(memory_format=memory_format) if memory_format is not None else x
            labels = data.train_labels[:size].to(device) if probe.takes_labels else None
            with autocast(config.train.precision, device):
                terms = probe(x, labels, kl_weight=1.0)
            terms["loss"].backward()
            results += [value.detach() for value in terms.values()]
            results += [p.grad for p in probe.parameters() if p.grad is not None]
            probe.zero_grad(set_to_none=True)
        if n_probe_test:
            test = loss_terms(probe, test_x, eval_batch, labels=test_labels)
            results.append(torch.tensor([test[k] for k in sorted(test)], dtype=torch.float64))
        return results

    return work


THREAD_CHECKS: dict[tuple, bool] = {}  # a process checks each kind of run once: the kernels do not change within it


def start_threads(threads: ThreadGovernor, model: torch.nn.Module, config: RunConfig, data: ImageData,
                  cluster: Cluster, device: torch.device) -> tuple[RunConfig, str]:
    """Set the run's thread count (vaelab.train.cores) and record it in the config; returns how it was chosen.
    A DDP rank keeps the count it was given: its peers wait for the slowest rank anyway, and probing would be
    one more collective to agree on."""
    def invariant(counts) -> bool:
        if device.type != "cpu" or cluster.distributed:  # intra-op threads only matter on a CPU; DDP: see above
            return False
        t = config.train  # what picks the kernels: the network, precision, layout and the batch shapes
        key = (config.model, config.data.pixels, t.precision, t.channels_last, t.batch_size, t.eval_batch_size,
               len(data.train_images), len(data.test_images), tuple(counts))
        if key not in THREAD_CHECKS:
            THREAD_CHECKS[key] = same_at_thread_counts(thread_probe(model, config, data, device), counts)
        return THREAD_CHECKS[key]

    chosen = threads.start(invariant)
    return config.replace(train={"threads": threads.recorded}), chosen


def describe_execution(session: Session, threads: str) -> None:
    """One line: how the run uses the machine (processes x threads, precision, memory layout)."""
    if session.cluster.is_main:
        world = session.cluster.world_size
        layout = ("channels-last" if uses_channels_last(session.model, session.config.train.channels_last)
                  else "contiguous (NCHW)")
        log.info("%s: %d process%s x %s, %s, %s layout", session.device, world, "es" if world > 1 else "", threads,
                 session.config.train.precision, layout)


def on_main_first(cluster: Cluster, action) -> None:
    """Run a file-system step on rank 0; every rank fails together if it fails."""
    problem = None
    if cluster.is_main:
        try:
            action()
        except VaelabError as exc:
            problem = exc
    if cluster.agree(problem is not None):
        raise problem or VaelabError("rank 0 could not prepare the run folder")


def train(config: RunConfig, out: str | Path, *, show_progress: bool = True, logs: str | None = None) -> Path:
    """Train a new run into the folder `out` and return its path; `logs`: 'tensorboard[=DIR]' (vaelab.train.logs)."""
    config = check_config(config)
    check_levers(config.train.precision, config.train.lr_schedule)
    out = Path(out)
    refuse_existing(out)  # before the slow part; writability is tried once the config is known to be good
    if launched("train", (config, out), {"show_progress": show_progress, "logs": logs}, config):
        return out
    logger = make_logger(logs)
    threads = ThreadGovernor(config.train.threads)  # counts the free cores while the data loads
    device, cluster = join_run(config)
    folder = RunFolder(out, out)  # rank 0 makes it a locked staging folder
    try:
        def stage():
            nonlocal folder
            folder = RunFolder.staged(out)

        on_main_first(cluster, stage)  # the lock before the data: a second run into `out` stops here, in one line
        data = training_data(config)
        config = config.replace(data={"dataset": data.name},
                                model={"image_shape": data.image_shape, "n_classes": len(data.classes)},
                                train={"precision": resolve_precision(config.train.precision, device)})
        torch.manual_seed(noise_seed(config.train.seed, 0))  # the same initial weights on every rank
        model = build_for_training(config, device)
        config, chosen = start_threads(threads, model, config, data, cluster, device)
        if cluster.rank:
            torch.manual_seed(noise_seed(config.train.seed, cluster.rank))

        on_main_first(cluster, lambda: write_json(folder.path / CONFIG, {
            **config.to_dict(), "dataset_identity": data.identity(), "versions": versions(), "device": str(device),
            "world_size": cluster.world_size}))
        if cluster.is_main:
            log.info("training %s (%s, latent %d) on %s for %s -> %s", config.model.model,
                     config.model.arch, config.model.latent_dim, data.name,
                     RunLength.of(config.train.epochs, config.train.steps, config.train.time_budget, 1).described, out)
        session = Session(model, make_optimizer(model, config), data, config, folder, device, cluster,
                          torch.Generator().manual_seed(config.train.seed), logger=logger if cluster.is_main else None,
                          threads=threads)
        describe_execution(session, chosen)
        if config.train.epochs == 0:
            session.save(Progress(), [])
        fit(session, Progress(), show_progress)
        return folder.final
    finally:
        folder.close()  # removes the staging folder if nothing was committed; releases the lock
        leave(cluster)
        threads.stop()
        if logger is not None:
            logger.close()


def resume(run_dir: str | Path, epochs: int | None = None, *, steps: int | None = None,
           time_budget: float | None = None, show_progress: bool = True, logs: str | None = None) -> Path:
    """Continue a run from its checkpoint, optionally with a new length: a total number of epochs, of
    steps, or a time budget (the run's clock counts the time already spent)."""
    run_dir = Path(run_dir)
    config, raw = read_config(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise VaelabError(f"{run_dir} has no {CHECKPOINT} to resume from")
    if sum(x is not None for x in (epochs, steps, time_budget)) > 1:
        raise VaelabError("give one new length for the resumed run: --epochs, --steps or --time-budget")
    if epochs is not None or steps is not None or time_budget is not None:
        config = config.replace(train={"epochs": config.train.epochs if epochs is None else epochs,
                                       "steps": steps, "time_budget": time_budget})
    config = check_config(config)
    check_levers(config.train.precision, config.train.lr_schedule)
    if launched("resume", (run_dir, epochs), {"steps": steps, "time_budget": time_budget,
                                              "show_progress": show_progress, "logs": logs}, config):
        return run_dir
    logger = make_logger(logs)
    threads = ThreadGovernor(config.train.threads)
    device, cluster = join_run(config)
    folder = RunFolder(run_dir, run_dir)  # rank 0 locks it
    try:
        def prepare():
            nonlocal folder
            folder = RunFolder.existing(run_dir)
            repair_derived(run_dir)

        on_main_first(cluster, prepare)  # the lock before the data, as for a new run
        data = training_data(config)
        if data.identity()["sha256"] != raw.get("dataset_identity", {}).get("sha256"):
            raise VaelabError(f"the {data.name} data found now differs from the data {run_dir} was trained on "
                              f"(checksum mismatch); point --data-dir at the original files")
        model = build_for_training(config, device)
        optimizer = make_optimizer(model, config)
        progress, rng, record = load_checkpoint(run_dir / CHECKPOINT, model, optimizer, len(data.train_images),
                                                config.train.batch_size)
        steps_per_epoch = math.ceil(len(data.train_images) / config.train.batch_size)
        length = RunLength.of(config.train.epochs, config.train.steps, config.train.time_budget, steps_per_epoch)
        if length.done(progress.steps_done, progress.elapsed_seconds) and progress.step == 0:
            log.info("%s has already trained for %s (%s, %s); nothing to do (pass --epochs, --steps or "
                     "--time-budget to train longer)", run_dir, length.described, plural(progress.epoch, "epoch"),
                     plural(progress.steps_done, "step"))
            return run_dir
        config, chosen = start_threads(threads, model, config, data, cluster, device)
        changed = json.loads(json.dumps({**raw, **config.to_dict()}))  # as config.json holds it
        session = Session(model, optimizer, data, config, folder, device, cluster, torch.Generator(),
                          record.history, record.weights_sha256, changed if changed != raw else None,
                          logger if cluster.is_main else None, threads)
        session.restore_rng(rng, progress.epoch)
        if cluster.is_main:
            log.info("resuming %s at epoch %d step %d, to %s", run_dir, progress.epoch + 1, progress.step,
                     length.described)
        describe_execution(session, chosen)
        fit(session, progress, show_progress)
        return run_dir
    finally:
        folder.close()
        leave(cluster)
        threads.stop()
        if logger is not None:
            logger.close()
