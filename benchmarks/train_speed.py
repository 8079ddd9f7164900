"""Training speed: vaelab against a tuned PyTorch loop, a naive one and pythae, and this machine's matmul peaks.

    python benchmarks/train_speed.py                   # one epoch of full MNIST ($VAELAB_DATA_DIR/cache) per case
    python benchmarks/train_speed.py --steps 300       # 300 x a case's share of timed steps after a warm-up (~11 min)
    python benchmarks/train_speed.py --cases all       # also the single-lever cases (batch 32, bf16, channels-last)
    python benchmarks/train_speed.py --cases vaelab-conv-b128-1x2,tuned-fp32-conv-b128 --json out.json

Every training case trains the same network (the book's conv VAE, or the 2-D MLP VAE) with the same loss
(1000 * mean-pixel MSE + KL, Adam 5e-4), each in a fresh subprocess so its peak RSS is its own:

    vaelab-...-PxT   `vaelab.train` as P processes x T threads (auto: vaelab's own choice), with book-vae-fast's
                     levers: precision auto (bf16 where the CPU has it natively), channels-last for the conv net
    tuned            the loop vaelab must beat (issue 12): the training set as one in-memory float tensor sliced
                     by a randperm index, bf16 autocast, channels-last, torch's default threads
    tuned-fp32       the same loop in fp32 (where bf16 is emulated, as on AVX2-only CPUs, it is the faster one)
    plain            the pytorch/examples loop over DataLoader(TensorDataset), fp32
    pythae           pythae's BaseTrainer (`bash install.sh bench`)
    ...-busy         the case again while another process busy-loops on the last core (Linux)

The last case times the K=1000 importance-weighted bound. All cases run in one invocation, so their ratios
hold on a noisy machine. Prints a table and writes JSON; it never asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vaelab.train.speed import native_bf16

DEFAULT_JSON = Path(__file__).parent / "results" / "train_speed.json"
WARMUP_STEPS = 5  # untimed steps before a --steps measurement: oneDNN chooses and caches its kernels in them
IW_QUICK_IMAGES = 500  # test images of the K=1000 bound under --steps (the full 10,000 take minutes)
QUICK_TEST_IMAGES = 1000  # test images of a vaelab run's final test pass under --steps


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, seconds: float = 3.0) -> float:
    """Best sustained GEMM rate (GFLOP/s) on all threads: the roof the models are measured against. The operands
    are 2048x2048, or 512x512 for bf16 where the CPU emulates it (~1 GFLOP/s: one 2048 GEMM takes a minute)."""
    size = 512 if dtype == torch.bfloat16 and not native_bf16(torch.device("cpu")) else 2048
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * size ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_image(arch: str, batch: int = 16) -> float:
    """Forward + backward FLOPs of one training step, per image (PyTorch's flop counter; for these networks the
    count per image does not depend on the batch size, so a small batch measures it quickly)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vaelab.config import ModelConfig
    from vaelab.models import build_model

    model = build_model(ModelConfig(model="vae", arch=arch))
    x = torch.rand(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model.loss(x)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def load_mnist():
    import vaelab

    return vaelab.load_dataset("mnist")


def book_config(arch: str, batch: int, **train):
    import vaelab

    return vaelab.preset("book-vae").replace(data={"dataset": "mnist"}, model={"arch": arch},
                                             train={"epochs": 1, "batch_size": batch, "device": "cpu", **train})


def shuffled_slices(n: int, batch: int) -> Iterator[torch.Tensor]:
    """Index batches of a fresh permutation per epoch, without end (the timer takes what it needs)."""
    while True:
        yield from torch.randperm(n).split(batch)


def timed(step: Callable, batches: Iterator, steps: int | None, epoch_steps: int) -> dict:
    """Time `step` (it returns its batch's image count) over one epoch's batches, warm-up included as in a
    user's first epoch; or, given `steps`, over that many batches after WARMUP_STEPS untimed ones."""
    if steps is not None:
        for _ in range(WARMUP_STEPS):
            step(next(batches))
    count = epoch_steps if steps is None else steps
    images, start = 0, time.perf_counter()
    for batch in itertools.islice(batches, count):
        images += step(batch)
    seconds = time.perf_counter() - start
    return {"images_per_s": images / seconds, "seconds": seconds, "images": images, "steps": count}


def loop_config(precision: str, channels_last: bool) -> dict:
    """A hand-written loop's settings, in the terms vaelab's config.json uses."""
    return {"procs": 1, "threads": torch.get_num_threads(), "precision": precision, "channels_last": channels_last}


# --- the cases: each returns {"images_per_s", "seconds", "images", "steps", ...} ----------------------

def run_vaelab(arch: str, batch: int, steps: int | None, **train) -> dict:
    """`vaelab.train` for one epoch (the first: warm-up costs such as oneDNN's kernel choice count), or for
    `steps` steps: the training clock (metrics.jsonl's `seconds`: no start-up, no test pass) of a run of
    WARMUP_STEPS + steps steps less that of a run of WARMUP_STEPS steps, which removes the warm-up both share.
    Both start equally warm: vaelab's workers (--procs N > 1) start cold for each run, and a first, untimed
    run warms this process where vaelab may train in it. These runs train on all 60,000 MNIST training images
    and end with a test pass over the first QUICK_TEST_IMAGES test images only (IDX files written here). The
    difference is noise for a handful of steps: time 30 or more."""
    import vaelab
    from vaelab.runs import read_metrics

    with tempfile.TemporaryDirectory() as tmp:
        def clock(name: str, data_dir: Path | None = None, **length) -> tuple[float, int, dict]:
            config = book_config(arch, batch, **train, **length)
            if data_dir is not None:
                config = config.replace(data={"data_dir": str(data_dir)})
            run = vaelab.train(config, Path(tmp) / name, show_progress=False)
            history = read_metrics(run)
            recorded = json.loads((run / "config.json").read_text())
            return sum(e["seconds"] for e in history), sum(e["images"] for e in history), {
                "test_loss": history[-1]["test"]["loss"], "world_size": recorded.get("world_size"),
                **{k: recorded["train"][k] for k in ("procs", "threads", "precision", "channels_last")
                   if k in recorded["train"]}}

        if steps is None:
            seconds, images, config = clock("epoch")
        else:
            data_dir = quick_test_mnist(Path(tmp) / "mnist")
            if not (isinstance(train.get("procs"), int) and train["procs"] > 1):  # workers would start cold anyway
                clock("warm", data_dir, steps=WARMUP_STEPS)
            warm_seconds, warm_images, _ = clock("warm-up", data_dir, steps=WARMUP_STEPS)
            seconds, images, config = clock("timed", data_dir, steps=WARMUP_STEPS + steps)
            seconds, images = seconds - warm_seconds, images - warm_images
    test_loss = config.pop("test_loss")
    return {"images_per_s": images / seconds, "seconds": seconds, "images": images,
            "steps": steps or -(-images // batch), "test_loss": test_loss, "config": config}


def quick_test_mnist(folder: Path) -> Path:
    """MNIST's 60,000 training images and its first QUICK_TEST_IMAGES test images as (unofficial) IDX files:
    a run then trains on full MNIST, while its end-of-run test pass (untimed, but with all 10,000 images
    about half of a conv case's wall time) takes a tenth as long."""
    from vaelab.data.idx import write_idx
    from vaelab.data.sources import IDX_FILES

    data = load_mnist()
    arrays = (data.train_images[:, 0], data.train_labels, data.test_images[:QUICK_TEST_IMAGES, 0],
              data.test_labels[:QUICK_TEST_IMAGES])
    folder.mkdir(parents=True)
    for filename, array in zip(IDX_FILES, arrays):
        write_idx(folder / filename.removesuffix(".gz"), array.numpy())
    return folder


def run_tuned(arch: str, batch: int, steps: int | None, precision: str = "bf16") -> dict:
    """The loop a careful engineer writes: the training set as one in-memory float tensor, a randperm index
    sliced per batch (no DataLoader), bf16 autocast, channels-last for the conv net, Adam fused where the
    weights are contiguous (as vaelab's), torch's default threads."""
    from vaelab.models import build_model

    data = load_mnist()
    torch.manual_seed(0)
    channels_last = arch == "conv"
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(book_config(arch, batch).model).to(memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, fused=not channels_last or None)
    images = data.train_images.float() / 255

    def step(index: torch.Tensor) -> int:
        x = images[index].contiguous(memory_format=layout)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            posterior = model.posterior(x)
            mu, logvar = posterior.mean, posterior.logvar
            recon = model.decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
        loss = (1000 * (recon.float() - x).pow(2).mean(dim=(1, 2, 3))
                - 0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1))
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        optimizer.step()
        return len(index)

    result = timed(step, shuffled_slices(len(images), batch), steps, -(-len(images) // batch))
    return {**result, "config": loop_config(precision, channels_last)}


def run_plain(arch: str, batch: int, steps: int | None) -> dict:
    """The pytorch/examples VAE loop: DataLoader(TensorDataset), loss written out in the loop."""
    from torch.utils.data import DataLoader, TensorDataset

    from vaelab.models import build_model

    data = load_mnist()
    torch.manual_seed(0)
    model = build_model(book_config(arch, batch).model)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loader = DataLoader(TensorDataset(data.train_images.float() / 255, data.train_labels), batch_size=batch,
                        shuffle=True)

    def step(x: torch.Tensor) -> int:
        optimizer.zero_grad()
        posterior = model.posterior(x)
        mu, logvar = posterior.mean, posterior.logvar
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = model.decode(z)
        loss = (1000 * (recon - x).pow(2).mean(dim=(1, 2, 3)) - 0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1))
        loss.mean().backward()
        optimizer.step()
        return len(x)

    batches = (x for _ in itertools.count() for x, _ in loader)
    return {**timed(step, batches, steps, len(loader)), "config": loop_config("fp32", False)}


def run_pythae(arch: str, batch: int, steps: int | None) -> dict:
    """pythae's VAE model and BaseTrainer around the same encoder/decoder and the book's loss. With `steps`,
    the wall time of training on (WARMUP_STEPS + steps) batches' images less that on WARMUP_STEPS batches'
    (which removes pythae's set-up and end-of-training saving)."""
    import logging

    import torch.nn.functional as F
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from vaelab.models import build_model

    logging.getLogger("pythae").setLevel(logging.ERROR)

    class BookVAE(VAE):
        def loss_function(self, recon_x, x, mu, log_var, z):
            recon = 1000 * F.mse_loss(recon_x, x, reduction="none").flatten(1).mean(1)
            kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)
            return (recon + kl).mean(), recon.mean(), kl.mean()

    def fit(images: torch.Tensor, labels: torch.Tensor) -> float:
        torch.manual_seed(0)
        ours = build_model(book_config(arch, batch).model)

        class Encoder(BaseEncoder):
            def __init__(self):
                super().__init__()
                self.net = ours.encoder

            def forward(self, x):
                mean, logvar = self.net(x).chunk(2, dim=1)
                return ModelOutput(embedding=mean, log_covariance=logvar)

        class Decoder(BaseDecoder):
            def __init__(self):
                super().__init__()
                self.net = ours.decoder

            def forward(self, z):
                return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

        model = BookVAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=2), encoder=Encoder(), decoder=Decoder())
        with tempfile.TemporaryDirectory() as tmp:
            config = BaseTrainerConfig(output_dir=tmp, num_epochs=1, learning_rate=5e-4,
                                       per_device_train_batch_size=batch, per_device_eval_batch_size=1000,
                                       no_cuda=True, steps_saving=None)
            trainer = BaseTrainer(model, train_dataset=BaseDataset(images, labels), training_config=config)
            start = time.perf_counter()
            trainer.train()
            return time.perf_counter() - start

    data = load_mnist()
    images, labels = data.train_images.float() / 255, data.train_labels
    if steps is None:
        seconds, count = fit(images, labels), len(images)
    else:
        warm, full = WARMUP_STEPS * batch, (WARMUP_STEPS + steps) * batch
        seconds, count = fit(images[:full], labels[:full]) - fit(images[:warm], labels[:warm]), full - warm
    return {"images_per_s": count / seconds, "seconds": seconds, "images": count, "steps": -(-count // batch),
            "config": loop_config("fp32", False),
            "note": "wall time of trainer.train(), which includes pythae's own end-of-training saving"
                    + ("" if steps is None else "; the difference of two runs removes it")}


def run_iw_bound(arch: str, batch: None, steps: int | None, k: int) -> dict:
    """Evaluation throughput: the K-sample importance-weighted bound over the test set (its first
    IW_QUICK_IMAGES under --steps) for a 2-D VAE with a Bernoulli decoder (untrained: the cost does not
    depend on the weights)."""
    from vaelab.config import ModelConfig
    from vaelab.data.pixels import fixed_test_pixels
    from vaelab.metrics.likelihood import iw_log_likelihood
    from vaelab.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(model="vae", arch=arch, likelihood="bernoulli")).eval()
    x = fixed_test_pixels(load_mnist().test_images, "dynamic")
    x = x if steps is None else x[:IW_QUICK_IMAGES]
    start = time.perf_counter()
    bound = iw_log_likelihood(model, x, k)
    seconds = time.perf_counter() - start
    return {"images_per_s": len(x) / seconds, "seconds": seconds, "images": len(x),
            "decodes_per_s": len(x) * k / seconds, "iw_samples": k, "finite": bool(torch.isfinite(bound).all())}


