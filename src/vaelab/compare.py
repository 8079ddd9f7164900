"""`vaelab compare`: the book's chapter-3 study, end to end.

    train an AE and a VAE with the same network on the same data (or take two existing runs)
    -> the dataset's reference classifier (trained once, cached)
    -> every metric of each run: likelihood, flaw 1 (samples), flaws 2 and 3 (codes)
    -> figures/*.png, report.html, report.md, metrics.json

Everything is written into a hidden staging folder beside `out` and renamed
into place at the very end, so a failed or interrupted study leaves no
half-written report. Trained runs live inside the report (runs/ae, runs/vae)
and can be compared again with --runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vaelab.config import DataConfig, RunConfig, validate
from vaelab.config import preset as named_preset
from vaelab.data import ImageData, load_dataset
from vaelab.errors import VaelabError
from vaelab.metrics import Recipe, reference, run_metrics
from vaelab.metrics.likelihood import check_iw_samples
from vaelab.report import build_view, render, render_html, render_markdown, verdicts
from vaelab.runs import RunLock, atomic_write, clean_leftovers, load, read_config, read_metrics, write_json
from vaelab.train import train
from vaelab.train.loop import resolve_device, versions

log = logging.getLogger("vaelab")

IW_SAMPLES = 10  # default K for the study: a conv decoder runs 10 x 10,000 decodes in seconds on a CPU
FIGURE_FOLDER = "figures"


@dataclass(frozen=True)
class StudyPreset:
    """The two runs' starting configs (book-ae and book-vae) and the training settings laid over both."""

    description: str
    train: dict
    min_images: int = 0  # unless --epochs is given, epochs rise until each model sees this many training images


STUDY_PRESETS = {
    # Fast enough for a laptop CPU (full MNIST in minutes) and long enough for the flaws to show. The book's
    # batch and rate: with bf16 and channels-last, batch 32 runs as fast per image as 128 and takes four times
    # the steps. The AE's unconstrained codes make it fragile at higher rates (at 1e-3 and 2e-3 with batch 128
    # it can stall at the mean image for good), so both models keep the book's rate.
    "fast": StudyPreset("the book's networks, losses, batch 32 and lr 5e-4, trained for speed: warm-up and cosine "
                        "decay, bf16 where the hardware has it, channels-last; 3 epochs, or more on a small "
                        "dataset so that each model sees at least 60,000 images",
                        {"epochs": 3, "batch_size": 32, "lr": 5e-4, "lr_schedule": "warmup-cosine",
                         "precision": "auto", "channels_last": True}, min_images=60_000),
    # Generative Deep Learning, ch. 3 as printed: batch 32, lr 5e-4 (epochs: vaelab's default unless given).
    "book": StudyPreset("the book's exact settings: book-ae and book-vae presets, batch 32, lr 5e-4", {}),
}
STUDY_RUNS = (("book-ae", "ae"), ("book-vae", "vae"))  # base preset, run folder name
OPTIONS = {"data": ("dataset", "data_dir"), "model": ("latent_dim", "arch"),
           "train": ("epochs", "batch_size", "lr", "seed", "device")}  # what the compare flags may change


def study_configs(preset: str, options: dict, n_train: int) -> dict[str, RunConfig]:
    """The AE's and the VAE's configs: the base preset, the study preset's training, then the options."""
    if preset not in STUDY_PRESETS:
        raise VaelabError(f"unknown compare preset {preset!r}; choose from: {', '.join(STUDY_PRESETS)}")
    study = STUDY_PRESETS[preset]
    changes = {section: {k: options[k] for k in keys if options.get(k) is not None}
               for section, keys in OPTIONS.items()}
    configs = {folder: named_preset(base).replace(train=study.train).replace(**changes) for base, folder in STUDY_RUNS}
    if options.get("epochs") is None and study.min_images:
        enough = math.ceil(study.min_images / max(n_train, 1))
        configs = {folder: config.replace(train={"epochs": max(config.train.epochs, enough)})
                   for folder, config in configs.items()}
    return {folder: validate(config) for folder, config in configs.items()}


