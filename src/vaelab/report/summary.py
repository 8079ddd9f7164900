"""The report's words and table, from metrics alone: one row per catalogued metric, one verdict per flaw.

Both report.html and report.md are built from these, so they always agree.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from vaelab.metrics.catalogue import CATALOGUE, FLAWS, NEEDS_LABELS, Metric, headline

# What each flaw's numbers are, filled from one run's metrics, and what being better on it means.
EVIDENCE = {
    1: "{samples[precision_vs_reconstructions]:.0%} of its random samples look like its own reconstructions of "
       "test images (decodes at the codes of training images: {samples[precision_at_codes]:.0%}), and "
       "{samples[precision]:.0%} land on the real-image manifold (classifier FID {samples[fid]:.3g}; "
       "{samples[confident_fraction]:.0%} of its latent grid decodes to a confident image)",
    2: "its codes' Gaussian fit is {latent[gaussian_kl]:.3g} nats from N(0, I) (mean {latent[mean_norm]:.3g} from 0, "
       "MMD² {latent[mmd2]:.2g})",
    3: "its largest class spread is {latent[spread_ratio]:.3g}× its smallest (coefficient of variation "
       "{latent[spread_cv]:.2f}) with a 5-NN accuracy of {latent[knn_accuracy]:.1%}",
}
BETTER_MEANS = {
    1: "decodes random latent points into images like those it decodes at real codes more often",
    2: "keeps its codes nearer a fixed centre and scale, N(0, I), the distribution it samples from",
    3: "spreads its classes more evenly",
}


RUN_SETTINGS = ("path", "model", "arch", "latent_dim", "likelihood", "r_loss_factor", "pixels", "epochs",
                "batch_size", "lr", "train_seconds")  # the per-run settings the report lists


def format_value(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else "−∞"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def measures(metric: Metric) -> str:
    """The table's first column: what the metric measures, and whether it decides the flaw's verdict."""
    if metric.flaw is None:
        return "likelihood" if metric.section == "likelihood" else "how well trained"
    return f"flaw {metric.flaw}, headline" if metric.headline else f"flaw {metric.flaw}"


@dataclass(frozen=True)
class Row:
    metric: Metric
    values: list[float | None]
    best: int | None  # index of the better run, None for a tie or when a value is missing
    spreads: list[float | None]  # standard deviations over seeds, None for a single seed
    unlabelled: bool = False  # a metric that needs labels, on unlabelled data: the cells say so

    def text(self, index: int) -> str:
        """The cell: the value, with ± its standard deviation over seeds where there are several."""
        if self.unlabelled:
            return NEEDS_LABELS
        spread = self.spreads[index]
        return format_value(self.values[index]) + (f" ± {format_value(spread)}" if spread is not None else "")


def table(run_metrics: list[dict], run_spreads: list[dict | None] | None = None) -> list[Row]:
    """One row per catalogued metric that at least one run has, and on unlabelled data one saying "needs labels"
    for each metric that needs them; `run_spreads` are the runs' standard deviations over seeds (None for a
    run of one seed)."""
    run_spreads = run_spreads or [None] * len(run_metrics)
    unlabelled = not all(m.get("labelled", True) for m in run_metrics)
    rows = []
    for metric in CATALOGUE:
        values = [metric.value(m) for m in run_metrics]
        if all(v is None for v in values):
            if unlabelled and metric.needs_labels:
                rows.append(Row(metric, values, None, [None] * len(values), unlabelled=True))
            continue
        best = metric.best(*values) if len(values) == 2 and None not in values else None
        spreads = [metric.value(s) if s else None for s in run_spreads]
        rows.append(Row(metric, values, best, spreads))
    return rows


@dataclass(frozen=True)
class Verdict:
    flaw: int
    problem: str
    metric: str  # the headline metric's key
    better: str | None  # the better run's label, None for a tie or a difference within the seeds' spread
    sentence: str
    seeds: str | None = None  # "3/3 seeds": in how many seeds the better run was ahead (several seeds only)
    needs_labels: bool = False  # not judged: the headline metric needs labels the data lacks
    plain: str = field(init=False)  # the verdict in plain words, for the top of the report

    def __post_init__(self):
        outcome = f"the {self.better} is better" if self.better else "no clear difference"
        if self.needs_labels:
            outcome = NEEDS_LABELS
        if self.better and self.seeds:
            outcome += f", {self.seeds}"
        object.__setattr__(self, "plain", f"Flaw {self.flaw} ({self.problem}): {outcome}.")


def seed_verdict(metric: Metric, per_seed: list[list[float]], labels: list[str]) -> tuple[int | None, str, str]:
    """(better run or None, "k/n seeds", the reason) over several seeds: a run is better only when the
    difference of the two means exceeds the sum of their standard deviations, the seed-to-seed spread."""
    means = [statistics.fmean(values) for values in per_seed]
    spread = sum(statistics.stdev(values) for values in per_seed)
    best = metric.best(*means)
    if best is None:
        return None, "", f"{metric.name} is the same on average"
    wins = sum(metric.best(a, b) == best for a, b in zip(*per_seed))
    count = f"{wins}/{len(per_seed[0])} seeds"
    gap = abs(means[0] - means[1])
    if gap <= spread:
        return None, count, (f"{metric.name} does not separate the runs beyond the seeds' spread (difference of the "
                             f"means {gap:.3g} ≤ {spread:.3g}, the sum of their standard deviations; the "
                             f"{labels[best]} was ahead in {count})")
    return best, count, (f"difference of the means {gap:.3g} > {spread:.3g}, the sum of their standard deviations; "
                         f"ahead in {count}")


def verdicts(labels: list[str], run_metrics: list[dict], real_precision: float | None,
             seed_metrics: list[list[dict]] | None = None) -> list[Verdict]:
    """One sentence per flaw: each run's evidence, then which run the headline metric favours. `run_metrics`
    are the runs' (mean) metrics; with several seeds per run (`seed_metrics`) a run wins a flaw only when the
    difference exceeds the seeds' spread. A flaw whose headline needs labels that the data lacks (then
    `real_precision` is None) is said to need them."""
    several = seed_metrics is not None and len(seed_metrics) == 2 and min(map(len, seed_metrics)) > 1
    result = []
    for flaw, problem in FLAWS.items():
        metric = headline(flaw)
        if any(metric.value(m) is None for m in run_metrics) and metric.needs_labels:
            result.append(Verdict(flaw, problem, metric.key, None,
                                  f"Flaw {flaw}, {problem}: {NEEDS_LABELS} - {metric.name} is read through the "
                                  f"dataset's classes, and this dataset has none.", needs_labels=True))
            continue
        evidence = "; ".join(f"for the {label}, {EVIDENCE[flaw].format(**m)}" for label, m in zip(labels, run_metrics))
        best = metric.best(*(metric.value(m) for m in run_metrics)) if len(run_metrics) == 2 else None
        count, reason = None, ""
        if several:
            best, count, reason = seed_verdict(metric, [[metric.value(m) for m in s] for s in seed_metrics], labels)
        better = labels[best] if best is not None else None
        conclusion = (f"by {metric.name} ({metric.better} is better) the {better} {BETTER_MEANS[flaw]}"
                      + (f" ({reason})" if reason else "") if better
                      else reason or f"{metric.name} does not separate the runs")
        floor = f" (real training images on the real-image manifold: {real_precision:.0%})" if flaw == 1 else ""
        caveat = real_image_disagreement(labels, run_metrics, best) if flaw == 1 else ""
        result.append(Verdict(flaw, problem, metric.key, better,
                              f"Flaw {flaw}, {problem}: {evidence}{floor}. So {conclusion}.{caveat}", count or None))
    return result


def real_image_disagreement(labels: list[str], run_metrics: list[dict], best: int | None) -> str:
    """One plain sentence when precision against real images favours the other run than flaw 1's headline."""
    real = [m.get("samples", {}).get("precision") for m in run_metrics]
    if best is None or len(real) != 2 or None in real or real[1 - best] <= real[best]:
        return ""
    other = 1 - best
    return (f" Against real images the {labels[other]}'s samples score higher ({real[other]:.0%} vs "
            f"{real[best]:.0%}): that measure also rewards a sharp decoder, while the headline compares each model's "
            f"samples with its own reconstructions, so how sharp a decoder is cancels out (docs/metrics.md).")
