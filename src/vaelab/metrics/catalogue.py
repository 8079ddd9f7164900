"""The one list of reported metrics: where each lives, its unit, which direction is better, which flaw it measures.

`vaelab evaluate` prints from it, the report builds its table from it, and
docs/metrics.md defines every entry. The headline metric of each flaw decides
the report's verdict on that flaw.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    section: str  # likelihood | samples | latent (the keys of `run_metrics`)
    key: str
    name: str
    unit: str
    better: str  # "lower" | "higher"
    flaw: int | None = None  # 1, 2, 3, or None (the likelihood, how well trained)
    headline: bool = False

    @property
    def needs_labels(self) -> bool:
        """Whether the metric needs the dataset's labels: every sample-quality metric is read through the reference
        classifier, which trains on them, and flaw 3 compares classes. On unlabelled data it is not computed."""
        return self.section == "samples" or self.flaw == 3

    @property
    def arrow(self) -> str:
        return "↓" if self.better == "lower" else "↑"

    def value(self, metrics: dict) -> float | None:
        return metrics.get(self.section, {}).get(self.key)

    def best(self, a: float, b: float) -> int | None:
        """0 or 1 for the better of two values, None for a tie."""
        if a == b:
            return None
        return int((b < a) == (self.better == "lower"))


CATALOGUE: tuple[Metric, ...] = (
    Metric("likelihood", "neg_elbo", "negative ELBO", "nats/image", "lower"),
    Metric("likelihood", "iw_nll", "−log p(x), importance-weighted bound", "nats/image", "lower"),
    Metric("likelihood", "mse", "reconstruction MSE", "per pixel, pixels in [0, 1]", "lower"),
    Metric("samples", "reconstruction_accuracy", "classifier accuracy on test reconstructions", "fraction",
           "higher"),
    Metric("samples", "conditioned_accuracy", "classifier accuracy of class-conditioned samples", "fraction",
           "higher"),
    Metric("samples", "precision_vs_reconstructions", "share of random samples like its reconstructions",
           "fraction", "higher", 1, True),
    Metric("samples", "precision", "share of random samples on the real-image manifold", "fraction", "higher", 1),
    Metric("samples", "fid", "classifier FID of random samples", "squared feature units", "lower", 1),
    Metric("samples", "top_probability", "mean top-class probability of samples", "probability", "higher", 1),
    Metric("samples", "classifier_score", "classifier score of samples", "1 to number of classes", "higher", 1),
    Metric("samples", "confident_fraction", "grid decoding to a confident image", "fraction", "higher", 1),
    Metric("latent", "gaussian_kl", "KL(N(m, S) ‖ N(0, I)) of the codes", "nats", "lower", 2, True),
    Metric("latent", "mmd2", "MMD² between codes and N(0, I), IMQ kernel", "kernel units", "lower", 2),
    Metric("latent", "mean_norm", "‖m‖, distance of the codes' mean from 0", "latent units", "lower", 2),
    Metric("latent", "cov_distance", "‖S − I‖ (Frobenius), codes' covariance vs identity", "latent units²",
           "lower", 2),
    Metric("latent", "spread_ratio", "max/min class spread √det S_c", "ratio", "lower", 3, True),
    Metric("latent", "spread_cv", "coefficient of variation of class spreads", "ratio", "lower", 3),
    Metric("latent", "knn_accuracy", "5-NN classification accuracy of codes", "fraction", "higher", 3),
)

NEEDS_LABELS = "needs labels"  # what the report and `vaelab evaluate` show for such a metric on unlabelled data

FLAWS = {
    1: "images decoded from empty space between the codes are poor",
    2: "the codes have no fixed centre or scale",
    3: "some classes crowd into a tiny area while others spread wide",
}


def headline(flaw: int) -> Metric:
    return next(m for m in CATALOGUE if m.flaw == flaw and m.headline)
