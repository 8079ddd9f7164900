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
import dataclasses
import logging
import math
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors
import torch
from tqdm.auto import tqdm

from vaelab import __version__
from vaelab.config import RunConfig, validate
from vaelab.data import ImageData, fixed_test_pixels, load_dataset, pixel_transform
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.runs import (
    CHECKPOINT,
    CONFIG,
    WEIGHTS,
    check_writable_folder,
    read_config,
    read_metrics,
    refuse_existing,
    write_json,
    write_metrics,
    write_tensors,
)
from vaelab.train.checkpoint import Progress, load_checkpoint, save_checkpoint
from vaelab.train.distributed import Cluster, join, leave, rank_device
from vaelab.train.evaluation import loss_terms
from vaelab.train.speed import autocast, check_levers, resolve_precision, set_learning_rate, set_memory_format

log = logging.getLogger("vaelab")
NAN_CHECK_EVERY = 50  # steps between finiteness checks (each check is a device sync)
PRIOR_FIT_IMAGES = 10_000  # training images whose codes define an AE's sampling box


class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM: a checkpoint was saved; the run can be resumed."""

    def __init__(self, run_dir: Path, progress: Progress):
        super().__init__(f"interrupted in epoch {progress.epoch + 1} after step {progress.step}; "
                         f"checkpoint saved - continue with: vaelab train --resume {run_dir}")
        self.run_dir = run_dir


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


def make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=config.train.lr)


def versions() -> dict[str, str]:
    return {"vaelab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


@dataclass
class RunFolder:
    """Where a run writes. A new run lives in a hidden staging folder until its first
    checkpoint, then is renamed into place: a run that fails early leaves nothing behind."""

    path: Path
    final: Path

    @classmethod
    def staged(cls, out: Path) -> "RunFolder":
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.parent / f".{out.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        return cls(staging, out)

    def commit(self) -> None:
        if self.path != self.final:
            if self.final.exists():  # an empty folder the user made beforehand
                self.final.rmdir()
            os.replace(self.path, self.final)
            self.path = self.final

    def discard(self) -> None:
        if self.path != self.final:
            shutil.rmtree(self.path, ignore_errors=True)


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
        """Checkpoint (and, at an epoch's end, weights and metrics); rank 0 writes, the others wait."""
        rng = self.rng_states()
        if self.cluster.is_main:
            save_checkpoint(self.folder.path / CHECKPOINT, self.model, self.optimizer, progress, rng)
            if history is not None:
                write_tensors(self.folder.path / WEIGHTS, self.model.state_dict(), {"format": "vaelab-weights-1"})
                write_metrics(self.folder.path, history)
            self.folder.commit()
        self.cluster.barrier()


def noise_seed(seed: int, rank: int) -> int:
    """Rank 0 uses the run's seed, so a one-process run is the same with or without torchrun."""
    return seed + rank


def fit(session: Session, progress: Progress, show_progress: bool = True) -> Progress:
    """Train until `config.train.epochs` epochs are done, checkpointing after each epoch."""
    model, optimizer, config, cluster = session.model, session.optimizer, session.config, session.cluster
    pixels = pixel_transform(config.data.pixels)
    test_x = fixed_test_pixels(session.data.test_images, config.data.pixels)
    prior_x = fixed_test_pixels(session.data.train_images[:PRIOR_FIT_IMAGES], config.data.pixels)
    images = session.data.train_images.to(session.device)
    n, batch_size = len(images), config.train.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = config.train.epochs * steps_per_epoch
    memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
    history = read_metrics(session.folder.path)[: progress.epoch] if cluster.is_main else []
    forward = model
    if cluster.distributed:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[session.device] if session.device.type == "cuda" else None)
    model.train()
    show_progress = show_progress and cluster.is_main

    with stop_requests() as stop:
        while progress.epoch < config.train.epochs:
            epoch = progress.epoch + 1
            if progress.step == 0 or progress.permutation is None:
                progress = dataclasses.replace(progress, permutation=torch.randperm(n, generator=session.order_rng),
                                               step=0, sums={}, epoch_seconds=0.0)
            order = progress.permutation.to(session.device)
            sums = {k: torch.tensor(v, dtype=torch.float64) for k, v in progress.sums.items()}
            zero = torch.zeros((), dtype=torch.float64)
            recent_losses: list[torch.Tensor] = []
            bar = tqdm(total=n, initial=min(progress.step * batch_size, n), unit="img", leave=False,
                       desc=f"epoch {epoch}/{config.train.epochs}", dynamic_ncols=True,
                       disable=None if show_progress else True)  # None: off when not a terminal
            started = time.perf_counter()
            for step, batch in epoch_batches(n, batch_size, order, progress.step):
                index = cluster.shard(batch)
                if len(index):
                    x = pixels(images[index]).contiguous(memory_format=memory_format)
                    set_learning_rate(optimizer, config.train.lr, config.train.lr_schedule,
                                      (epoch - 1) * steps_per_epoch + step, total_steps)
                    with autocast(config.train.precision, session.device):
                        terms = forward(x)
                    optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    optimizer.step()
                    for name, value in terms.items():
                        sums[name] = sums.get(name, zero) + value.detach().cpu().double() * len(index)
                    recent_losses.append(terms["loss"].detach())
                progress.step, progress.images_seen = step + 1, progress.images_seen + len(batch)
                if len(recent_losses) == NAN_CHECK_EVERY or progress.step == steps_per_epoch:
                    check_finite(recent_losses, epoch, progress.step, session)
                    recent_losses = []
                    seen = min(progress.step * batch_size, n)
                    bar.set_postfix({k: f"{v.item() / seen * cluster.world_size:.4g}" for k, v in sums.items()},
                                    refresh=False)
                bar.update(len(batch))
                if cluster.agree(stop["signal"] is not None):
                    check_finite(recent_losses, epoch, progress.step, session)
                    bar.close()
                    progress.sums = {k: v.item() for k, v in sums.items()}
                    progress.epoch_seconds += time.perf_counter() - started
                    session.save(progress, history=None)
                    raise TrainingInterrupted(session.folder.final, progress)
            bar.close()

            seconds = progress.epoch_seconds + time.perf_counter() - started
            names = sorted(sums)
            totals = cluster.sum(torch.stack([sums[k] for k in names])).tolist()
            train_means = {k: total / n for k, total in zip(names, totals)}
            progress = dataclasses.replace(progress, epoch=epoch, step=0, permutation=None, sums={},
                                           train_seconds=progress.train_seconds + seconds)
            if cluster.is_main:
                model.fit_prior(prior_x.to(session.device), config.train.eval_batch_size)
                test = loss_terms(model, test_x, config.train.eval_batch_size)
                history.append({"epoch": epoch, "train": train_means, "test": test, "seconds": round(seconds, 3),
                                "images_per_s": round(n / seconds, 1), "images_seen": progress.images_seen})
                log.info("epoch %d/%d  train loss %.4g  test loss %.4g%s  %.1f s  %.0f img/s", epoch,
                         config.train.epochs, train_means["loss"], test["loss"],
                         f" (rec {test['reconstruction']:.4g} + kl {test['kl']:.4g})" if "kl" in test else "",
                         seconds, n / seconds)
            session.save(progress, history)
    return progress


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