def resolve_dataset(dataset: str | None, data_dir: str | None) -> tuple[str, int]:
    """The dataset's name and training-set size, found once ('auto' decides here) so both runs use the same."""
    data = load_dataset(dataset or DataConfig().dataset, data_dir)
    return data.name, len(data.train_images)


@contextlib.contextmanager
def staged_folder(out: Path):
    """A hidden folder beside `out` that becomes `out` only when the block finishes without error; one study
    writes `out` at a time (RunLock), and the staging folders of killed studies are removed first."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VaelabError(f"{out} already exists and is not empty; choose another --out or remove it")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaelabError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    lock = RunLock(out)
    lock.acquire()
    try:
        clean_leftovers(out, lock)
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
        except OSError as exc:
            raise VaelabError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
        yield staging
        try:
            if out.exists():
                out.rmdir()  # an empty folder made beforehand
            os.replace(staging, out)
        except OSError as exc:
            raise VaelabError(f"cannot create {out} ({exc.strerror or exc}): something else wrote there "
                              f"meanwhile") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        lock.release()


def run_labels(run_dirs: list[Path], models: list[str]) -> list[str]:
    """'AE' and 'VAE'; the folder name is added when both runs are the same kind of model."""
    if len(set(models)) == len(models):
        return [m.upper() for m in models]
    return [f"{m.upper()} ({d.name})" for m, d in zip(models, run_dirs)]


def shared_data(run_dirs: list[Path], data_dir: str | None) -> ImageData:
    """The one dataset every run was trained on, checked against what each run recorded."""
    recorded = [read_config(d) for d in run_dirs]
    shapes = {tuple(config.model.image_shape) for config, _ in recorded}
    if len(shapes) > 1:
        raise VaelabError("the runs were trained on different image sizes ("
                          + ", ".join(f"{d}: {tuple(c.model.image_shape)}" for d, (c, _) in zip(run_dirs, recorded))
                          + "); compare runs on the same dataset")
    identities = [raw.get("dataset_identity", {}) for _, raw in recorded]
    if len({i.get("sha256") for i in identities}) > 1:
        raise VaelabError("the runs were trained on different datasets ("
                          + ", ".join(f"{d}: {i.get('name')} {str(i.get('sha256'))[:12]}"
                                      for d, i in zip(run_dirs, identities)) + "); compare runs on the same dataset")
    if identities[0].get("n_test") == 0:
        raise VaelabError(f"{run_dirs[0]} was trained on {identities[0].get('name')} without test images; "
                          f"the metrics need a test set")
    config = recorded[0][0]
    data = load_dataset(config.data.dataset, data_dir or config.data.data_dir)
    if data.identity()["sha256"] != identities[0].get("sha256"):
        raise VaelabError(f"the {data.name} data found now differs from the data {run_dirs[0]} was trained on "
                          f"(checksum mismatch); point --data-dir at the original files")
    return data


def describe_run(label: str, run_dir: Path, shown_path: str, config: RunConfig, metrics: dict) -> dict:
    history = read_metrics(run_dir)
    return {"label": label, "path": shown_path, "model": config.model.model, "arch": config.model.arch,
            "latent_dim": config.model.latent_dim, "likelihood": config.model.likelihood,
            "r_loss_factor": config.model.r_loss_factor, "pixels": config.data.pixels, "epochs": len(history),
            "batch_size": config.train.batch_size, "lr": config.train.lr,
            "train_seconds": round(sum(h["seconds"] for h in history), 1), "metrics": metrics}


def study(run_dirs: list[Path], shown_paths: list[str], folder: Path, *, data_dir: str | None, device: str,
          iw_samples: int, classifier: Recipe, show_progress: bool, seconds: dict) -> tuple[dict, list]:
    """Measure the runs and write their figures into `folder`; return metrics.json's content and the figures."""
    data = shared_data(run_dirs, data_dir)
    target = resolve_device(device)
    started = time.perf_counter()
    ref = reference(data, classifier, show_progress)
    ref.classifier.to(target)
    seconds["classifier"] = time.perf_counter() - started

    started = time.perf_counter()
    configs = [read_config(d)[0] for d in run_dirs]
    labels = run_labels(run_dirs, [c.model.model for c in configs])
    runs, views = [], []
    for label, run_dir, shown, config in zip(labels, run_dirs, shown_paths, configs):
        log.info("measuring %s (%s)", label, run_dir)
        model = load(run_dir, target)
        metrics = run_metrics(model, data, config.data.pixels, ref, iw_samples, config.train.eval_batch_size)
        runs.append(describe_run(label, run_dir, shown, config, metrics))
        views.append(build_view(label, model, data, config.data.pixels, read_metrics(run_dir)))
    seconds["metrics"] = time.perf_counter() - started

    started = time.perf_counter()
    figures = render(views)
    (folder / FIGURE_FOLDER).mkdir()
    for figure in figures:
        atomic_write(folder / FIGURE_FOLDER / f"{figure.name}.png", figure.png)
    seconds["figures"] = time.perf_counter() - started

    result = {
        "format": "vaelab-study-1",
        "dataset": {k: v for k, v in data.identity().items() if k != "origin"},
        "calibration": ref.calibration,
        "runs": runs,
        "verdicts": [asdict(v) for v in verdicts(labels, [r["metrics"] for r in runs],
                                                  ref.calibration["precision_train_vs_test"])],
        "projections": {view.label: view.projection.description for view in views},
        "figures": [{"file": f"{FIGURE_FOLDER}/{f.name}.png", "title": f.title, "caption": f.caption}
                    for f in figures],
        "settings": {"iw_samples": iw_samples, "classifier_recipe": asdict(classifier)},
        "seconds": seconds,
        "versions": versions(),
    }
    return result, figures


