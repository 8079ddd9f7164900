"""The report's table and verdicts from hand-made metrics: directions, ties, missing values, wording."""

import math

from vaelab.metrics.catalogue import CATALOGUE, headline
from vaelab.report.summary import format_value, table, verdicts


def metrics(precision, kl, ratio, nll=None):
    likelihood = {"mse": 0.04} | ({"neg_elbo": 150.0, "iw_nll": nll} if nll is not None else {})
    return {"likelihood": likelihood,
            "samples": {"precision": precision, "fid": 100.0 * (1 - precision), "top_probability": 0.9,
                        "classifier_score": 8.0, "confident_fraction": 0.75},
            "latent": {"gaussian_kl": kl, "mmd2": 0.01, "mean_norm": 0.1, "cov_distance": 0.2, "spread_ratio": ratio,
                       "spread_cv": 0.3, "knn_accuracy": 0.9}}


def test_every_flaw_has_one_headline_and_directions_are_declared():
    assert [headline(f).key for f in (1, 2, 3)] == ["precision", "gaussian_kl", "spread_ratio"]
    assert all(m.better in ("lower", "higher") for m in CATALOGUE)
    assert len({(m.section, m.key) for m in CATALOGUE}) == len(CATALOGUE)


def test_table_marks_the_better_value_in_either_direction():
    rows = {row.metric.key: row for row in table([metrics(0.4, 3.0, 9.0), metrics(0.9, 0.1, 2.0, nll=140.0)])}
    assert rows["fid"].best == 1 and rows["fid"].metric.arrow == "↓"
    assert rows["precision"].best == 1 and rows["precision"].metric.arrow == "↑"
    assert rows["knn_accuracy"].best is None  # a tie
    assert rows["iw_nll"].values == [None, 140.0] and rows["iw_nll"].best is None  # the AE has no likelihood
    assert rows["top_probability"].metric.arrow == "↑"


def test_verdict_sentences_name_the_better_run():
    found = verdicts(["AE", "VAE"], [metrics(0.4, 3.0, 9.0), metrics(0.9, 0.1, 9.0)], real_precision=0.87)
    assert [v.better for v in found] == ["VAE", "VAE", None]
    assert found[0].sentence.startswith("Flaw 1, images decoded from empty space between the codes are poor: for "
                                        "the AE, 40% of its random samples land on the real-image manifold "
                                        "(classifier FID 60;")
    assert "(real images: 87%)" in found[0].sentence
    assert ("by share of random samples on the real-image manifold (higher is better) the VAE decodes more realistic"
            in found[0].sentence)
    assert "does not separate the runs" in found[2].sentence


def test_format_value():
    assert format_value(None) == "—" and format_value(math.inf) == "∞" and format_value(3) == "3"
    assert format_value(0.123456) == "0.1235" and format_value(12345.6) == "1.235e+04"