@dataclass(frozen=True)
class Case:
    run: Callable[..., dict]
    arch: str
    batch: int | None
    options: dict = field(default_factory=dict)
    share: float = 1.0  # this case times share x --steps steps: slow cases fewer, so the list stays ~6 minutes
    busy: bool = False  # a busy loop on the last core for the whole case (a laptop's other programs)


FAST = {"precision": "bf16", "channels_last": True}  # the speed levers of the book-vae-fast preset, bf16 forced
FAST_CONV = {"precision": "auto", "channels_last": True}  # book-vae-fast's levers as the preset sets them
FAST_MLP = {"precision": "auto"}
LAYOUTS = {"1x1": {"procs": 1, "threads": 1}, "1x2": {"procs": 1, "threads": 2}, "2x1": {"procs": 2, "threads": 1},
           "auto": {"procs": "auto", "threads": "auto"}}
# With --steps 300 the default list takes about 11 minutes on 2 cores (measured twice), ~10 s of it per case fixed
# (process start, data load, a vaelab run's end-of-run test pass): the conv cases time 90 steps (14-34 s quiet),
# the MLP's (~14x fewer FLOPs per step) 600 (6-15 s); fewer, 2-3 s of MLP steps, varied by 30% between identical
# cases on this project's VM. Each case's wall time is in the JSON (case_seconds).
SHARES = {"conv": 0.3, "mlp": 2.0}
BUSY_SHARE = 1 / 3  # a case with a busy neighbour runs up to ~3.5x slower