def compare(runs: list[str | Path] | None = None, out: str | Path = "compare", *, preset: str = "fast",
            dataset: str | None = None, data_dir: str | None = None, latent_dim: int | None = None,
            arch: str | None = None, epochs: int | None = None, batch_size: int | None = None,
            lr: float | None = None, seed: int | None = None, device: str = "auto", iw_samples: int = IW_SAMPLES,
            classifier: Recipe = Recipe(), show_progress: bool = True) -> Path:
    """Train an AE and a VAE with the same network (or take two existing `runs`), measure both and write
    the report folder `out` (report.html, report.md, metrics.json, figures/). Returns `out`."""
    check_iw_samples(iw_samples)
    options = {"dataset": dataset, "latent_dim": latent_dim, "arch": arch, "epochs": epochs,
               "batch_size": batch_size, "lr": lr, "seed": seed}
    if runs is not None:
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise VaelabError(f"--runs compares existing runs with their own settings; "
                              f"--{given[0].replace('_', '-')} does not apply")
        if len(runs) != 2:
            raise VaelabError(f"--runs takes two run folders, got {len(runs)}")
        for run in runs:
            read_config(run)  # a missing or foreign folder fails now, before any work
    configs = None
    if runs is None:
        options["dataset"], n_train = resolve_dataset(dataset, data_dir)
        configs = study_configs(preset, {**options, "data_dir": data_dir, "device": device}, n_train)
    out = Path(out)
    total = time.perf_counter()
    seconds: dict[str, float] = {}
    with staged_folder(out) as folder:
        if configs is not None:
            started = time.perf_counter()
            run_dirs = [train(config, folder / "runs" / name, show_progress=show_progress)
                        for name, config in configs.items()]
            seconds["training"] = time.perf_counter() - started
            shown = [f"runs/{name}" for name in configs]
        else:
            run_dirs, shown = [Path(r) for r in runs], [str(r) for r in runs]
        result, figures = study(run_dirs, shown, folder, data_dir=data_dir, device=device, iw_samples=iw_samples,
                                classifier=classifier, show_progress=show_progress, seconds=seconds)
        seconds["total"] = time.perf_counter() - total
        result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
        write_json(folder / "metrics.json", result)
        atomic_write(folder / "report.md", render_markdown(result, figures, FIGURE_FOLDER).encode())
        atomic_write(folder / "report.html", render_html(result, figures).encode())
    log.info("report: %s", out / "report.html")
    return out
