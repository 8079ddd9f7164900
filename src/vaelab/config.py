"""Every setting of a run as frozen dataclasses, validated once, written to `config.json`.

A run folder's config is the single source of truth: `vaelab.load` rebuilds
the model from it, `--resume` continues with it, and evaluation reads the data
identity from it. Presets are named partial configs; explicit settings win.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from vaelab.errors import VaelabError
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.networks import ARCHITECTURES
from vaelab.models.registry import model_class


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "auto"  # 'auto' = full MNIST when available, else mnist-sample; or a folder / .npz / .npy path
    data_dir: str | None = None
    pixels: str = "continuous"  # continuous | dynamic | static
    image_size: tuple[int, int] | None = None  # (height, width) to crop and resize to; None: the data's own
    channels: int | None = None  # 1 | 3; None: the data's own
    test_fraction: float = 0.1  # test share of a source without its own split (stratified, seeded)


@dataclass(frozen=True)
class ModelConfig:
    model: str = "vae"  # registry name: ae | vae | cvae (vaelab.models.registry)
    arch: str = "conv"  # conv (the book's MNIST network) | faces (the book's CelebA network) | mlp
    latent_dim: int = 2
    likelihood: str = "gaussian"  # gaussian | bernoulli
    # gaussian only: loss = r_loss_factor * mean-pixel MSE (+ KL); None: the model's own, as the book has it
    # (the AE's plain MSE, r = 1; the VAE's r = 1000), resolved by `validate` and written to config.json
    r_loss_factor: float | None = None
    image_shape: tuple[int, int, int] = (1, 28, 28)
    beta: float = 1.0  # weight of the KL term, for models that have one (the beta-VAE, Higgins et al. 2017)
    iw_train: int = 1  # importance samples per image in the loss (Burda et al. 2016); 1: the ELBO
    n_classes: int = 0  # classes a conditional model sees (set from the training data; 0: unlabelled)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    steps: int | None = None  # exact optimiser steps instead of epochs (replays a time-budgeted run)
    time_budget: float | None = None  # seconds of training instead of epochs (see vaelab.train.length)
    batch_size: int = 32
    lr: float = 5e-4
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    eval_batch_size: int = 100  # no-grad passes: small batches stay in cache (conv: 1.4x faster than at 1000)
    lr_schedule: str = "constant"  # constant | warmup-cosine (see vaelab.train.speed)
    kl_warmup: float = 0.0  # fraction of the run over which a KL term's weight rises from 0 to 1 (0: off)
    weight_decay: float = 0.0  # decoupled weight decay (AdamW, Loshchilov & Hutter 2019); 0: plain Adam
    # The fastest correct configuration by default (each changes numbers only by rounding: tests/train/test_speed.py)
    precision: str = "auto"  # fp32 | bf16 (autocast of the forward pass) | auto (bf16 where native, else fp32)
    channels_last: bool = True  # NHWC layout for conv weights and batches (no effect on a network without convs)
    # how the run uses the machine (vaelab.train.cores, .launch)
    procs: int | str = "auto"  # processes training the run together (DDP); auto: one per GPU, one on a CPU
    # compute threads per process; auto: the cores other programs leave free where the run checked that the count
    # does not change its numbers, else the process's cores, recorded here as a fixed count when the run starts
    threads: int | str = "auto"


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "RunConfig":
        """The config a run folder recorded, checked like a new run's (types, names, ranges: `validate`)."""
        if not isinstance(raw, dict):
            raise VaelabError(f"config is not a vaelab run config (a JSON {type(raw).__name__}, not an object)")
        sections = {}
        for section in dataclasses.fields(cls):
            values = raw.get(section.name)
            if not isinstance(values, dict):
                raise VaelabError(f"config is not a vaelab run config (no '{section.name}' section)")
            known = {f.name for f in dataclasses.fields(section.default_factory)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise VaelabError(f"config has unknown {section.name} setting(s): {', '.join(map(str, unknown))}")
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}  # JSON has no tuples
            sections[section.name] = section.default_factory(**values)
        return validate(cls(**sections))

    def replace(self, **sections: dict) -> "RunConfig":
        """A copy with some fields of some sections changed: replace(train={'epochs': 5})."""
        updated = {}
        for name, changes in sections.items():
            current = getattr(self, name)
            unknown = set(changes) - {f.name for f in dataclasses.fields(current)}
            if unknown:
                raise VaelabError(f"unknown {name} setting(s): {', '.join(sorted(unknown))}")
            updated[name] = dataclasses.replace(current, **changes)
        return dataclasses.replace(self, **updated)


