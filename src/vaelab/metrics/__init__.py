"""Metrics of trained models: likelihood bounds, sample quality through a reference classifier (flaw 1),
and the shape of the latent codes (flaws 2 and 3). docs/metrics.md defines every number."""

from vaelab.metrics.catalogue import CATALOGUE, FLAWS, Metric, headline
from vaelab.metrics.classifier import Recipe, ReferenceClassifier, reference_classifier
from vaelab.metrics.fid import frechet_between, frechet_distance, gaussian_statistics
from vaelab.metrics.latent import (
    class_spreads,
    even_unit_points,
    gaussian_kl,
    knn_accuracy,
    latent_metrics,
    mmd2,
    spread_cv,
    spread_ratio,
)
from vaelab.metrics.likelihood import iw_log_likelihood, likelihood_metrics
from vaelab.metrics.samples import classifier_score, sample_quality
from vaelab.metrics.suite import Reference, encode_all, reference, run_metrics

__all__ = ["CATALOGUE", "FLAWS", "Metric", "Recipe", "Reference", "ReferenceClassifier", "class_spreads",
           "classifier_score", "encode_all", "even_unit_points", "frechet_between", "frechet_distance",
           "gaussian_kl", "gaussian_statistics", "headline", "iw_log_likelihood", "knn_accuracy",
           "latent_metrics", "likelihood_metrics", "mmd2", "reference", "reference_classifier", "run_metrics",
           "sample_quality", "spread_cv", "spread_ratio"]