def issue12_cases(arch: str) -> dict[str, Case]:
    """Issue 12's comparison for one network at batch 128: vaelab's processes x threads layouts, the tuned
    loop in both precisions, the naive loop and pythae; then the busy-neighbour cases."""
    share, fast = SHARES[arch], FAST_CONV if arch == "conv" else FAST_MLP
    cases = {f"vaelab-{arch}-b128-{name}": Case(run_vaelab, arch, 128, {**fast, **layout}, share)
             for name, layout in LAYOUTS.items()}
    cases[f"tuned-{arch}-b128"] = Case(run_tuned, arch, 128, {"precision": "bf16"}, share)
    cases[f"tuned-fp32-{arch}-b128"] = Case(run_tuned, arch, 128, {"precision": "fp32"}, share)
    cases[f"plain-{arch}-b128"] = Case(run_plain, arch, 128, {}, share)
    cases[f"pythae-{arch}-b128"] = Case(run_pythae, arch, 128, {}, share)
    for name in (f"vaelab-{arch}-b128-auto", f"vaelab-{arch}-b128-1x2", f"vaelab-{arch}-b128-1x1",
                 f"tuned-fp32-{arch}-b128"):
        quiet = cases[name]
        cases[f"{name}-busy"] = Case(quiet.run, arch, 128, quiet.options, share * BUSY_SHARE, busy=True)
    return cases


