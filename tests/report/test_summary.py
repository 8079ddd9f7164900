"""The report's table and verdicts from hand-made metrics: directions, ties, missing values, wording."""

import math

from vaelab.metrics.catalogue import CATALOGUE, headline
from vaelab.report.summary import format_value, measures, table, verdicts


def metrics(own, kl, ratio, nll=None, real=0.5):
    """own: precision against the model's reconstructions (the headline); real: against real images."""
    likelihood = {"mse": 0.04} | ({"neg_elbo": 150.0, "iw_nll": nll} if nll is not None else {})
    return {"likelihood": likelihood,
            "samples": {"precision_vs_reconstructions": own, "precision_at_codes": 0.97, "precision": real,
                        "fid": 100.0 * (1 - real), "top_probability": 0.9, "classifier_score": 8.0,
                        "confident_fraction": 0.75},
            "latent": {"gaussian_kl": kl, "mmd2": 0.01, "mean_norm": 0.1, "cov_distance": 0.2, "spread_ratio": ratio,
                       "spread_cv": 0.3, "knn_accuracy": 0.9}}


def test_every_flaw_has_one_headline_and_directions_are_declared():
    assert [headline(f).key for f in (1, 2, 3)] == ["precision_vs_reconstructions", "gaussian_kl", "spread_ratio"]
    assert all(m.better in ("lower", "higher") for m in CATALOGUE)
    assert len({(m.section, m.key) for m in CATALOGUE}) == len(CATALOGUE)
    assert [measures(headline(f)) for f in (1, 2, 3)] == ["flaw 1, headline", "flaw 2, headline", "flaw 3, headline"]
    assert {measures(m) for m in CATALOGUE if not m.headline} == {"likelihood", "how well trained", "flaw 1", "flaw 2",
                                                                  "flaw 3"}


def test_table_marks_the_better_value_in_either_direction():
    rows = {row.metric.key: row for row in table([metrics(0.4, 3.0, 9.0, real=0.6),
                                                  metrics(0.9, 0.1, 2.0, nll=140.0, real=0.3)])}
    assert rows["fid"].best == 0 and rows["fid"].metric.arrow == "↓"
    assert rows["precision"].best == 0 and rows["precision"].metric.arrow == "↑"
    assert rows["precision_vs_reconstructions"].best == 1
    assert rows["knn_accuracy"].best is None  # a tie
    assert rows["iw_nll"].values == [None, 140.0] and rows["iw_nll"].best is None  # the AE has no likelihood
    assert rows["top_probability"].metric.arrow == "↑"


def test_verdict_sentences_name_the_better_run_by_the_headline_alone():
    found = verdicts(["AE", "VAE"], [metrics(0.4, 3.0, 9.0, real=0.6), metrics(0.9, 0.1, 9.0, real=0.3)],
                     real_precision=0.87)
    assert [v.better for v in found] == ["VAE", "VAE", None]  # flaw 1 by the headline, not by the real-image share
    assert found[0].sentence.startswith("Flaw 1, images decoded from empty space between the codes are poor: for "
                                        "the AE, 40% of its random samples look like its own reconstructions of "
                                        "test images (decodes at the codes of training images: 97%), and 60% land "
                                        "on the real-image manifold (classifier FID 40;")
    assert "(real training images on the real-image manifold: 87%)" in found[0].sentence
    assert ("by share of random samples like its reconstructions (higher is better) the VAE decodes random latent "
            "points into images like those it decodes at real codes more often" in found[0].sentence)
    assert "does not separate the runs" in found[2].sentence


def test_format_value():
    assert format_value(None) == "—" and format_value(math.inf) == "∞" and format_value(3) == "3"
    assert format_value(0.123456) == "0.1235" and format_value(12345.6) == "1.235e+04"


def test_flaw_1_says_why_real_images_disagree_with_the_headline():
    agree = [metrics(0.4, 3.0, 9.0, real=0.3), metrics(0.9, 0.1, 2.0, real=0.6)]
    assert "Against real images" not in verdicts(["AE", "VAE"], agree, 0.9)[0].sentence
    disagree = [metrics(0.4, 3.0, 9.0, real=0.8), metrics(0.9, 0.1, 2.0, real=0.6)]
    sentence = verdicts(["AE", "VAE"], disagree, 0.9)[0].sentence
    assert "Against real images the AE's samples score higher (80% vs 60%)" in sentence