PRESETS: dict[str, dict[str, dict]] = {
    # Generative Deep Learning, ch. 3: conv net, 2-D latent, Adam 5e-4, batch 32, grey-level pixels, in fp32 as the
    # book computed (the default `auto` would take bf16 where the hardware has it; book-vae-fast does).
    "book-ae": {"model": {"model": "ae", "arch": "conv", "latent_dim": 2, "likelihood": "gaussian",
                          "r_loss_factor": 1.0},  # the AE minimises plain mean-pixel MSE
                "train": {"lr": 5e-4, "batch_size": 32, "precision": "fp32"}, "data": {"pixels": "continuous"}},
    "book-vae": {"model": {"model": "vae", "arch": "conv", "latent_dim": 2, "likelihood": "gaussian",
                           "r_loss_factor": 1000.0},  # 1000 * mean-pixel MSE + KL
                 "train": {"lr": 5e-4, "batch_size": 32, "precision": "fp32"}, "data": {"pixels": "continuous"}},
    # The book's VAE (same network and loss), trained for speed: 4x the batch with 4x the learning rate,
    # warm-up + cosine decay, bf16 autocast where native, channels-last. Measured in docs/training.md: test loss 45.2
    # after 16 epochs (~9 min of training on 2 CPU cores); the book's 200 epochs reached 43.0.
    "book-vae-fast": {"model": {"model": "vae", "arch": "conv", "latent_dim": 2, "likelihood": "gaussian",
                                "r_loss_factor": 1000.0},
                      "train": {"lr": 2e-3, "batch_size": 128, "epochs": 16, "lr_schedule": "warmup-cosine",
                                "precision": "auto", "channels_last": True},
                      "data": {"pixels": "continuous"}},
    # The book's faces VAE (ch. 3, CelebA at 128x128 RGB): the `faces` network (four stride-2 convs with
    # BatchNorm and Dropout), a 200-D latent, 10000 * mean-pixel MSE + KL, Adam 5e-4, batch 32. The book's image
    # shape stands until the data replaces it with its own (any sides divisible by 16).
    "book-faces-vae": {"model": {"model": "vae", "arch": "faces", "latent_dim": 200, "likelihood": "gaussian",
                                 "r_loss_factor": 10000.0, "image_shape": (3, 128, 128)},
                       "train": {"lr": 5e-4, "batch_size": 32, "precision": "fp32"}, "data": {"pixels": "continuous"}},
}


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise VaelabError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}")
    return RunConfig().replace(**PRESETS[name])


# Upper bounds: far above any sensible run, low enough that a typo (latent_dim 10^12) fails here,
# not in a 2 PB allocation.
MAX_LATENT_DIM = 4096
MAX_IMAGE_SIDE = 4096
MAX_CHANNELS = 4
MAX_BATCH = 1 << 16
MAX_IW_TRAIN = 5000  # importance samples per training image: K decodes per image per step
MAX_EPOCHS = 1_000_000
MAX_PROCS = 64  # processes per machine
MAX_THREADS = 1024
MAX_SEED = 1 << 62  # torch seeds are 64-bit; rank and epoch offsets are added to it


def type_fits(value, annotation: str) -> bool:
    """Whether a value read from JSON has a field's declared type ('int', 'str | None', 'tuple[int, int, int]')."""
    for option in (part.strip() for part in annotation.split("|")):
        items = re.fullmatch(r"tuple\[(.*)\]", option)
        if items:
            kinds = [kind.strip() for kind in items.group(1).split(",")]
            if isinstance(value, tuple) and len(value) == len(kinds) and all(map(type_fits, value, kinds)):
                return True
        elif option not in SCALAR_TYPES:
            raise TypeError(f"config.py has no type check for a field of type {option!r}")
        elif SCALAR_TYPES[option](value):
            return True
    return False


SCALAR_TYPES = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str) and "\x00" not in v,
    "None": lambda v: v is None,
}


def check_types(config: RunConfig) -> None:
    """Every field has its declared type: a config.json written by hand or damaged fails here, by name."""
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if not type_fits(value, f.type):
                raise VaelabError(f"{section.name}.{f.name} must be of type {f.type.replace('None', 'null')}, "
                                  f"got {value!r:.60}")


