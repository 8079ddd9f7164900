"""`vaelab compare`: the book's chapter-3 study, end to end.

    train an AE and a VAE with the same network on the same data, for one seed or several, in parallel
    processes on the cores (or take two existing runs)
    -> the dataset's reference classifier (trained once, cached)
    -> every metric of each run: likelihood, flaw 1 (samples), flaws 2 and 3 (codes)
    -> figures/*.png, report.html, report.md, metrics.json

Everything is written into a hidden staging folder beside `out` and renamed
into place at the very end, so a failed or interrupted study leaves no
half-written report. Trained runs live inside the report (runs/ae, runs/vae;
runs/ae-seed0, ... with several seeds) and can be compared again with --runs.
With several seeds every metric is reported as mean ± standard deviation over
the seeds, and a flaw's verdict names a winner only when the difference of the
means exceeds the seeds' spread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from vaelab.config import DataConfig, RunConfig, validate
from vaelab.config import preset as named_preset
from vaelab.data import ImageData, load_data, load_dataset
from vaelab.errors import VaelabError
from vaelab.metrics import Recipe, reference, run_metrics
from vaelab.metrics.likelihood import check_iw_samples
from vaelab.report.summary import verdicts
from vaelab.report.views import build_view
from vaelab.runs import RunLock, atomic_write, clean_leftovers, load, read_config, read_metrics, write_json
from vaelab.train.cores import on_free_cores
from vaelab.train.length import format_duration
from vaelab.train.loop import resolve_device, versions
from vaelab.train.parallel import plan, train_many, waves

log = logging.getLogger("vaelab")

IW_SAMPLES = 10  # default K for the study: a conv decoder runs 10 x 10,000 decodes in seconds on a CPU
FIGURE_FOLDER = "figures"


@dataclass(frozen=True)
class StudyPreset:
    """What is laid over the book's two presets (book-ae, book-vae) for both runs of a study; `per_run` adds
    training settings to one of them only (the AE and the VAE learn best at different rates)."""

    description: str
    model: dict
    train: dict
    timed: bool = False  # unless --epochs or --time-budget is given, train for study_budget(n_train)
    per_run: dict = field(default_factory=dict)  # base preset name -> train settings for its runs


STUDY_PRESETS = {
    # The best trained models per minute on 2 CPU cores, chosen by measurement (docs/training.md): the book's
    # losses on the 784-512-256 MLP with LayerNorm (about 10x cheaper per image than the book's conv net), batch
    # 128, Adam (the AE at 5e-3, the VAE at 3e-3) with warm-up and cosine decay over a time budget, the VAE's KL
    # weight warmed up over the first quarter; each run in its own single-threaded process.
    "fast": StudyPreset("the book's losses on the MLP (784-512-256-2 and mirror, LayerNorm before each hidden "
                        "ReLU), batch 128, Adam (AE 5e-3, VAE 3e-3), warm-up and cosine decay over a time budget "
                        "(4m on full MNIST, 1m40s on the 4,000-image sample), the KL term's weight rising from 0 "
                        "to 1 over the first quarter",
                        {"arch": "mlp-ln"}, {"batch_size": 128, "lr_schedule": "warmup-cosine", "precision": "auto"},
                        timed=True, per_run={"book-ae": {"lr": 5e-3}, "book-vae": {"lr": 3e-3, "kl_warmup": 0.25}}),
    # Generative Deep Learning, ch. 3 as printed: conv net, batch 32, lr 5e-4 (epochs: vaelab's default unless given).
    "book": StudyPreset("the book's exact settings: book-ae and book-vae presets (conv net, batch 32, lr 5e-4)",
                        {}, {}),
}
STUDY_RUNS = ("book-ae", "book-vae")  # the base presets; each run's folder is named after its model
OPTIONS = {"data": ("dataset", "data_dir", "image_size", "channels", "test_fraction"), "model": ("latent_dim", "arch"),
           "train": ("epochs", "time_budget", "batch_size", "lr", "device")}  # what the compare flags may change
SMALL_BUDGET, FULL_BUDGET, FULL_SIZE = 90.0, 240.0, 60_000


def study_budget(n_train: int) -> float:
    """The fast preset's training time in seconds: from 1m30s for a tiny dataset (1m40s for the 4,000-image
    sample) up to 4m at 60,000 images, so that the whole study ends within about 3 min on mnist-sample and
    6 min on MNIST (2 cores)."""
    return SMALL_BUDGET + (FULL_BUDGET - SMALL_BUDGET) * min(1.0, n_train / FULL_SIZE)


def study_configs(preset: str, options: dict, n_train: int, seeds: int = 1) -> list[tuple[str, RunConfig]]:
    """(run name, config) for each model and seed: the base preset, the study preset, then the options. Seeds
    count up from --seed (default 0); a time budget is the whole study's training time, split over its waves."""
    if preset not in STUDY_PRESETS:
        raise VaelabError(f"unknown compare preset {preset!r}; choose from: {', '.join(STUDY_PRESETS)}")
    if seeds < 1:
        raise VaelabError(f"seeds must be at least 1, got {seeds}")
    if options.get("epochs") is not None and options.get("time_budget") is not None:
        raise VaelabError("--epochs and --time-budget both set the runs' length; give one")
    study = STUDY_PRESETS[preset]
    changes = {section: {k: options[k] for k in keys if options.get(k) is not None}
               for section, keys in OPTIONS.items()}
    if study.timed and options.get("epochs") is None and options.get("time_budget") is None:
        changes["train"]["time_budget"] = study_budget(n_train)
    first_seed = options.get("seed") or 0
    configs = []
    for offset in range(seeds):
        for base in STUDY_RUNS:
            config = named_preset(base).replace(model=study.model, train={**study.train, **study.per_run.get(base, {})})
            config = config.replace(**changes)
            folder = config.model.model
            name = folder if seeds == 1 else f"{folder}-seed{first_seed + offset}"
            configs.append((name, validate(config.replace(train={"seed": first_seed + offset}))))
    return configs


