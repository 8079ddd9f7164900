"""The report's words and table, from metrics alone: one row per catalogued metric, one verdict per flaw.

Both report.html and report.md are built from these, so they always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vaelab.metrics.catalogue import CATALOGUE, FLAWS, Metric, headline

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


def table(run_metrics: list[dict]) -> list[Row]:
    """One row per catalogued metric that at least one run has."""
    rows = []
    for metric in CATALOGUE:
        values = [metric.value(m) for m in run_metrics]
        if all(v is None for v in values):
            continue
        best = metric.best(*values) if len(values) == 2 and None not in values else None
        rows.append(Row(metric, values, best))
    return rows


@dataclass(frozen=True)
class Verdict:
    flaw: int
    problem: str
    metric: str  # the headline metric's key
    better: str | None  # the better run's label, None for a tie
    sentence: str
    plain: str = field(init=False)  # the verdict in plain words, for the top of the report

    def __post_init__(self):
        outcome = f"the {self.better} is better" if self.better else "no clear difference"
        object.__setattr__(self, "plain", f"Flaw {self.flaw} ({self.problem}): {outcome}.")


def verdicts(labels: list[str], run_metrics: list[dict], real_precision: float) -> list[Verdict]:
    """One sentence per flaw: each run's evidence, then which run the headline metric favours."""
    result = []
    for flaw, problem in FLAWS.items():
        metric = headline(flaw)
        evidence = "; ".join(f"for the {label}, {EVIDENCE[flaw].format(**m)}" for label, m in zip(labels, run_metrics))
        best = metric.best(*(metric.value(m) for m in run_metrics)) if len(run_metrics) == 2 else None
        better = labels[best] if best is not None else None
        conclusion = (f"by {metric.name} ({metric.better} is better) the {better} {BETTER_MEANS[flaw]}"
                      if better else f"{metric.name} does not separate the runs")
        floor = f" (real training images on the real-image manifold: {real_precision:.0%})" if flaw == 1 else ""
        result.append(Verdict(flaw, problem, metric.key, better,
                              f"Flaw {flaw}, {problem}: {evidence}{floor}. So {conclusion}."))
    return result
