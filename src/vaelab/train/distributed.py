"""Multi-process training through PyTorch's own engine: torchrun + DistributedDataParallel.

    torchrun --nproc-per-node 2 -m vaelab train ...     # several machines: torchrun's --nnodes, --rdzv-*
    vaelab train --procs 2 ...                          # this machine: vaelab starts the processes itself

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; we join the process group (gloo
on CPU, nccl on CUDA) and the ordinary training loop runs on every rank with
three differences: each rank takes its shard of every global batch, DDP
averages the gradients, and only rank 0 evaluates and writes. Decisions that
must be unanimous (stop on Ctrl-C, stop on NaN, a failed pre-flight check)
go through `agree`, so no rank is left waiting in a collective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vaelab.errors import VaelabError


@dataclass(frozen=True)
class Cluster:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch of indices (round-robin, so shards differ by at most one)."""
        return batch[self.rank::self.world_size] if self.distributed else batch

    def agree(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank."""
        return bool(self.maximum([1.0 if flag else 0.0])[0])

    def maximum(self, values: list[float]) -> list[float]:
        """Each value's maximum over the ranks: one shared clock and stop decision for all of them."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.collective_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return values
        values = values.to(self.collective_device)
        dist.all_reduce(values)
        return values.cpu()

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's `tensor` (same shape on all ranks), in rank order."""
        if not self.distributed:
            return [tensor]
        tensor = tensor.to(self.collective_device)
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return [p.cpu() for p in parts]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @property
    def collective_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def join(device: torch.device) -> Cluster:
    """The cluster this process belongs to: a single process unless launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Cluster()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if device.type not in ("cpu", "cuda"):
        raise VaelabError(f"distributed training runs on cpu (gloo) or cuda (nccl), not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Cluster(rank, world_size, local_rank)


def resolve_procs(setting: int | str, device: torch.device) -> int:
    """How many processes train a run. Under torchrun, torchrun's count. `auto`: one per visible GPU; one on a CPU,
    where (measured on 2 cores, docs/training.md) a gloo all-reduce of the gradients costs 3-4 ms a step and two
    single-threaded processes train slower than one with two threads (the MLP 5,588 vs 10,419 img/s, the conv
    net 651 vs 824)."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    if setting != "auto":
        return int(setting)
    return max(1, torch.cuda.device_count()) if device.type == "cuda" else 1


def rank_device(device: torch.device, cluster: Cluster) -> torch.device:
    """Each rank drives its own GPU."""
    return torch.device("cuda", cluster.local_rank) if device.type == "cuda" else device


def leave(cluster: Cluster) -> None:
    if cluster.distributed and dist.is_initialized():
        dist.destroy_process_group()