def split_budget(configs: list[tuple[str, RunConfig]], processes: int) -> list[tuple[str, RunConfig]]:
    """Each run's share of the study's time budget when the runs go `processes` at a time."""
    rounds = waves(len(configs), processes)
    return [(name, config.replace(train={"time_budget": config.train.time_budget / rounds})
             if config.train.time_budget is not None else config) for name, config in configs]


def resolve_dataset(dataset: str | None, data_dir: str | None, image_size: tuple[int, int] | None = None,
                    channels: int | None = None, test_fraction: float | None = None) -> ImageData:
    """The dataset, found once ('auto' decides here) so that every run uses the same."""
    return load_dataset(dataset or DataConfig().dataset, data_dir, image_size=image_size, channels=channels,
                        test_fraction=DataConfig().test_fraction if test_fraction is None else test_fraction)


@contextlib.contextmanager
def staged_folder(out: Path, overwrite: bool = False):
    """A hidden folder beside `out` that becomes `out` only when the block finishes without error; one study
    writes `out` at a time (RunLock), and the staging folders of killed studies are removed first. With
    `overwrite`, an old report at `out` is replaced only once the new one is complete."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise VaelabError(f"{out} already exists and is not empty; choose another --out, or pass --overwrite "
                              f"to replace the report there once the new one is complete")
        if not (out / "metrics.json").is_file():
            raise VaelabError(f"{out} holds no vaelab report (no metrics.json); --overwrite replaces only reports")
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
        replaced = out.parent / f".{out.name}.replaced-{os.getpid()}"
        try:
            if out.exists() and overwrite and any(out.iterdir()):
                os.replace(out, replaced)  # the old report steps aside only now that the new one is whole
            elif out.exists():
                out.rmdir()  # an empty folder made beforehand
            os.replace(staging, out)
        except OSError as exc:
            raise VaelabError(f"cannot create {out} ({exc.strerror or exc}): something else wrote there "
                              f"meanwhile") from None
        shutil.rmtree(replaced, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        lock.release()


def run_labels(run_dirs: list[Path], models: list[str]) -> list[str]:
    """'AE' and 'VAE'; the folder name is added when both runs are the same kind of model."""
    if len(set(models)) == len(models):
        return [m.upper() for m in models]
    return [f"{m.upper()} ({d.name})" for m, d in zip(models, run_dirs)]


def shared_data(run_dirs: list[Path], data_dir: str | None, loaded: ImageData | None = None) -> ImageData:
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
    data = loaded or load_data(replace(config.data, data_dir=data_dir or config.data.data_dir))
    if data.identity()["sha256"] != identities[0].get("sha256"):
        raise VaelabError(f"the {data.name} data found now differs from the data {run_dirs[0]} was trained on "
                          f"(checksum mismatch); point --data-dir at the original files")
    return data


def describe_run(label: str, run_dirs: list[Path], shown_paths: list[str], configs: list[RunConfig],
                 seed_metrics: list[dict]) -> dict:
    """One model's entry in metrics.json: its settings, the metrics' mean over its seeds (their standard
    deviation as `spread` when there are several) and every seed's own numbers."""
    histories = [read_metrics(d) for d in run_dirs]
    config, history = configs[0], histories[0]
    mean, spread = aggregate(seed_metrics)
    return {"label": label, "path": shown_paths[0], "model": config.model.model, "arch": config.model.arch,
            "latent_dim": config.model.latent_dim, "likelihood": config.model.likelihood,
            "r_loss_factor": config.model.r_loss_factor, "beta": config.model.beta, "pixels": config.data.pixels,
            "epochs": len(history),
            "steps": history[-1].get("steps") if history else 0, "batch_size": config.train.batch_size,
            "lr": config.train.lr, "time_budget": config.train.time_budget,
            "train_seconds": round(sum(h["seconds"] for h in history), 1), "metrics": mean,
            "spread": spread if len(seed_metrics) > 1 else None,
            "seeds": [{"seed": c.train.seed, "path": shown, "epochs": len(h), "steps": h[-1].get("steps") if h else 0,
                       "metrics": m} for c, shown, h, m in zip(configs, shown_paths, histories, seed_metrics)]}