DEFAULT_CASES = {**issue12_cases("conv"), **issue12_cases("mlp"),
                 "iw-mlp-k1000": Case(run_iw_bound, "mlp", None, {"k": 1000})}
# each single-lever case differs from its baseline in one lever (`--cases all`)
LEVER_CASES = {
    "vaelab-conv-b32": Case(run_vaelab, "conv", 32),
    "vaelab-conv-b128": Case(run_vaelab, "conv", 128),
    "vaelab-conv-b128-cl": Case(run_vaelab, "conv", 128, {"channels_last": True}),
    "vaelab-conv-b128-bf16": Case(run_vaelab, "conv", 128, {"precision": "bf16"}),
    "vaelab-conv-b128-fast": Case(run_vaelab, "conv", 128, FAST),
    "vaelab-conv-b32-fast": Case(run_vaelab, "conv", 32, FAST),
    "vaelab-mlp-b128": Case(run_vaelab, "mlp", 128, {}, SHARES["mlp"]),
    "vaelab-mlp-b128-bf16": Case(run_vaelab, "mlp", 128, {"precision": "bf16"}, SHARES["mlp"]),
    "plain-conv-b32": Case(run_plain, "conv", 32),
}
CASES = {**DEFAULT_CASES, **LEVER_CASES}


EMULATED_BF16_SHARE = 0.1  # bf16 where the CPU lacks it in hardware runs ~10x slower than fp32 (AVX2: 40 vs 433 img/s)


