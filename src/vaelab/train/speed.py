"""Training levers: how fast a step runs, and how the learning rate moves over the run.

    precision      fp32, or bf16 autocast: matmuls and convolutions in bfloat16 (CPUs with
                   AVX512-BF16/AMX, CUDA GPUs), parameters, optimiser state and loss sums in fp32;
                   auto: bf16 where the device computes it natively, else fp32
    channels_last  NHWC memory layout for the conv nets (oneDNN's native layout: fewer reorders)
    lr_schedule    the learning rate as a pure function of how far through the run a step is,
                   so a resumed run picks it up exactly where it stopped, with no scheduler state

Each lever is measured before and after in benchmarks/train_speed.py; docs/training.md has the figures.
"""

from __future__ import annotations

import contextlib
import math
import os

import torch

from vaelab.errors import VaelabError

PRECISIONS = {
    "fp32": lambda device: contextlib.nullcontext(),
    "bf16": lambda device: torch.autocast(device.type, dtype=torch.bfloat16),
}
AUTO = "auto"  # resolved to one of PRECISIONS when a run starts, and recorded in its config


# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) under which its matmuls and convolutions still have bf16 instructions
ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10", "AVX2_VNNI_2", "ALL", "DEFAULT")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` has bfloat16 arithmetic in hardware *and* the kernels torch runs use it; elsewhere bf16 is
    emulated and slower than fp32. On a CPU the environment can pick older kernels than the CPU has
    (ATEN_CPU_CAPABILITY for torch's own, ONEDNN_MAX_CPU_ISA for oneDNN's): then bf16 is not native either."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's own CPU probes (private: fallback)
    hardware = any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    kernels = torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2")
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    return hardware and kernels and onednn_cap.startswith(ONEDNN_BF16_ISAS)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != AUTO:
        return precision
    return "bf16" if native_bf16(device) else "fp32"


WARMUP = 0.05  # fraction of the run spent ramping the learning rate up from 0


def constant(fraction: float) -> float:
    return 1.0


def warmup_cosine(fraction: float) -> float:
    """Linear warm-up over the first 5% of steps, then half a cosine down to 0 at the last step."""
    if fraction < WARMUP:
        return fraction / WARMUP
    return 0.5 * (1.0 + math.cos(math.pi * (fraction - WARMUP) / (1.0 - WARMUP)))


SCHEDULES = {"constant": constant, "warmup-cosine": warmup_cosine}


def check_levers(precision: str, lr_schedule: str) -> None:
    if precision not in (*PRECISIONS, AUTO):
        raise VaelabError(f"unknown precision {precision!r}; choose from: {', '.join([*PRECISIONS, AUTO])}")
    if lr_schedule not in SCHEDULES:
        raise VaelabError(f"unknown lr-schedule {lr_schedule!r}; choose from: {', '.join(SCHEDULES)}")


def autocast(precision: str, device: torch.device):
    """The context the forward pass runs in (backward follows the dtypes it recorded)."""
    return PRECISIONS[precision](device)


def uses_channels_last(model: torch.nn.Module, channels_last: bool) -> bool:
    """Whether the layout applies: only a network with conv (4-D) weights has one to choose."""
    return channels_last and any(p.dim() == 4 for p in model.parameters())


def set_memory_format(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """Put the 4-D (conv) weights in channels-last layout; other tensors are unaffected."""
    return model.to(memory_format=torch.channels_last) if uses_channels_last(model, channels_last) else model


def set_learning_rate(optimizer: torch.optim.Optimizer, base_lr: float, schedule: str, fraction: float) -> None:
    """The learning rate for a step `fraction` of the way through the run (see train/length.py)."""
    factor = SCHEDULES[schedule](fraction)
    for group in optimizer.param_groups:
        group["lr"] = base_lr * factor