def aggregate(seed_metrics: list[dict]) -> tuple[dict, dict]:
    """(mean, standard deviation) of every number in a list of equally nested metric dicts; other values are
    taken from the first."""
    mean, spread = {}, {}
    for key, first in seed_metrics[0].items():
        values = [m[key] for m in seed_metrics]
        if isinstance(first, dict):
            mean[key], spread[key] = aggregate(values)
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            mean[key] = statistics.fmean(values)
            spread[key] = statistics.stdev(values) if len(values) > 1 else 0.0
        else:
            mean[key] = first
    return mean, spread


@dataclass
class Measured:
    """Each group's runs (one per seed) measured on one dataset with one reference classifier."""

    data: ImageData
    calibration: dict  # the reference classifier's numbers on real images
    labels: list[str]
    runs: list[dict]  # each group's metrics.json entry (describe_run)
    views: list  # each group's first seed, drawn
    seed_metrics: list[list[dict]]  # each group's metrics per seed


@on_free_cores()
def measure(groups: list[list[Path]], shown: list[list[str]], *, data_dir: str | None, device: str, iw_samples: int,
            classifier: Recipe, show_progress: bool, seconds: dict, data: ImageData | None = None,
            labels: list[str] | None = None) -> Measured:
    """Every metric of each group's runs and a view of its first seed, with the dataset's reference
    classifier (shared by compare and sweep); `labels` default to the models' names."""
    data = shared_data([d for group in groups for d in group], data_dir, data)
    target = resolve_device(device)
    started = time.perf_counter()
    ref = reference(data, classifier, show_progress)  # None for unlabelled data
    if ref is not None:
        ref.classifier.to(target)
    seconds["classifier"] = time.perf_counter() - started

    started = time.perf_counter()
    configs = [[read_config(d)[0] for d in group] for group in groups]
    labels = labels or run_labels([group[0] for group in groups], [c[0].model.model for c in configs])
    runs, views, seed_metrics = [], [], []
    for label, run_dirs, shown_paths, group_configs in zip(labels, groups, shown, configs):
        metrics = []
        for run_dir, config in zip(run_dirs, group_configs):
            log.info("measuring %s (%s)", label, run_dir)
            model = load(run_dir, target)
            metrics.append(run_metrics(model, data, config.data.pixels, ref, iw_samples,
                                       config.train.eval_batch_size))
            if run_dir == run_dirs[0]:
                views.append(build_view(label, model, data, config.data.pixels, read_metrics(run_dir)))
        runs.append(describe_run(label, run_dirs, shown_paths, group_configs, metrics))
        seed_metrics.append(metrics)
    seconds["metrics"] = time.perf_counter() - started
    return Measured(data, ref.calibration if ref is not None else {}, labels, runs, views, seed_metrics)


def study(groups: list[list[Path]], shown: list[list[str]], folder: Path, *, data_dir: str | None, device: str,
          iw_samples: int, classifier: Recipe, show_progress: bool, seconds: dict,
          data: ImageData | None = None) -> tuple[dict, list]:
    """Measure each model's runs (one per seed) and write the figures, drawn from each model's first seed,
    into `folder`; return metrics.json's content and the figures."""
    measured = measure(groups, shown, data_dir=data_dir, device=device, iw_samples=iw_samples, classifier=classifier,
                       show_progress=show_progress, seconds=seconds, data=data)
    data, labels, runs, views, seed_metrics = (measured.data, measured.labels, measured.runs, measured.views,
                                               measured.seed_metrics)
    from vaelab.report.figures import render  # matplotlib: imported only by the commands that draw

    started = time.perf_counter()
    figures = render(views)
    (folder / FIGURE_FOLDER).mkdir()
    for figure in figures:
        atomic_write(folder / FIGURE_FOLDER / f"{figure.name}.png", figure.png)
    seconds["figures"] = time.perf_counter() - started

    result = {
        "format": "vaelab-study-1",
        "dataset": {k: v for k, v in data.identity().items() if k != "origin"},
        "calibration": measured.calibration,
        "runs": runs,
        "verdicts": [asdict(v) for v in verdicts(labels, [r["metrics"] for r in runs],
                                                  measured.calibration.get("precision_train_vs_test"),
                                                  seed_metrics)],
        "projections": {view.label: view.projection.description for view in views},
        "figures": [{"file": f"{FIGURE_FOLDER}/{f.name}.png", "title": f.title, "caption": f.caption}
                    for f in figures],
        "settings": {"iw_samples": iw_samples, "classifier_recipe": asdict(classifier),
                     "seeds": len(groups[0])},
        "seconds": seconds,
        "versions": versions(),
    }
    return result, figures