def case_steps(case: Case, steps: int | None) -> int | None:
    """The steps a case times under --steps: its share of them, a tenth of that for emulated bf16."""
    if steps is None:
        return None
    emulated = case.options.get("precision") == "bf16" and not native_bf16(torch.device("cpu"))
    return max(1, round(steps * case.share * (EMULATED_BF16_SHARE if emulated else 1.0)))


def run_case(name: str, steps: int | None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)  # vaelab's execution line
    case = CASES[name]
    result = case.run(case.arch, case.batch, case_steps(case, steps), **case.options)
    result.update(case=name, arch=case.arch, batch_size=case.batch, busy=case.busy,
                  timed="epoch" if steps is None else "steps", peak_rss_mib=round(peak_rss_mib(), 1))
    if ((result.get("config") or {}).get("world_size") or 1) > 1:  # the processes vaelab started (--procs)
        result["workers_peak_rss_mib"] = round(peak_rss_mib(resource.RUSAGE_CHILDREN), 1)
    return result


EXECUTION = re.compile(r"^\S+: (\d+) process(?:es)? x (\d+) thread", re.MULTILINE)


def execution_layout(log_text: str) -> str | None:
    """'PxT' from the last line in which vaelab said how a run used the machine ('cpu: 2 processes x 1 thread,
    ...'): with procs or threads 'auto', config.json keeps 'auto' and only this line has the choice."""
    found = EXECUTION.findall(log_text)
    return f"{found[-1][0]}x{found[-1][1]}" if found else None


BUSY_LOOP = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@contextlib.contextmanager
def busy_neighbour(active: bool):
    """Another program at work: a pure-Python busy loop pinned to the last core while the case runs."""
    if not active:
        yield
        return
    loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(max(os.sched_getaffinity(0)))])
    try:
        yield
    finally:
        loop.kill()
        loop.wait()


def skip_reason(case: Case) -> str | None:
    if case.run is run_pythae and importlib.util.find_spec("pythae") is None:
        return "pythae not installed: bash install.sh bench"
    if case.busy and not hasattr(os, "sched_setaffinity"):
        return "a busy neighbour needs os.sched_setaffinity (Linux)"
    return None


def kind(result: dict) -> str:
    """vaelab, tuned (either precision), plain or pythae."""
    return result["case"].split("-")[0]


def add_ratios(results: list[dict], peak: float, bf16_peak: float) -> None:
    """GFLOP/s and % of both peaks; images/s over the tuned loop (the faster of its two precisions), the plain
    loop and pythae at the same network, batch and neighbour; a busy case's images/s over its quiet case's."""
    trained = [r for r in results if "flops_per_image" in r]
    best: dict[tuple, float] = {}
    for r in trained:
        key = (kind(r), r["arch"], r["batch_size"], r["busy"])
        best[key] = max(best.get(key, 0.0), r["images_per_s"])
    by_name = {r["case"]: r for r in trained}
    for r in trained:
        r["gflops"] = r["flops_per_image"] * r["images_per_s"] / 1e9
        r["fraction_of_peak"], r["fraction_of_bf16_peak"] = r["gflops"] / peak, r["gflops"] / bf16_peak
        for peer in ("tuned", "plain", "pythae"):
            other = best.get((peer, r["arch"], r["batch_size"], r["busy"]))
            if other:
                r[f"x_{peer}"] = r["images_per_s"] / other
        quiet = by_name.get(r["case"].removesuffix("-busy")) if r["busy"] else None
        if quiet:
            r["x_quiet"] = r["images_per_s"] / quiet["images_per_s"]


def describe(result: dict) -> str:
    """'2x1 fp32 NHWC': processes x threads, precision, layout, as the case ran (vaelab's own line, else its
    config.json)."""
    config = result.get("config")
    if not config:
        return ""
    procs_threads = result.get("execution") or f"{config.get('procs', '?')}x{config.get('threads', '?')}"
    layout = "NHWC" if config.get("channels_last") else "NCHW"
    return f"{procs_threads} {config.get('precision', '?')} {layout}"


