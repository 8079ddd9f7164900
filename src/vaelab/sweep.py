"""`vaelab sweep`: the KL dial. How much KL does each of the AE's flaws need, and what does it cost?

    train the VAE at each beta of a list (loss = reconstruction + beta * KL, Higgins et al. 2017), and the AE
    as the reference point, for one seed or several, in parallel processes on the cores
    -> every run measured with the study's metrics (compare.measure)
    -> sweep/report.html: each flaw's headline metric, the reconstruction error, the importance-weighted bound
       and the KL against beta; the runs' latent scatters; per flaw the smallest beta that fixes it
    -> sweep/metrics.json

A beta "fixes" a flaw when its headline metric beats the AE's by more than the seed-to-seed spread (the sum
of the two standard deviations over seeds, as compare's verdicts use); with one seed the spread is unknown
and any improvement counts, which the report says. Like compare, everything is written into a staging
folder that becomes `out` only when complete.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from vaelab.compare import (
    FIGURE_FOLDER,
    IW_SAMPLES,
    measure,
    resolve_dataset,
    split_budget,
    staged_folder,
    study_configs,
)
from vaelab.config import RunConfig
from vaelab.errors import VaelabError
from vaelab.metrics import Recipe, headline
from vaelab.metrics.catalogue import FLAWS
from vaelab.metrics.likelihood import check_iw_samples
from vaelab.models.registry import model_class
from vaelab.runs import atomic_write, write_json
from vaelab.train.length import format_duration
from vaelab.train.loop import resolve_device, versions
from vaelab.train.parallel import plan, train_many, waves

log = logging.getLogger("vaelab")

DEFAULT_BETAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
MAX_BETA = 1e6  # far beyond any useful weight; a typo (1e300) fails here, not as a NaN after minutes


def parse_betas(text: str) -> list[float]:
    """'0,0.01,0.1' -> [0.0, 0.01, 0.1], sorted and without repeats; one-line errors for an empty list, a
    negative or unparsable entry."""
    parts = [part.strip() for part in str(text).split(",")]
    if not any(parts):
        raise VaelabError("--beta needs a comma-separated list of weights, e.g. 0,0.1,1")
    betas = []
    for part in parts:
        try:
            beta = float(part)
        except ValueError:
            raise VaelabError(f"--beta: {part!r} is not a number (give a comma-separated list, e.g. 0,0.1,1)") from None
        if not math.isfinite(beta) or beta < 0 or beta > MAX_BETA:
            raise VaelabError(f"--beta: every weight must be a number from 0 to {MAX_BETA:g}, got {part}")
        betas.append(beta)
    return sorted(set(betas))


def beta_label(beta: float) -> str:
    return f"β={beta:g}"


def sweep_groups(betas: list[float], options: dict, n_train: int,
                 seeds: int) -> list[tuple[str, list[tuple[str, RunConfig]]]]:
    """(label, [(run name, config) per seed]) for the reference model (the study's model without a KL term),
    then for each beta the study's model with a KL term at that weight ('beta0.1', 'beta0.1-seed1', ...): the
    study's fast preset with the options."""
    groups: dict[str, list[tuple[str, RunConfig]]] = {}
    for name, config in study_configs("fast", options, n_train, seeds):
        if not model_class(config.model.model).takes_beta:
            groups.setdefault(config.model.model.upper(), []).append((name, config))
            continue
        suffix = name.removeprefix(config.model.model)
        for beta in betas:
            groups.setdefault(beta_label(beta), []).append((f"beta{beta:g}{suffix}",
                                                            config.replace(model={"beta": beta})))
    return list(groups.items())


def smallest_fixing_beta(flaw: int, reference: list[dict], series: list[tuple[float, list[dict]]]) -> dict:
    """The smallest beta whose headline metric for `flaw` beats the reference's by more than the seeds'
    spread (the sum of the two standard deviations; unknown, so zero, with one seed)."""
    metric = headline(flaw)
    ref_values = [metric.value(m) for m in reference]
    ref_mean = statistics.fmean(ref_values)
    several = len(ref_values) > 1
    for beta, runs in series:
        values = [metric.value(m) for m in runs]
        mean = statistics.fmean(values)
        spread = statistics.stdev(ref_values) + statistics.stdev(values) if several else 0.0
        if metric.best(ref_mean, mean) == 1 and abs(mean - ref_mean) > spread:
            return {"flaw": flaw, "problem": FLAWS[flaw], "metric": metric.key, "beta": beta,
                    "reference": ref_mean, "value": mean, "spread": spread if several else None}
    return {"flaw": flaw, "problem": FLAWS[flaw], "metric": metric.key, "beta": None, "reference": ref_mean,
            "value": None, "spread": None}


def sweep(betas: list[float] | str = DEFAULT_BETAS, out: str | Path = "sweep", *, dataset: str | None = None,
          data_dir: str | None = None, latent_dim: int | None = None, arch: str | None = None,
          epochs: int | None = None, time_budget: float | None = None, seed: int | None = None, seeds: int = 1,
          device: str = "auto", iw_samples: int = IW_SAMPLES, classifier: Recipe = Recipe(),
          overwrite: bool = False, show_progress: bool = True) -> Path:
    """Train the VAE at each beta and the AE as the reference (each for `seeds` seeds) with the study's fast
    preset, measure every run and write `out` (report.html, metrics.json, figures/, runs/). `time_budget` is
    the whole sweep's training time in seconds; by default every run trains for the study's budget. Returns
    `out`."""
    betas = parse_betas(betas) if isinstance(betas, str) else parse_betas(",".join(map(str, betas)))
    check_iw_samples(iw_samples)
    data = resolve_dataset(dataset, data_dir)
    if not data.classes:
        raise VaelabError(f"{data.name} has no labels; the sweep measures the three flaws, whose samples and class "
                          f"spreads need a labelled dataset")
    options = {"dataset": data.name, "data_dir": data_dir, "latent_dim": latent_dim, "arch": arch, "epochs": epochs,
               "time_budget": time_budget, "seed": seed, "device": device}
    groups = sweep_groups(betas, options, len(data.train_images), seeds)
    configs = [job for _, jobs in groups for job in jobs]
    processes, threads = plan(len(configs), resolve_device(device))
    if time_budget is not None:
        budgets = dict(split_budget(configs, processes))
        groups = [(label, [(name, budgets[name]) for name, _ in jobs]) for label, jobs in groups]
        configs = [job for _, jobs in groups for job in jobs]
    out = Path(out)
    total = time.perf_counter()
    seconds: dict[str, float] = {}
    with staged_folder(out, overwrite) as folder:
        started = time.perf_counter()
        length = configs[0][1].train
        log.info("training %d runs (%s), %d at a time in %d wave%s, each for %s", len(configs),
                 ", ".join(name for name, _ in configs), processes, waves(len(configs), processes),
                 "s" if waves(len(configs), processes) > 1 else "",
                 format_duration(length.time_budget) if length.time_budget else f"{length.epochs} epochs")
        train_many([(name, config, folder / "runs" / name) for name, config in configs], processes, threads,
                   show_progress)
        seconds["training"] = time.perf_counter() - started

        measured = measure([[folder / "runs" / name for name, _ in jobs] for _, jobs in groups],
                           [[f"runs/{name}" for name, _ in jobs] for _, jobs in groups], data_dir=data_dir,
                           device=device, iw_samples=iw_samples, classifier=classifier, show_progress=show_progress,
                           seconds=seconds, data=data, labels=[label for label, _ in groups])
        series = list(zip(betas, measured.seed_metrics[1:]))
        fixes = [smallest_fixing_beta(flaw, measured.seed_metrics[0], series) for flaw in FLAWS]

        started = time.perf_counter()
        result = {
            "format": "vaelab-sweep-1",
            "dataset": {k: v for k, v in measured.data.identity().items() if k != "origin"},
            "calibration": measured.calibration,
            "betas": betas,
            "reference": measured.runs[0],
            "runs": measured.runs[1:],
            "fixes": fixes,
            "settings": {"iw_samples": iw_samples, "classifier_recipe": asdict(classifier), "seeds": seeds,
                         "processes": processes, "threads_per_process": threads},
        }
        from vaelab.report.sweep import render_sweep, render_sweep_html  # matplotlib: only the commands that draw

        figures = render_sweep(result, measured.views)
        (folder / FIGURE_FOLDER).mkdir()
        for figure in figures:
            atomic_write(folder / FIGURE_FOLDER / f"{figure.name}.png", figure.png)
        result["figures"] = [{"file": f"{FIGURE_FOLDER}/{f.name}.png", "title": f.title, "caption": f.caption}
                             for f in figures]
        seconds["figures"] = time.perf_counter() - started
        seconds["total"] = time.perf_counter() - total
        result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
        result["versions"] = versions()
        write_json(folder / "metrics.json", result)
        atomic_write(folder / "report.html", render_sweep_html(result, figures).encode())
    log.info("report: %s", out / "report.html")
    return out