def start(config: RunConfig) -> tuple[torch.device, Cluster, ImageData]:
    device = resolve_device(config.train.device)
    cluster = join(device)
    return rank_device(device, cluster), cluster, load_dataset(config.data.dataset, config.data.data_dir)


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


def train(config: RunConfig, out: str | Path, *, show_progress: bool = True) -> Path:
    """Train a new run into the folder `out` and return its path."""
    config = validate(config)
    check_levers(config.train.precision, config.train.lr_schedule)
    out = Path(out)
    refuse_existing(out)  # before the slow part; writability is tried once the config is known to be good
    device, cluster, data = start(config)
    try:
        config = config.replace(data={"dataset": data.name}, model={"image_shape": data.image_shape},
                                train={"precision": resolve_precision(config.train.precision, device)})
        torch.manual_seed(noise_seed(config.train.seed, 0))  # the same initial weights on every rank
        model = build_for_training(config, device)
        if cluster.rank:
            torch.manual_seed(noise_seed(config.train.seed, cluster.rank))
        folder = RunFolder(out, out)

        def prepare():
            nonlocal folder
            check_writable_folder(out)
            folder = RunFolder.staged(out)
            write_json(folder.path / CONFIG, {**config.to_dict(), "dataset_identity": data.identity(),
                                              "versions": versions(), "device": str(device),
                                              "world_size": cluster.world_size})

        on_main_first(cluster, prepare)
        if cluster.is_main:
            log.info("training %s (%s, latent %d) on %s for %d epochs on %s%s -> %s", config.model.model,
                     config.model.arch, config.model.latent_dim, data.name, config.train.epochs, device,
                     f" x {cluster.world_size} processes" if cluster.distributed else "", out)
        session = Session(model, make_optimizer(model, config), data, config, folder, device, cluster,
                          torch.Generator().manual_seed(config.train.seed))
        try:
            if config.train.epochs == 0:
                session.save(Progress(), [])
            fit(session, Progress(), show_progress)
        finally:
            folder.discard()  # only does something when nothing was committed
        return folder.final
    finally:
        leave(cluster)


def resume(run_dir: str | Path, epochs: int | None = None, *, show_progress: bool = True) -> Path:
    """Continue a run from its checkpoint, optionally to a new total number of epochs."""
    run_dir = Path(run_dir)
    config, raw = read_config(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise VaelabError(f"{run_dir} has no {CHECKPOINT} to resume from")
    if epochs is not None:
        config = config.replace(train={"epochs": epochs})
    config = validate(config)
    check_levers(config.train.precision, config.train.lr_schedule)
    device, cluster, data = start(config)
    try:
        if data.identity()["sha256"] != raw.get("dataset_identity", {}).get("sha256"):
            raise VaelabError(f"the {data.name} data found now differs from the data {run_dir} was trained on "
                              f"(checksum mismatch); point --data-dir at the original files")
        model = build_for_training(config, device)
        optimizer = make_optimizer(model, config)
        progress, rng = load_checkpoint(run_dir / CHECKPOINT, model, optimizer)
        if progress.epoch >= config.train.epochs and progress.step == 0:
            log.info("%s already has %d of %d epochs; nothing to do (pass --epochs to train longer)",
                     run_dir, progress.epoch, config.train.epochs)
            return run_dir
        session = Session(model, optimizer, data, config, RunFolder(run_dir, run_dir), device, cluster,
                          torch.Generator())
        session.restore_rng(rng, progress.epoch)
        on_main_first(cluster, lambda: write_json(run_dir / CONFIG, {**raw, **config.to_dict()}))
        if cluster.is_main:
            log.info("resuming %s at epoch %d step %d, to %d epochs", run_dir, progress.epoch + 1, progress.step,
                     config.train.epochs)
        fit(session, progress, show_progress)
        return run_dir
    finally:
        leave(cluster)
