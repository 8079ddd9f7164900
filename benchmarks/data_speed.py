"""Your own images: conversion speed, cache load time, and training from the memory map vs from RAM.

    python benchmarks/data_speed.py                          # 60,000 PNGs (MNIST digits, 28x28 grey)
    python benchmarks/data_speed.py --images 6000 --steps 100 --json /tmp/data_speed.json   # a quick check

Writes a folder of PNG files into a temporary directory (the MNIST sample's digits, repeated; real MNIST
when --data-dir holds it), then, each in a fresh process with an empty cache where it matters:
  1. conversion: the first `load_dataset(FOLDER)` reads every header, decodes every file and writes the
     memory-mapped cache (images/s = files / seconds);
  2. cache load: the same call again, which opens the cache without decoding (seconds);
  3. training from the memory map and from RAM on the same images and split (the converted arrays written as
     IDX files, which `--dataset mnist --data-dir` holds in memory): images/s over --steps optimiser steps
     of the book VAE and the process's peak resident memory (ru_maxrss, MiB).
Prints a table, writes JSON, never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vaelab
from vaelab.data.idx import write_idx

DEFAULT_JSON = Path(__file__).parent / "results" / "data_speed.json"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_pngs(folder: Path, count: int, data_dir: str | None) -> float:
    """`count` PNG files in ten class folders, cycling through the digits; returns seconds taken."""
    started = time.perf_counter()
    source = vaelab.load_dataset("mnist", data_dir) if data_dir else vaelab.load_dataset("mnist-sample")
    images, labels = source.train_images[:, 0].numpy(), source.train_labels.numpy()
    for i in range(count):
        row = i % len(images)
        target = folder / str(labels[row]) / f"{i:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[row]).save(target)
    return time.perf_counter() - started


def worker_load(folder: str) -> dict:
    started = time.perf_counter()
    data = vaelab.load_dataset(folder)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "n_train": len(data.train_images), "n_test": len(data.test_images),
            "peak_rss_mib": peak_rss_mib()}


def worker_train(dataset: str, data_dir: str | None, steps: int, out: str) -> dict:
    config = vaelab.preset("book-vae").replace(data={"dataset": dataset, "data_dir": data_dir},
                                               train={"steps": steps, "device": "cpu"})
    run = vaelab.train(config, out, show_progress=False)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    images = sum(h["images"] for h in history)
    seconds = sum(h["seconds"] for h in history)
    return {"images_per_s": images / seconds, "images": images, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}


def in_process(args: list[str], env: dict) -> dict:
    """Run one measurement in a fresh Python process (its own peak RSS), return its JSON line."""
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"worker {args[0]} failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=60_000, help="PNG files to write (default: 60,000)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per training measurement")
    parser.add_argument("--data-dir", help="real MNIST IDX files to take the digits from (default: mnist-sample)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default: {DEFAULT_JSON})")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        result = worker_load(*rest) if kind == "load" else worker_train(rest[0], rest[1] or None, int(rest[2]),
                                                                         rest[3])
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "OMP_NUM_THREADS": os.environ.get(
            "OMP_NUM_THREADS", str(os.cpu_count()))}
        env.pop("VAELAB_DATA_DIR", None)
        folder = tmp / "pngs"
        write_seconds = write_pngs(folder, args.images, args.data_dir)
        print(f"wrote {args.images:,} PNG files in {write_seconds:.1f} s", file=sys.stderr)
        convert = in_process(["load", str(folder)], env)
        cached = in_process(["load", str(folder)], env)
        idx = tmp / "idx"
        idx.mkdir()
        converted = next((tmp / "cache" / "vaelab" / "converted").iterdir())
        for split, prefix in (("train", "train"), ("test", "t10k")):
            images = np.load(converted / f"{split}_images.npy", mmap_mode="r")[:, 0]
            labels = np.load(converted / f"{split}_labels.npy")
            write_idx(idx / f"{prefix}-images-idx3-ubyte", images)
            write_idx(idx / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
        memmap = in_process(["train", str(folder), "", str(args.steps), str(tmp / "run-memmap")], env)
        ram = in_process(["train", "mnist", str(idx), str(args.steps), str(tmp / "run-ram")], env)

    result = {"images": args.images, "steps": args.steps, "write_pngs_seconds": round(write_seconds, 2),
              "conversion": {"seconds": round(convert["seconds"], 2),
                             "images_per_s": round(args.images / convert["seconds"], 1),
                             "peak_rss_mib": round(convert["peak_rss_mib"], 1)},
              "cache_load_seconds": round(cached["seconds"], 3),
              "train_memmap": {k: round(v, 1) for k, v in memmap.items()},
              "train_ram": {k: round(v, 1) for k, v in ram.items()},
              "model": "book-vae (conv, latent 2), batch 32, CPU", "cpu_count": os.cpu_count(),
              "omp_num_threads": env["OMP_NUM_THREADS"], "load_average_1min": os.getloadavg()[0],
              "python": platform.python_version(), "torch": torch.__version__, "vaelab": vaelab.__version__}
    print(f"{'measurement':<34} {'value':>12}")
    print(f"{'conversion (images/s)':<34} {result['conversion']['images_per_s']:>12,.1f}")
    print(f"{'conversion (s)':<34} {result['conversion']['seconds']:>12,.2f}")
    print(f"{'cache load (s)':<34} {result['cache_load_seconds']:>12,.3f}")
    for name in ("memmap", "ram"):
        r = result[f"train_{name}"]
        print(f"{f'train from {name} (images/s)':<34} {r['images_per_s']:>12,.1f}")
        print(f"{f'train from {name} peak RSS (MiB)':<34} {r['peak_rss_mib']:>12,.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