def print_table(results: list[dict], peak: float, bf16_peak: float, steps: int | None) -> None:
    bf16 = "native" if native_bf16(torch.device("cpu")) else "emulated"
    print(f"\nfp32 matmul peak {peak:.1f} GFLOP/s, bf16 {bf16_peak:.1f} GFLOP/s ({bf16}) "
          f"({torch.get_num_threads()} threads, {platform.machine()}, {os.cpu_count()} CPUs); "
          + ("one epoch of full MNIST per case, warm-up included" if steps is None else
             f"per case, 'steps' timed steps after {WARMUP_STEPS} warm-up steps (--steps {steps} x the case's share)"))
    print("x tuned: over the faster of the tuned loop's bf16 and fp32 variants at the same network, batch and "
          "neighbour; x quiet: a -busy case over the same case without the busy neighbour")
    head = (f"{'case':<28} {'steps':>5} {'img/s':>7} {'s':>6} {'RSS MiB':>7} {'GFLOP/s':>7} {'%fp32pk':>7} "
            f"{'%bf16pk':>7} {'x tuned':>7} {'x plain':>7} {'x pythae':>8} {'x quiet':>7} {'test loss':>9}  config")
    print(head)
    for r in results:
        if "error" in r or "skipped" in r:
            print(f"{r['case']:<28} {'failed: ' + r['error'] if 'error' in r else r['skipped']}")
        elif "flops_per_image" in r:
            ratios = [f"{r[f'x_{peer}']:.2f}x" if f"x_{peer}" in r else "" for peer in ("tuned", "plain", "pythae",
                                                                                          "quiet")]
            loss = f"{r['test_loss']:9.2f}" if "test_loss" in r else " " * 9
            print(f"{r['case']:<28} {r['steps']:>5} {r['images_per_s']:7.0f} {r['seconds']:6.1f} "
                  f"{r['peak_rss_mib']:7.0f} {r['gflops']:7.1f} {100 * r['fraction_of_peak']:6.1f}% "
                  f"{100 * r['fraction_of_bf16_peak']:6.1f}% {ratios[0]:>7} {ratios[1]:>7} {ratios[2]:>8} "
                  f"{ratios[3]:>7} {loss}  {describe(r)}")
    for r in results:
        if "iw_samples" in r:
            print(f"{r['case']}: K={r['iw_samples']} importance-weighted bound over {r['images']:,} test images in "
                  f"{r['seconds']:.1f} s ({r['decodes_per_s']:.0f} decodes/s)")


def parse_cases(text: str) -> list[str]:
    names = {"default": list(DEFAULT_CASES), "all": list(CASES)}.get(text)
    return names if names is not None else [c for c in text.split(",") if c]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="default",
                        help=f"'default', 'all', or a comma-separated subset of: {', '.join(CASES)}")
    parser.add_argument("--steps", type=int, help="time this many optimiser steps per case (times the case's "
                        "share) after a warm-up, instead of one full epoch")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.case:
        print(json.dumps(run_case(args.case, args.steps)))
        return

    names = parse_cases(args.cases)
    unknown = set(names) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    began = time.perf_counter()
    peak = matmul_peak_gflops()
    bf16_peak = matmul_peak_gflops(dtype=torch.bfloat16)
    flops = {arch: flops_per_image(arch) for arch in {CASES[n].arch for n in names if CASES[n].batch}}
    results = []
    for name in names:
        case = CASES[name]
        if reason := skip_reason(case):
            results.append({"case": name, "skipped": reason})
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        steps = [] if args.steps is None else ["--steps", str(args.steps)]
        command = [sys.executable, __file__, "--case", name, *steps]
        started = time.perf_counter()
        with busy_neighbour(case.busy):
            proc = subprocess.run(command, capture_output=True, text=True)
        case_seconds = time.perf_counter() - started
        if proc.returncode != 0:
            results.append({"case": name, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]})
            continue
        result = {**json.loads(proc.stdout.strip().splitlines()[-1]), "case_seconds": case_seconds}
        if layout := execution_layout(proc.stderr):
            result["execution"] = layout
        if case.batch:  # training
            result["flops_per_image"] = flops[case.arch]
        results.append(result)
    add_ratios(results, peak, bf16_peak)
    print_table(results, peak, bf16_peak, args.steps)
    print(f"\nthe benchmark took {time.perf_counter() - began:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"matmul_peak_gflops": peak, "bf16_matmul_peak_gflops": bf16_peak,
                                     "threads": torch.get_num_threads(), "torch": torch.__version__,
                                     "bf16_native": native_bf16(torch.device("cpu")),
                                     "machine": platform.machine(), "cpu_count": os.cpu_count(),
                                     "load_average_1min": os.getloadavg()[0], "steps": args.steps,
                                     "warmup_steps": WARMUP_STEPS, "results": results}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
