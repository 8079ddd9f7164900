"""Where a training step's time goes: torch.profiler over vaelab's step, top operators by self CPU time.

    python benchmarks/profile_step.py                          # book VAE and 2-D MLP VAE, 1 and 2 threads
    python benchmarks/profile_step.py --arch conv --threads 2 --precision bf16 --json profile.json

The step is the one vaelab's loop takes (vaelab.train.loop.fit): a slice of a permutation of the in-memory
uint8 training set turned into pixels, the model's loss under the run's precision, backward, vaelab's Adam,
the loss terms summed on the device. The book VAE runs channels-last (as book-vae-fast), both at batch 128.
Each case profiles --steps steps after --warmup untimed ones, in this one process with torch.set_num_threads.
A share is an operator's self CPU time over the profiled steps' wall time; the intra-op threads' work counts
inside the operator that started it, so the shares of one case add up to about 100% (less the Python between
operators). Prints a table per case and writes JSON; it never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vaelab.errors import VaelabError
from vaelab.models import ARCHITECTURES

DEFAULT_JSON = Path(__file__).parent / "results" / "profile_step.json"
TOP = 12


def training_step(arch: str, batch: int, precision: str):
    """vaelab's step for the book VAE's loss on network `arch`: returns step() over an endless batch order."""
    import vaelab
    from vaelab.data import pixel_transform
    from vaelab.train.loop import build_for_training, make_optimizer
    from vaelab.train.speed import autocast

    config = vaelab.preset("book-vae").replace(data={"dataset": "mnist"}, model={"arch": arch},
                                               train={"batch_size": batch, "device": "cpu", "precision": precision,
                                                      "channels_last": arch == "conv"})
    images = vaelab.load_dataset("mnist").train_images
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build_for_training(config, device)
    model.train()
    optimizer = make_optimizer(model, config)
    pixels = pixel_transform(config.data.pixels)
    layout = torch.channels_last if config.train.channels_last else torch.contiguous_format
    order = torch.randperm(len(images))
    batches = math.ceil(len(images) / batch)
    sums: dict[str, torch.Tensor] = {}
    count = 0

    def step() -> None:
        nonlocal count
        index = order[(count % batches) * batch:(count % batches + 1) * batch]
        count += 1
        x = pixels(images[index]).contiguous(memory_format=layout)
        with autocast(precision, device):
            terms = model(x)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0) + value.detach().double() * len(index)

    return step


def top_operators(averages, wall_seconds: float, steps: int, top: int = TOP) -> list[dict]:
    """The `top` operators by self CPU time: calls and milliseconds per step, share of the step's wall time."""
    ranked = sorted(averages, key=lambda event: event.self_cpu_time_total, reverse=True)[:top]
    return [{"operator": event.key, "calls_per_step": event.count / steps,
             "self_ms_per_step": event.self_cpu_time_total / 1e3 / steps,
             "share": event.self_cpu_time_total / 1e6 / wall_seconds} for event in ranked]


def profile_case(arch: str, threads: int, batch: int, precision: str, steps: int, warmup: int) -> dict:
    torch.set_num_threads(threads)
    step = training_step(arch, batch, precision)
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - start
    return {"arch": arch, "threads": threads, "batch_size": batch, "precision": precision,
            "channels_last": arch == "conv", "steps": steps, "warmup_steps": warmup,
            "ms_per_step": 1e3 * wall / steps, "images_per_s": steps * batch / wall,
            "top": top_operators(profiler.key_averages(), wall, steps)}


def print_case(case: dict) -> None:
    layout = "channels-last" if case["channels_last"] else "NCHW"
    print(f"\n{case['arch']} VAE, batch {case['batch_size']}, {case['precision']}, {layout}, {case['threads']} "
          f"thread(s): {case['ms_per_step']:.1f} ms per step ({case['images_per_s']:.0f} img/s under the profiler), "
          f"{case['steps']} steps after {case['warmup_steps']} warm-up")
    print(f"{'operator':<56} {'calls/step':>10} {'self ms/step':>12} {'% of step':>9}")
    for row in case["top"]:
        print(f"{row['operator'][:56]:<56} {row['calls_per_step']:10.1f} {row['self_ms_per_step']:12.2f} "
              f"{100 * row['share']:8.1f}%")
    print(f"{'top ' + str(len(case['top'])) + ' together':<56} {'':>10} "
          f"{sum(r['self_ms_per_step'] for r in case['top']):12.2f} {100 * sum(r['share'] for r in case['top']):8.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="conv,mlp", help="comma-separated networks of vaelab's registry (on "
                                                            "MNIST): conv (the book's), mlp, mlp-ln")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="profiled steps per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    archs = [a for a in args.arch.split(",") if a]
    if set(archs) - set(ARCHITECTURES):
        parser.error(f"--arch: choose from {', '.join(ARCHITECTURES)} (got {args.arch})")
    try:
        threads = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        parser.error(f"--threads: whole numbers separated by commas (got {args.threads})")
    if min(threads, default=0) < 1 or args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--threads, --steps and --batch-size must be at least 1, --warmup at least 0")

    cases = []
    for arch in archs:
        for count in threads:
            try:
                cases.append(profile_case(arch, count, args.batch_size, args.precision, args.steps, args.warmup))
            except VaelabError as exc:  # a network that does not fit MNIST's images (faces)
                parser.error(f"--arch {arch}: {exc}")
            print_case(cases[-1])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"torch": torch.__version__, "cpu_count": os.cpu_count(),
                                     "load_average_1min": os.getloadavg()[0], "cases": cases}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
