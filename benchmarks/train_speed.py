"""Training speed: vaelab vs a plain PyTorch loop vs pythae, against this machine's fp32 matmul peak.

    python benchmarks/train_speed.py                       # full MNIST from $VAELAB_DATA_DIR or the cache
    python benchmarks/train_speed.py --cases vaelab-conv-b128,plain-conv-b128 --json out.json

Every training case trains the same network (the book's conv VAE, or the 2-D MLP VAE) with the same
loss (1000 * mean-pixel MSE + KL, Adam 5e-4) for one epoch of full MNIST, each in a fresh subprocess
so its peak RSS is its own: vaelab with and without each speed lever (channels-last, bf16 autocast),
a plain PyTorch loop over DataLoader(TensorDataset) as in pytorch/examples, and pythae's trainer
(`bash install.sh bench`). The last case times the K=1000 importance-weighted bound over the test
set. All cases run in one invocation, so their ratios hold on a noisy machine. Prints a table and
writes JSON; it never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

DEFAULT_JSON = Path(__file__).parent / "results" / "train_speed.json"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_gflops(size: int = 2048, seconds: float = 3.0, dtype: torch.dtype = torch.float32) -> float:
    """Best sustained GEMM rate (GFLOP/s) on all threads: the roof the models are measured against."""
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


def flops_per_image(model, batch: int) -> float:
    """Forward + backward FLOPs of one training step, per image (PyTorch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model.loss(x)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def load_mnist():
    import vaelab

    return vaelab.load_dataset("mnist")


def book_config(arch: str, batch: int, **levers):
    import vaelab

    return vaelab.preset("book-vae").replace(data={"dataset": "mnist"}, model={"arch": arch},
                                             train={"epochs": 1, "batch_size": batch, "device": "cpu", **levers})


# --- the cases: each returns {"images_per_s", "seconds", "test_loss"?} --------------------------------

def run_vaelab(arch: str, batch: int, **levers) -> dict:
    """One epoch of `vaelab.train` (the first epoch: warm-up costs such as oneDNN's kernel choice count)."""
    import tempfile

    import vaelab
    from vaelab.runs import read_metrics

    with tempfile.TemporaryDirectory() as tmp:
        run = vaelab.train(book_config(arch, batch, **levers), Path(tmp) / "run", show_progress=False)
        epoch = read_metrics(run)[0]
    return {"images_per_s": epoch["images_per_s"], "seconds": epoch["seconds"], "test_loss": epoch["test"]["loss"]}


def run_iw_bound(arch: str, k: int) -> dict:
    """Evaluation throughput: the K-sample importance-weighted bound over the whole test set for a 2-D VAE
    with a Bernoulli decoder (untrained: the cost does not depend on the weights)."""
    from vaelab.config import ModelConfig
    from vaelab.data.pixels import fixed_test_pixels
    from vaelab.metrics.likelihood import iw_log_likelihood
    from vaelab.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(model="vae", arch=arch, likelihood="bernoulli")).eval()
    x = fixed_test_pixels(load_mnist().test_images, "dynamic")
    start = time.perf_counter()
    bound = iw_log_likelihood(model, x, k)
    seconds = time.perf_counter() - start
    return {"images_per_s": len(x) / seconds, "seconds": seconds, "decodes_per_s": len(x) * k / seconds,
            "iw_samples": k, "finite": bool(torch.isfinite(bound).all())}


def run_plain(arch: str, batch: int) -> dict:
    """The pytorch/examples VAE loop: DataLoader(TensorDataset), loss written out in the loop."""
    from torch.utils.data import DataLoader, TensorDataset

    from vaelab.models import build_model

    data = load_mnist()
    torch.manual_seed(0)
    model = build_model(book_config(arch, batch).model)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loader = DataLoader(TensorDataset(data.train_images.float() / 255, data.train_labels), batch_size=batch,
                        shuffle=True)
    start = time.perf_counter()
    for x, _ in loader:
        optimizer.zero_grad()
        posterior = model.posterior(x)
        mu, logvar = posterior.mean, posterior.logvar
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = model.decode(z)
        loss = (1000 * (recon - x).pow(2).mean(dim=(1, 2, 3)) - 0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1))
        loss.mean().backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    return {"images_per_s": len(data.train_images) / seconds, "seconds": seconds}


def run_pythae(arch: str, batch: int) -> dict:
    """pythae's VAE model and BaseTrainer around the same encoder/decoder and the book's loss."""
    import logging
    import tempfile

    import torch.nn.functional as F
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from vaelab.models import build_model

    logging.getLogger("pythae").setLevel(logging.ERROR)
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

    class BookVAE(VAE):
        def loss_function(self, recon_x, x, mu, log_var, z):
            recon = 1000 * F.mse_loss(recon_x, x, reduction="none").flatten(1).mean(1)
            kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)
            return (recon + kl).mean(), recon.mean(), kl.mean()

    data = load_mnist()
    model = BookVAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=2), encoder=Encoder(), decoder=Decoder())
    with tempfile.TemporaryDirectory() as tmp:
        config = BaseTrainerConfig(output_dir=tmp, num_epochs=1, learning_rate=5e-4, per_device_train_batch_size=batch,
                                   per_device_eval_batch_size=1000, no_cuda=True, steps_saving=None)
        dataset = BaseDataset(data.train_images.float() / 255, data.train_labels)
        trainer = BaseTrainer(model, train_dataset=dataset, training_config=config)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"images_per_s": len(data.train_images) / seconds, "seconds": seconds,
            "note": "wall time of trainer.train(), which includes pythae's own end-of-training saving"}