def compare(runs: list[str | Path] | None = None, out: str | Path = "compare", *, preset: str = "fast",
            dataset: str | None = None, data_dir: str | None = None, latent_dim: int | None = None,
            arch: str | None = None, epochs: int | None = None, time_budget: float | None = None,
            batch_size: int | None = None, lr: float | None = None, seed: int | None = None, seeds: int = 1,
            device: str = "auto", iw_samples: int = IW_SAMPLES, classifier: Recipe = Recipe(),
            overwrite: bool = False, show_progress: bool = True, image_size: tuple[int, int] | None = None,
            channels: int | None = None, test_fraction: float | None = None) -> Path:
    """Train an AE and a VAE with the same network, for `seeds` seeds (or take two existing `runs`), measure
    them and write the report folder `out` (report.html, report.md, metrics.json, figures/). `time_budget` is
    the whole study's training time in seconds. Returns `out`."""
    check_iw_samples(iw_samples)
    options = {"dataset": dataset, "latent_dim": latent_dim, "arch": arch, "epochs": epochs,
               "time_budget": time_budget, "batch_size": batch_size, "lr": lr, "seed": seed, "image_size": image_size,
               "channels": channels, "test_fraction": test_fraction}
    if runs is not None:
        given = [k for k, v in options.items() if v is not None] + (["seeds"] if seeds != 1 else [])
        if given:
            raise VaelabError(f"--runs compares existing runs with their own settings; "
                              f"--{given[0].replace('_', '-')} does not apply")
        if len(runs) != 2:
            raise VaelabError(f"--runs takes two run folders, got {len(runs)}")
        for run in runs:
            read_config(run)  # a missing or foreign folder fails now, before any work
            if overwrite and Path(out).resolve() in Path(run).resolve().parents:
                raise VaelabError(f"--overwrite would delete {run}, which lies inside the report {out} it replaces; "
                                  f"copy the runs out first or choose another --out")
    configs, data = None, None
    if runs is None:
        data = resolve_dataset(dataset, data_dir, image_size, channels, test_fraction)
        options["dataset"] = data.name
        configs = study_configs(preset, {**options, "data_dir": data_dir, "device": device}, len(data.train_images),
                                seeds)
    out = Path(out)
    total = time.perf_counter()
    seconds: dict[str, float] = {}
    with staged_folder(out, overwrite) as folder:
        if configs is not None:
            started = time.perf_counter()
            processes, threads = plan(len(configs), resolve_device(device))
            configs = split_budget(configs, processes)
            length = configs[0][1].train
            log.info("training %d runs (%s), %d at a time in %d process%s x %d thread%s, each for %s",
                     len(configs), ", ".join(name for name, _ in configs), processes, processes,
                     "es" if processes > 1 else "", threads, "s" if threads > 1 else "",
                     format_duration(length.time_budget) if length.time_budget else f"{length.epochs} epochs")
            train_many([(name, config, folder / "runs" / name) for name, config in configs], processes, threads,
                       show_progress)
            seconds["training"] = time.perf_counter() - started
            names = [name for name, _ in configs]
            groups = [[folder / "runs" / n for n in names[i::len(STUDY_RUNS)]] for i in range(len(STUDY_RUNS))]
            shown = [[f"runs/{n}" for n in names[i::len(STUDY_RUNS)]] for i in range(len(STUDY_RUNS))]
        else:
            groups, shown = [[Path(r)] for r in runs], [[str(r)] for r in runs]
        result, figures = study(groups, shown, folder, data_dir=data_dir, device=device, iw_samples=iw_samples,
                                classifier=classifier, show_progress=show_progress, seconds=seconds, data=data)
        seconds["total"] = time.perf_counter() - total
        result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
        write_json(folder / "metrics.json", result)
        from vaelab.report.html import render_html  # matplotlib: imported only by the commands that draw
        from vaelab.report.markdown import render_markdown

        atomic_write(folder / "report.md", render_markdown(result, figures, FIGURE_FOLDER).encode())
        atomic_write(folder / "report.html", render_html(result, figures).encode())
    log.info("report: %s", out / "report.html")
    return out
