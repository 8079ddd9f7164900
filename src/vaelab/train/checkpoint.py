"""Checkpoints for exact resume, as one safetensors file (no pickle, ever).

One file holds model weights, the optimiser's tensors, the RNG states and,
when the run stopped mid-epoch, the epoch's permutation and running sums;
the non-tensor parts (epoch, step, optimiser hyperparameters) travel in the
safetensors header as JSON, with the run record (the metrics history and the
checksum of model.safetensors: see vaelab.runs) and a checksum of it all. One
file means one atomic rename: a checkpoint is either entirely old or entirely
new, and its rename is the run's commit point.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vaelab.errors import VaelabError
from vaelab.runs import (
    RECORD_KEY,
    Record,
    check_content,
    check_fits,
    cpu_tensors,
    read_tensor_file,
    tensors_sha256,
    write_tensors,
)


@dataclass
class Progress:
    """Where training stands: `epoch` epochs are done; `step` batches of the next one too."""

    epoch: int = 0
    step: int = 0
    images_seen: int = 0
    steps_done: int = 0  # optimiser steps over the whole run
    train_seconds: float = 0.0
    elapsed_seconds: float = 0.0  # the run's clock: training, per-epoch evaluation, checkpoints (train/length.py)
    epoch_seconds: float = 0.0  # time spent in the unfinished epoch
    permutation: torch.Tensor | None = field(default=None, repr=False)  # the unfinished epoch's order
    sums: dict[str, float] = field(default_factory=dict)  # the unfinished epoch's summed loss terms


FORMAT = "vaelab-checkpoint-2"


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    progress: Progress, rng: dict[str, torch.Tensor], record: Record) -> None:
    """`rng` holds generator states by name (the shared order generator and each rank's noise); `record` the
    finished epochs' metrics and the checksum of their weights. A checksum over everything is stored too."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    for param_id, state in optim_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{param_id}.{key}"] = torch.as_tensor(value)
    tensors.update({f"rng.{name}": state for name, state in rng.items()})
    if progress.permutation is not None and progress.step > 0:
        tensors["progress.permutation"] = progress.permutation
    tensors = cpu_tensors(tensors)
    meta = {k: v for k, v in asdict(progress).items() if k != "permutation"}
    metadata = {"progress": json.dumps(meta), "param_groups": json.dumps(optim_state["param_groups"]),
                "format": FORMAT, RECORD_KEY: record.to_header()}
    metadata["sha256"] = tensors_sha256(tensors, metadata)
    write_tensors(path, tensors, metadata)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    n_train: int, batch_size: int) -> tuple[Progress, dict[str, torch.Tensor], Record]:
    """Restore model and optimiser in place; return the progress, the saved RNG states by name and the run
    record. Every part is checked first (checksum, then each part's structure against this model, optimiser
    and training set), so a damaged or foreign checkpoint is a one-line error, never a failure mid-training."""
    tensors, metadata = read_tensor_file(path, "checkpoint")
    if metadata.get("format") != FORMAT:
        raise VaelabError(f"{path} is not a vaelab checkpoint of this version (format "
                          f"{metadata.get('format', 'none')!r}, expected {FORMAT!r})")
    check_content(path, tensors, metadata)
    record = Record.from_header(metadata.get(RECORD_KEY), path)
    check_fits(model, {k: tuple(v.shape) for k, v in tensors.items()}, path, prefix="model.")
    try:
        progress = checked_progress(json.loads(metadata["progress"]), tensors.get("progress.permutation"),
                                    n_train, batch_size)
        optim_state = checked_optimizer_state(tensors, json.loads(metadata["param_groups"]), optimizer)
        rng = checked_rng({k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")})
    except KeyError as exc:
        raise VaelabError(f"{path} is inconsistent (no {exc.args[0]!r} entry); it cannot be resumed") from None
    except (TypeError, ValueError) as exc:
        raise VaelabError(f"{path} is inconsistent ({str(exc)[:200]}); it cannot be resumed") from None
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(optim_state)
    return progress, rng, record


def checked_progress(meta: dict, permutation: torch.Tensor | None, n_train: int, batch_size: int) -> Progress:
    defaults = Progress()
    for key, value in meta.items():
        if key == "permutation" or not hasattr(defaults, key):
            raise ValueError(f"unknown progress entry {key!r}")
        default = getattr(defaults, key)
        kind = (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, (int, float)) and value < 0):
            raise ValueError(f"progress entry {key!r} is {value!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in meta.get("sums", {}).values()):
        raise ValueError("the unfinished epoch's sums are not numbers")
    progress = Progress(**meta)
    if progress.step:
        if progress.step >= -(-n_train // batch_size):
            raise ValueError(f"step {progress.step} is past the end of an epoch")
        if (permutation is None or permutation.dtype != torch.int64 or permutation.shape != (n_train,)
                or not torch.equal(permutation.sort().values, torch.arange(n_train))):
            raise ValueError(f"the saved epoch order is not a permutation of the {n_train} training images")
        progress.permutation = permutation
    return progress


def checked_optimizer_state(tensors: dict[str, torch.Tensor], param_groups, optimizer) -> dict:
    """The optimiser state as `load_state_dict` takes it, shaped like this optimiser's parameters."""
    fresh = optimizer.state_dict()["param_groups"]
    if (not isinstance(param_groups, list) or len(param_groups) != len(fresh)
            or any(not isinstance(g, dict) or g.keys() != f.keys() or g["params"] != f["params"]
                   for g, f in zip(param_groups, fresh))):
        raise ValueError("its optimiser parameter groups do not match the model")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            index = int(param_id)
            if not 0 <= index < len(params):
                raise ValueError(f"optimiser state for unknown parameter {param_id}")
            if name != "step" and value.shape != params[index].shape:
                raise ValueError(f"optimiser state {key} has shape {tuple(value.shape)}, "
                                 f"the parameter {tuple(params[index].shape)}")
            state.setdefault(index, {})[name] = value
    return {"state": state, "param_groups": param_groups}


def checked_rng(rng: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    size = torch.get_rng_state().shape
    for name in ("order", "noise.0"):
        if name not in rng:
            raise ValueError(f"RNG state {name!r} is missing")
    for name, state in rng.items():
        if state.dtype != torch.uint8 or (not name.startswith("cuda.") and state.shape != size):
            raise ValueError(f"RNG state {name!r} has the wrong size or type")
    return rng