FAST = {"precision": "bf16", "channels_last": True}  # the speed levers of the book-vae-fast preset
# name: (function, arch, batch size, keyword arguments); each lever case differs from its baseline in one lever
CASES = {
    "vaelab-conv-b32": (run_vaelab, "conv", 32, {}),
    "vaelab-conv-b128": (run_vaelab, "conv", 128, {}),
    "vaelab-conv-b128-cl": (run_vaelab, "conv", 128, {"channels_last": True}),
    "vaelab-conv-b128-bf16": (run_vaelab, "conv", 128, {"precision": "bf16"}),
    "vaelab-conv-b128-fast": (run_vaelab, "conv", 128, FAST),
    "vaelab-conv-b32-fast": (run_vaelab, "conv", 32, FAST),
    "vaelab-mlp-b128": (run_vaelab, "mlp", 128, {}),
    "vaelab-mlp-b128-bf16": (run_vaelab, "mlp", 128, {"precision": "bf16"}),
    "plain-conv-b32": (run_plain, "conv", 32, {}),
    "plain-conv-b128": (run_plain, "conv", 128, {}),
    "pythae-conv-b128": (run_pythae, "conv", 128, {}),
    "iw-mlp-k1000": (run_iw_bound, "mlp", None, {"k": 1000}),
}


def run_case(name: str) -> dict:
    from vaelab.config import ModelConfig
    from vaelab.models import build_model

    fn, arch, batch, kwargs = CASES[name]
    result = fn(arch, batch, **kwargs) if batch else fn(arch, **kwargs)
    result.update(case=name, arch=arch, batch_size=batch, peak_rss_mib=round(peak_rss_mib(), 1))
    if batch:  # training: forward + backward FLOPs
        result["flops_per_image"] = flops_per_image(build_model(ModelConfig(model="vae", arch=arch)), batch)
    return result


def print_table(results: list[dict], peak: float, bf16_peak: float) -> None:
    """Training cases against the plain loop and pythae at the same network and batch size; then evaluation."""
    def key(result: dict) -> str:
        return f"{result['arch']}-b{result['batch_size']}"

    peers = {(r["case"].split("-")[0], key(r)): r["images_per_s"] for r in results if "error" not in r}
    print(f"\nfp32 matmul peak {peak:.1f} GFLOP/s, bf16 {bf16_peak:.1f} GFLOP/s "
          f"({torch.get_num_threads()} threads, {platform.machine()}); % peak is of the fp32 peak")
    print(f"{'case':<22} {'img/s':>7} {'s/epoch':>8} {'RSS MiB':>8} {'GFLOP/s':>8} {'% peak':>7} "
          f"{'x plain':>8} {'x pythae':>8} {'test loss':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['case']:<22} failed: {r['error']}")
        elif "flops_per_image" in r:
            ratios = [peers.get((peer, key(r))) for peer in ("plain", "pythae")]
            shown = [f"{r['images_per_s'] / p:.2f}x" if p else "" for p in ratios]
            print(f"{r['case']:<22} {r['images_per_s']:7.0f} {r['seconds']:8.1f} {r['peak_rss_mib']:8.0f} "
                  f"{r['gflops']:8.1f} {100 * r['fraction_of_peak']:6.1f}% {shown[0]:>8} {shown[1]:>8} "
                  f"{r.get('test_loss', float('nan')):9.2f}")
    for r in results:
        if "iw_samples" in r:
            print(f"{r['case']}: K={r['iw_samples']} importance-weighted bound over 10,000 test images in "
                  f"{r['seconds']:.1f} s ({r['decodes_per_s']:.0f} decodes/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of: {', '.join(CASES)}")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return

    names = [c for c in args.cases.split(",") if c]
    unknown = set(names) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    peak = matmul_peak_gflops()
    bf16_peak = matmul_peak_gflops(dtype=torch.bfloat16)
    results = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True)
        if proc.returncode != 0:
            results.append({"case": name, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]})
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if "flops_per_image" in result:
            result["gflops"] = result["flops_per_image"] * result["images_per_s"] / 1e9
            result["fraction_of_peak"] = result["gflops"] / peak
        results.append(result)
    print_table(results, peak, bf16_peak)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"matmul_peak_gflops": peak, "bf16_matmul_peak_gflops": bf16_peak,
                                     "threads": torch.get_num_threads(), "torch": torch.__version__,
                                     "machine": platform.machine(), "cpu_count": os.cpu_count(),
                                     "load_average_1min": os.getloadavg()[0], "results": results}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
