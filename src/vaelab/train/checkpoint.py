"""Checkpoints for exact resume, as one safetensors file (no pickle, ever).

One file holds model weights, the optimiser's tensors, the RNG states and,
when the run stopped mid-epoch, the epoch's permutation and running sums;
the non-tensor parts (epoch, step, optimiser hyperparameters) travel in the
safetensors header as JSON. One file means one atomic rename: a checkpoint is
either entirely old or entirely new.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from vaelab.errors import VaelabError
from vaelab.runs import write_tensors


@dataclass
class Progress:
    """Where training stands: `epoch` epochs are done; `step` batches of the next one too."""

    epoch: int = 0
    step: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    epoch_seconds: float = 0.0  # time spent in the unfinished epoch
    permutation: torch.Tensor | None = field(default=None, repr=False)  # the unfinished epoch's order
    sums: dict[str, float] = field(default_factory=dict)  # the unfinished epoch's summed loss terms


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    progress: Progress, rng: dict[str, torch.Tensor]) -> None:
    """`rng` holds generator states by name (the shared order generator and each rank's noise)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    for param_id, state in optim_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{param_id}.{key}"] = torch.as_tensor(value)
    tensors.update({f"rng.{name}": state for name, state in rng.items()})
    if progress.permutation is not None and progress.step > 0:
        tensors["progress.permutation"] = progress.permutation
    meta = {k: v for k, v in asdict(progress).items() if k != "permutation"}
    metadata = {"progress": json.dumps(meta), "param_groups": json.dumps(optim_state["param_groups"]),
                "format": "vaelab-checkpoint-1"}
    write_tensors(path, tensors, metadata)


def load_checkpoint(path: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> tuple[Progress, dict[str, torch.Tensor]]:
    """Restore model and optimiser in place; return the progress and the saved RNG states by name."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise VaelabError(f"{path}: cannot read checkpoint ({exc})") from None
    if metadata.get("format") != "vaelab-checkpoint-1":
        raise VaelabError(f"{path} is not a vaelab checkpoint")
    from vaelab.runs import load_state  # the model part is checked like any weights file

    load_state(model, path, prefix="model.")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    progress = Progress(**json.loads(metadata["progress"]))
    progress.permutation = tensors.get("progress.permutation")
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    return progress, rng
