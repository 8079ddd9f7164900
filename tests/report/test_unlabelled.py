"""Unlabelled data (a .npy of images): training, `evaluate` and the report work; the metrics that need labels
say so instead of a number, and the flaws they decide are not judged."""

import json

import numpy as np
import pytest

import vaelab
from vaelab.cli import main
from vaelab.metrics.catalogue import CATALOGUE, NEEDS_LABELS


@pytest.fixture(scope="module")
def unlabelled_runs(tmp_path_factory):
    """An AE and a VAE trained for one epoch on 240 random 16x16 grey images with no labels."""
    folder = tmp_path_factory.mktemp("unlabelled")
    images = (np.random.default_rng(0).random((240, 16, 16)) * 255).astype(np.uint8)
    np.save(folder / "images.npy", images)
    runs = []
    for model in ("ae", "vae"):
        config = vaelab.preset(f"book-{model}").replace(
            data={"dataset": str(folder / "images.npy")}, model={"arch": "mlp"},
            train={"epochs": 1, "batch_size": 64, "device": "cpu"})
        runs.append(vaelab.train(config, folder / model, show_progress=False))
    return runs


def test_evaluate_says_which_metrics_need_labels(unlabelled_runs, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["-q", "evaluate", str(unlabelled_runs[1]), "--iw-samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "has no labels" in out and out.count(NEEDS_LABELS) == sum(m.needs_labels for m in CATALOGUE)
    result = json.loads((unlabelled_runs[1] / "eval.json").read_text())
    assert result["labelled"] is False and result["samples"] == {} and result["calibration"] == {}
    assert {"gaussian_kl", "mmd2"} <= set(result["latent"]) and "spread_ratio" not in result["latent"]


def test_the_report_renders_with_needs_labels(unlabelled_runs, tmp_path):
    report = vaelab.compare([str(r) for r in unlabelled_runs], tmp_path / "report", iw_samples=4,
                            show_progress=False)
    study = json.loads((report / "metrics.json").read_text())
    verdicts = {v["flaw"]: v for v in study["verdicts"]}
    assert verdicts[1]["needs_labels"] and verdicts[3]["needs_labels"] and not verdicts[2]["needs_labels"]
    assert verdicts[1]["plain"].endswith(f"{NEEDS_LABELS}.")
    html, markdown = (report / "report.html").read_text(), (report / "report.md").read_text()
    for text in (html, markdown):
        assert text.count(NEEDS_LABELS) >= sum(m.needs_labels for m in CATALOGUE) and "has no labels" in text
    assert {p.name for p in (report / "figures").iterdir()} >= {"scatter.png", "samples.png", "reconstructions.png"}
    scatter = next(f for f in study["figures"] if f["file"].endswith("scatter.png"))
    assert "no labels" in scatter["caption"]
