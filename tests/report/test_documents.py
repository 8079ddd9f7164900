"""report.html and report.md from a hand-made study: the plain verdicts come first, before the numbers."""

from dataclasses import asdict

from vaelab.report.figures import RenderedFigure
from vaelab.report.html import render_html
from vaelab.report.markdown import render_markdown
from vaelab.report.summary import verdicts


def run_metrics(own, kl, ratio):
    return {"likelihood": {"mse": 0.04},
            "samples": {"precision_vs_reconstructions": own, "precision_at_codes": 0.97, "precision": 0.5,
                        "fid": 50.0, "top_probability": 0.9, "classifier_score": 8.0, "confident_fraction": 0.75},
            "latent": {"gaussian_kl": kl, "mmd2": 0.01, "mean_norm": 0.1, "cov_distance": 0.2, "spread_ratio": ratio,
                       "spread_cv": 0.3, "knn_accuracy": 0.9}}


def study():
    metrics = [run_metrics(0.4, 3.0, 9.0), run_metrics(0.9, 0.1, 9.0)]
    return {"dataset": {"name": "mnist", "classes": list("0123456789"), "n_test": 1000},
            "calibration": {"classifier_test_accuracy": 0.99, "precision_train_vs_test": 0.9,
                            "fid_train_vs_test": 1.0, "top_probability": 0.98, "classifier_score": 9.5,
                            "n_images": 1000},
            "runs": [{"label": label, "path": f"runs/{label.lower()}", "metrics": m}
                     for label, m in zip(["AE", "VAE"], metrics)],
            "verdicts": [asdict(v) for v in verdicts(["AE", "VAE"], metrics, 0.9)],
            "seconds": {"total": 12.0}, "versions": {"vaelab": "test"}}


PLAIN = ["Flaw 1 (images decoded from empty space between the codes are poor): the VAE is better.",
         "Flaw 2 (the codes have no fixed centre or scale): the VAE is better.",
         "Flaw 3 (some classes crowd into a tiny area while others spread wide): no clear difference."]
FIGURE = RenderedFigure("scatter", "Latent space", "The codes.", b"\x89PNG\r\n\x1a\n")


def test_verdicts_carry_a_plain_sentence():
    assert [v["plain"] for v in study()["verdicts"]] == PLAIN


def test_html_puts_the_plain_verdicts_before_the_numbers_and_figures():
    html = render_html(study(), [FIGURE])
    positions = [html.index(sentence) for sentence in PLAIN]
    assert positions == sorted(positions)
    assert positions[-1] < html.index("What the numbers show") < html.index("<table") < html.index("<figure")
    assert html.index('<ul id="verdicts"') < html.index("The three flaws")


def test_markdown_puts_the_plain_verdicts_first():
    lines = render_markdown(study(), [FIGURE], "figures").splitlines()
    assert lines[2:5] == [f"- **{sentence}**" for sentence in PLAIN]
    text = "\n".join(lines)
    assert text.index(PLAIN[2]) < text.index("## What the numbers show") < text.index("| measures |") \
        < text.index("![Latent space](figures/scatter.png)")
