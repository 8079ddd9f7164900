"""The exported explorer page (`vaelab export --html`): its size, and how long its in-page decoder takes.

    python benchmarks/explorer_page.py                          # trains the study's AE + VAE pair briefly first
    python benchmarks/explorer_page.py --pair runs/ae runs/vae --codes 300 --json explorer_page.json

Two measurements, in headless Chromium (Playwright driving /usr/bin/chromium), the page opened from file://
with the network off:
  * decode latency per network: one image at a time, as the pointer asks for it (`window.vaelabPage.decode`
    on one random code, timed with performance.now() around the call), after a warm-up; p50 / p95 / max.
    The models are untrained (seeded): the cost of a forward pass does not depend on the weights' values.
  * the size of the study's AE + VAE page (trained weights deflate differently from random ones), with how
    each decoder was stored and its largest pixel difference from PyTorch.
Prints a table, writes JSON, never asserts on time: the goals (p95 <= 16 ms for the study's MLP, <= 50 ms for
the book's conv decoder, the pair's page <= 4 MB) are read from the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vaelab
from vaelab.config import ModelConfig
from vaelab.explore.page import Explorer, model_page_run
from vaelab.models import build_model

CHROMIUM = "/usr/bin/chromium"
DEFAULT_JSON = Path(__file__).parent / "results" / "explorer_page.json"
# name: (network, image shape, latent_dim, goal p95 in ms or None)
NETWORKS = {"mlp": ("mlp", (1, 28, 28), 2, 16.0), "mlp-ln (the study's)": ("mlp-ln", (1, 28, 28), 2, 16.0),
            "conv (the book's)": ("conv", (1, 28, 28), 2, 50.0), "faces 64x64 RGB": ("faces", (3, 64, 64), 200, None),
            "faces 128x128 RGB (the book's)": ("faces", (3, 128, 128), 200, None)}
GOAL_PAIR_MB = 4.0

TIME_DECODES = """async ([codes, warmup]) => {
  const times = [];
  for (let i = 0; i < codes.length; i++) {
    const started = performance.now();
    await window.vaelabPage.decode(0, [codes[i]]);
    if (i >= warmup) times.push(performance.now() - started);
  }
  return times;
}"""


def network_page(arch: str, image_shape, latent_dim: int, folder: Path) -> Path:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="vae", arch=arch, image_shape=image_shape, latent_dim=latent_dim)).eval()
        test_x = torch.rand(50, *image_shape)
    run = model_page_run(model, arch, arch, "random images", [str(k) for k in range(10)], test_x,
                         torch.arange(50) % 10)
    return Explorer([run]).save(folder / f"{arch}-{'x'.join(map(str, image_shape))}.html")


def study_pair(folder: Path) -> list[Path]:
    """The study's AE and VAE network (mlp-ln) and losses, 3 epochs on the built-in MNIST sample."""
    runs = []
    for preset in ("book-ae", "book-vae"):
        config = vaelab.preset(preset).replace(model={"arch": "mlp-ln"}, data={"dataset": "mnist-sample"},
                                               train={"epochs": 3, "batch_size": 128, "lr": 3e-3,
                                                      "lr_schedule": "warmup-cosine"})
        runs.append(vaelab.train(config, folder / preset.removeprefix("book-"), show_progress=False))
    return runs


def open_offline(browser, path: Path):
    context = browser.new_context()
    context.set_offline(True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    started = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_selector('body[data-ready="1"]', timeout=120_000)
    return context, page, time.perf_counter() - started, errors


def time_network(browser, path: Path, latent_dim: int, codes: int, warmup: int, seed: int) -> dict:
    context, page, ready_s, errors = open_offline(browser, path)
    zs = np.random.default_rng(seed).normal(0, 1.5, (codes + warmup, latent_dim)).tolist()
    ms = np.array(page.evaluate(TIME_DECODES, [zs, warmup]))
    context.close()
    if errors:
        raise RuntimeError(f"{path.name}: page errors {errors}")
    return {"page_mb": round(path.stat().st_size / 1e6, 3), "ready_s": round(ready_s, 2), "decodes": int(ms.size),
            **{f"{name}_ms": round(float(np.percentile(ms, q)), 2)
               for name, q in (("p50", 50), ("p95", 95), ("max", 100))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", nargs=2, type=Path, metavar=("AE", "VAE"),
                        help="the study's run folders to size a page of (default: train them 3 epochs on the sample)")
    parser.add_argument("--codes", type=int, default=200, help="timed decodes per network")
    parser.add_argument("--warmup", type=int, default=20, help="decodes before timing starts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default: {DEFAULT_JSON})")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        folder = Path(tmp)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        browser_version = browser.version
        for name, (arch, image_shape, latent_dim, goal) in NETWORKS.items():
            path = network_page(arch, image_shape, latent_dim, folder)
            results[name] = {"arch": arch, "image_shape": list(image_shape), "latent_dim": latent_dim,
                             "goal_p95_ms": goal,
                             **time_network(browser, path, latent_dim, args.codes, args.warmup, args.seed)}
        browser.close()
        pair_runs = args.pair or study_pair(folder)
        pair = vaelab.export_html(pair_runs, folder / "pair.html")
        pair_result = {"runs": [str(run) for run in (args.pair or ["study pair, 3 epochs on mnist-sample"])],
                       "page_mb": round(len(pair.html.encode()) / 1e6, 3), "goal_mb": GOAL_PAIR_MB,
                       "decoders": [{"name": r.info["name"], "arch": r.info["arch"], "weights": r.weight_count,
                                     "bits_per_weight": 8 * r.bytes_per_weight,
                                     "max_pixel_difference": r.max_pixel_error} for r in pair.runs]}

    print(f"{'network':<32} {'page MB':>8} {'ready s':>8} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'goal p95':>9}")
    for name, r in results.items():
        goal = "-" if r["goal_p95_ms"] is None else (f"{r['goal_p95_ms']:g} " +
                                                    ("met" if r["p95_ms"] <= r["goal_p95_ms"] else "NOT met"))
        print(f"{name:<32} {r['page_mb']:>8.2f} {r['ready_s']:>8.2f} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} "
              f"{r['max_ms']:>7.2f} {goal:>9}")
    decoders = ", ".join(f"{d['name']}: {d['weights']:,} weights at {d['bits_per_weight']} bits "
                         f"(max pixel difference {d['max_pixel_difference']:.1e})" for d in pair_result["decoders"])
    print(f"study pair page: {pair_result['page_mb']:.2f} MB (goal <= {GOAL_PAIR_MB:g} MB: "
          f"{'met' if pair_result['page_mb'] <= GOAL_PAIR_MB else 'NOT met'}); {decoders}")
    report = {"networks": results, "pair": pair_result, "codes": args.codes, "warmup": args.warmup,
              "chromium": browser_version, "cpu_count": os.cpu_count(),
              "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
              "python": platform.python_version(), "torch": torch.__version__, "vaelab": vaelab.__version__}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