def validate(config: RunConfig) -> RunConfig:
    """Reject impossible settings and unknown names with a message naming the setting, before any data loads."""
    check_types(config)
    model = model_class(config.model.model)
    if config.model.arch not in ARCHITECTURES:
        raise VaelabError(f"unknown architecture {config.model.arch!r}; choose from: {', '.join(ARCHITECTURES)}")
    if config.model.likelihood not in LIKELIHOODS:
        raise VaelabError(f"unknown likelihood {config.model.likelihood!r}; choose from: {', '.join(LIKELIHOODS)}")
    if config.model.r_loss_factor is None:
        config = config.replace(model={"r_loss_factor": model.default_r_loss_factor})
    d, m, t = config.data, config.model, config.train
    channels, height, width = m.image_shape
    checks = [
        (d.image_size is None or all(1 <= side <= MAX_IMAGE_SIDE for side in d.image_size),
         f"image-size sides must be 1-{MAX_IMAGE_SIDE}, got {d.image_size}"),
        (d.channels in (None, 1, 3), f"channels must be 1 (grey) or 3 (RGB), got {d.channels}"),
        (math.isfinite(d.test_fraction) and 0 <= d.test_fraction < 1,
         f"test-fraction must be at least 0 and below 1, got {d.test_fraction}"),
        (m.latent_dim >= 1, f"latent-dim must be at least 1, got {m.latent_dim}"),
        (m.latent_dim <= MAX_LATENT_DIM, f"latent-dim must be at most {MAX_LATENT_DIM}, got {m.latent_dim}"),
        (1 <= channels <= MAX_CHANNELS and 1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE,
         f"image_shape must be (channels 1-{MAX_CHANNELS}, height, width 1-{MAX_IMAGE_SIDE}), got {m.image_shape}"),
        (0 <= t.seed <= MAX_SEED, f"seed must be between 0 and 2^62, got {t.seed}"),
        (t.epochs >= 0, f"epochs must be 0 or more, got {t.epochs}"),
        (t.epochs <= MAX_EPOCHS, f"epochs must be at most {MAX_EPOCHS}, got {t.epochs}"),
        (t.steps is None or t.steps >= 1, f"steps must be at least 1, got {t.steps}"),
        (t.time_budget is None or (math.isfinite(t.time_budget) and t.time_budget > 0),
         f"time-budget must be a positive number of seconds, got {t.time_budget}"),
        (t.steps is None or t.time_budget is None, "give --steps or --time-budget, not both"),
        (t.batch_size >= 1, f"batch-size must be at least 1, got {t.batch_size}"),
        (t.eval_batch_size >= 1, f"eval-batch-size must be at least 1, got {t.eval_batch_size}"),
        (max(t.batch_size, t.eval_batch_size) <= MAX_BATCH,
         f"batch sizes must be at most {MAX_BATCH}, got {max(t.batch_size, t.eval_batch_size)}"),
        (math.isfinite(t.lr) and t.lr > 0, f"lr must be a positive number, got {t.lr}"),
        (math.isfinite(t.kl_warmup) and 0 <= t.kl_warmup < 1,
         f"kl-warmup must be a fraction of the run, at least 0 and below 1, got {t.kl_warmup}"),
        (math.isfinite(t.weight_decay) and 0 <= t.weight_decay < 1,
         f"weight-decay must be at least 0 and below 1, got {t.weight_decay}"),
        (math.isfinite(m.r_loss_factor) and m.r_loss_factor > 0,
         f"r-loss-factor must be a positive number, got {m.r_loss_factor}"),
        (math.isfinite(m.beta) and m.beta >= 0, f"beta must be a number of 0 or more, got {m.beta}"),
        (model.takes_beta or m.beta == 1, f"beta weights a KL term; the {m.model} has none (beta must be 1)"),
        (1 <= m.iw_train <= MAX_IW_TRAIN, f"iw-train must be 1-{MAX_IW_TRAIN} samples per image, got {m.iw_train}"),
        (model.takes_iw_train or m.iw_train == 1,
         f"iw-train needs q(z|x) with a density; the {m.model} has none (iw-train must be 1)"),
        (m.n_classes >= 0, f"n_classes must be 0 or more, got {m.n_classes}"),
        (t.procs == "auto" or (isinstance(t.procs, int) and 1 <= t.procs <= MAX_PROCS),
         f"procs must be 'auto' or a whole number from 1 to {MAX_PROCS}, got {t.procs!r}"),
        (t.threads == "auto" or (isinstance(t.threads, int) and 1 <= t.threads <= MAX_THREADS),
         f"threads must be 'auto' or a whole number from 1 to {MAX_THREADS}, got {t.threads!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise VaelabError(message)
    return config
