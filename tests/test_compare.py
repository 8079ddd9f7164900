"""`vaelab compare` and `vaelab evaluate --iw-samples`: the report folder, and every bad input as a one-line error
that leaves no report (and no staging folder) behind."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab
from tests.conftest import write_idx_dataset
from vaelab.cli import main
from vaelab.compare import aggregate, split_budget, study_budget, study_configs
from vaelab.errors import VaelabError
from vaelab.metrics import Recipe, reference_classifier
from vaelab.metrics.catalogue import headline
from vaelab.report.figures import FIGURES
from vaelab.report.summary import seed_verdict

TINY_CLASSIFIER = Recipe(epochs=0, min_images=512, batch_size=64)
BASE_FIGURES = {"scatter", "posteriors", "samples", "grid", "reconstructions", "histograms", "training"}


def stratified(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    return torch.cat([(labels == c).nonzero()[:per_class, 0] for c in range(10)])


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist_sample) -> Path:
    """A 200/60-image 'mnist' with every digit in both splits (the sample is sorted by digit)."""
    d = mnist_sample
    train, test = stratified(d.train_labels, 20), stratified(d.test_labels, 6)
    return write_idx_dataset(tmp_path_factory.mktemp("digits") / "mnist", d.train_images[train, 0],
                             d.train_labels[train], d.test_images[test, 0], d.test_labels[test])


def tiny_compare(data_dir: Path, out: Path, workers: bool = False, **options) -> Path:
    """A study on tiny data; its runs train in this process unless `workers` (two worker processes cost more to
    start than these runs take: tests/train/test_parallel.py and the seeds test cover the workers)."""
    settings = {"dataset": "mnist", "data_dir": str(data_dir), "arch": "mlp", "epochs": 2, "batch_size": 32,
                "classifier": TINY_CLASSIFIER, "show_progress": False, **options}
    with pytest.MonkeyPatch.context() as patch:
        if not workers:
            patch.setattr(importlib.import_module("vaelab.compare"), "plan", lambda runs, device: (1, 1))
        return vaelab.compare(out=out, **settings)


@pytest.fixture(scope="module")
def report(digits, tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as patch:  # module scope: keep the classifier out of the user's cache
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return tiny_compare(digits, tmp_path_factory.mktemp("study") / "compare")


def run_cli(capsys, *args):
    try:
        code = main([*map(str, args)])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, *args, match: str, out: Path):
    code, _, err = run_cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "error:" in lines[0] and match in lines[0], err
    assert not out.exists(), "a report folder was left behind"
    assert not list(out.parent.glob(f".{out.name}.partial-*")), "a staging folder was left behind"


@pytest.mark.parametrize("n_train,options,budget,epochs", [
    (60_000, {}, 240.0, None),  # full MNIST: 4m of training
    (4_000, {}, study_budget(4_000), None),  # the sample: about 1m30s
    (4_000, {"epochs": 2}, None, 2),  # an explicit --epochs wins over the budget
])
def test_fast_study_trains_the_mlp_for_a_time_budget(n_train, options, budget, epochs):
    configs = dict(study_configs("fast", {"dataset": "mnist", **options}, n_train))
    assert list(configs) == ["ae", "vae"]
    assert [c.model.model for c in configs.values()] == ["ae", "vae"]
    assert all(c.train.time_budget == budget for c in configs.values())
    assert epochs is None or all(c.train.epochs == epochs for c in configs.values())
    assert all((c.model.arch, c.train.batch_size, c.train.lr_schedule, c.train.precision)
               == ("mlp-ln", 128, "warmup-cosine", "auto") for c in configs.values())
    # each model at its own rate (a --lr sets both); only the VAE has a KL term to warm up
    assert [(c.train.lr, c.train.kl_warmup) for c in configs.values()] == [(5e-3, 0.0), (3e-3, 0.25)]
    assert [c.train.lr for c in dict(study_configs("fast", {"lr": 1e-3}, n_train)).values()] == [1e-3, 1e-3]
    book = dict(study_configs("book", {"dataset": "mnist"}, n_train))["vae"]
    assert (book.model.arch, book.train.batch_size, book.train.lr, book.train.precision, book.train.lr_schedule,
            book.train.time_budget) == ("conv", 32, 5e-4, "fp32", "constant", None)


def test_report_folder(report):
    names = {p.relative_to(report).as_posix() for p in report.rglob("*") if p.is_file()}
    assert {"report.html", "report.md", "metrics.json"} <= names
    assert {f"figures/{name}.png" for name in BASE_FIGURES} <= names
    assert {"runs/ae/model.safetensors", "runs/vae/model.safetensors"} <= names
    assert not list(report.parent.glob(".*partial*"))
    study = json.loads((report / "metrics.json").read_text())
    assert [run["label"] for run in study["runs"]] == ["AE", "VAE"]
    assert [run["path"] for run in study["runs"]] == ["runs/ae", "runs/vae"]
    ae, vae = (run["metrics"] for run in study["runs"])
    assert "iw_nll" in vae["likelihood"] and "iw_nll" not in ae["likelihood"]
    assert vae["likelihood"]["iw_samples"] == 10 and vae["samples"]["n_samples"] == 60
    assert len(ae["latent"]["class_spread"]) == 10 and study["calibration"]["n_images"] == 60
    assert [v["flaw"] for v in study["verdicts"]] == [1, 2, 3]
    assert all(v["better"] in ("AE", "VAE", None) for v in study["verdicts"])
    assert {f["file"] for f in study["figures"]} == {f"figures/{n}.png" for n in BASE_FIGURES}
    assert set(study["seconds"]) == {"training", "classifier", "metrics", "figures", "total"}


def test_report_html_is_self_contained_and_md_links_figures(report):
    html = (report / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(BASE_FIGURES)
    assert "src=\"http" not in html and "<link" not in html and "<script" not in html
    for verdict in json.loads((report / "metrics.json").read_text())["verdicts"]:
        assert verdict["sentence"].split(":")[0] in html
    markdown = (report / "report.md").read_text()
    assert all(f"(figures/{name}.png)" in markdown for name in BASE_FIGURES)
    assert "| flaw 1, headline | share of random samples like its reconstructions | ↑ |" in markdown
    assert "| flaw 1 | share of random samples on the real-image manifold | ↑ |" in markdown
    assert "| flaw 1 | classifier FID of random samples | ↓ |" in markdown


@pytest.fixture
def tiny_classifier(monkeypatch):
    """The CLI trains the default classifier; make it the tests' tiny recipe (deterministic, so the same one)."""
    real = reference_classifier
    monkeypatch.setattr("vaelab.metrics.suite.reference_classifier",
                        lambda data, recipe, show_progress: real(data, TINY_CLASSIFIER, show_progress))


def test_compare_existing_runs_reproduces_the_numbers(report, tmp_path, capsys, tiny_classifier):
    out = tmp_path / "again"
    code, stdout, err = run_cli(capsys, "-q", "compare", "--runs", report / "runs" / "ae", report / "runs" / "vae",
                                "--out", out)
    assert code == 0, err
    assert stdout.strip() == str(out / "report.html")
    first, second = (json.loads((r / "metrics.json").read_text()) for r in (report, out))
    assert [r["metrics"] for r in first["runs"]] == [r["metrics"] for r in second["runs"]]
    assert not (out / "runs").exists() and "training" not in second["seconds"]


def test_latent_above_2d_adds_traversals_and_interpolations(digits, tmp_path):
    out = tiny_compare(digits, tmp_path / "c3", latent_dim=3, epochs=1)
    study = json.loads((out / "metrics.json").read_text())
    # every figure but the label x style grid, which only a conditional model has
    assert {f["file"] for f in study["figures"]} == {f"figures/{spec.name}.png" for spec in FIGURES
                                                     if spec.name != "label_grid"}
    assert all("principal components" in p for p in study["projections"].values())
    assert study["runs"][1]["metrics"]["samples"]["grid_points"] == 32 * 32


def test_failure_after_training_leaves_nothing(digits, tmp_path, monkeypatch):
    def broken(views):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(importlib.import_module("vaelab.report.figures"), "render", broken)  # compare imports it late
    with pytest.raises(RuntimeError, match="drawing failed"):
        tiny_compare(digits, tmp_path / "work" / "report", epochs=1)
    assert list((tmp_path / "work").iterdir()) == []


def test_evaluate_with_iw_samples(report, capsys, tiny_classifier):
    code, out, err = run_cli(capsys, "-q", "evaluate", report / "runs" / "vae", "--iw-samples", "20")
    assert code == 0, err
    for text in ("neg_elbo", "−log p(x), importance-weighted bound", "classifier FID of random samples",
                 "max/min class spread", "K = 20", "reference classifier: test accuracy",
                 "share of random samples like its reconstructions", "decodes at the codes of training images"):
        assert text in out, text
    result = json.loads((report / "runs" / "vae" / "eval.json").read_text())
    assert result["likelihood"]["iw_samples"] == 20 and result["likelihood"]["iw_nll"] <= result["test"]["neg_elbo"] + 1
    assert {"samples", "latent", "calibration"} <= set(result)
    code, out, _ = run_cli(capsys, "-q", "evaluate", report / "runs" / "ae", "--iw-samples", "5")
    assert code == 0 and "importance-weighted" not in out and "classifier FID" in out


# --- bad input: one line, exit 2, nothing written -------------------------------------------------------
@pytest.fixture(scope="module")
def odd_runs(tmp_path_factory, mnist_sample):
    """Untrained runs (0 epochs) on datasets that do not go with the digits' runs."""
    root = tmp_path_factory.mktemp("odd")
    d = mnist_sample
    idx = stratified(d.train_labels, 3)
    sets = {
        "other": (d.train_images[idx + 1, 0], d.train_labels[idx + 1], d.test_images[:10, 0], d.test_labels[:10]),
        "big": (np.zeros((30, 32, 32)), d.train_labels[idx], np.zeros((10, 32, 32)), d.test_labels[:10]),
        "no_test": (d.train_images[idx, 0], d.train_labels[idx], np.zeros((0, 28, 28)), np.zeros(0)),
    }
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        for name, arrays in sets.items():
            data_dir = write_idx_dataset(root / name / "mnist", *arrays)
            config = vaelab.preset("book-vae").replace(data={"dataset": "mnist", "data_dir": str(data_dir)},
                                                       model={"arch": "mlp"}, train={"epochs": 0})
            runs[name] = vaelab.train(config, root / name / "run", show_progress=False)
    return runs


@pytest.mark.parametrize("other,match", [
    ("other", "the runs were trained on different datasets"),
    ("big", "the runs were trained on different image sizes"),
])
def test_runs_that_do_not_go_together(report, odd_runs, other, match, tmp_path, capsys):
    assert_one_line_error(capsys, "compare", "--runs", report / "runs" / "ae", odd_runs[other], "--out",
                          tmp_path / "out", match=match, out=tmp_path / "out")


def test_run_without_test_data(odd_runs, tmp_path, capsys):
    assert_one_line_error(capsys, "compare", "--runs", odd_runs["no_test"], odd_runs["no_test"], "--out",
                          tmp_path / "out", match="without test images; the metrics need a test set",
                          out=tmp_path / "out")


@pytest.mark.parametrize("k", ["0", "-5"])
def test_iw_samples_must_be_positive(report, k, tmp_path, capsys):
    match = f"iw-samples must be a whole number of at least 1, got {k}"
    assert_one_line_error(capsys, "compare", "--iw-samples", k, "--out", tmp_path / "out", match=match,
                          out=tmp_path / "out")
    code, _, err = run_cli(capsys, "evaluate", report / "runs" / "vae", "--iw-samples", k)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1


def test_unwritable_or_occupied_report_folder(report, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    runs = ("--runs", report / "runs" / "ae", report / "runs" / "vae")
    assert_one_line_error(capsys, "compare", *runs, "--out", blocker / "report", match="cannot write the report to",
                          out=blocker / "report")
    code, _, err = run_cli(capsys, "compare", *runs, "--out", report)
    assert code == 2 and "already exists and is not empty" in err


@pytest.mark.parametrize("args,match", [
    (("--epochs", "3"), "--runs compares existing runs with their own settings; --epochs does not apply"),
    (("--latent-dim", "3"), "--latent-dim does not apply"),
])
def test_runs_with_training_flags(report, args, match, tmp_path, capsys):
    assert_one_line_error(capsys, "compare", "--runs", report / "runs" / "ae", report / "runs" / "vae", *args,
                          "--out", tmp_path / "out", match=match, out=tmp_path / "out")


def test_runs_that_are_not_runs(report, tmp_path, capsys):
    assert_one_line_error(capsys, "compare", "--runs", report / "runs" / "ae", tmp_path, "--out", tmp_path / "out",
                          match="is not a vaelab run folder", out=tmp_path / "out")


# --- the report in a real browser ----------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def test_report_renders_in_headless_chromium(report, tmp_path_factory):
    """Every figure of metrics.json is an <img> in report.html that Chromium decodes offline; a full-page
    screenshot goes to the test's temporary folder (printed with -s)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser "
                    f"test; Playwright's own browser download is not used")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")
    figures = json.loads((report / "metrics.json").read_text())["figures"]
    shot = tmp_path_factory.mktemp("report-screenshot") / "report.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto((report / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("""() => Array.from(document.querySelectorAll('figure')).map(f => {
            const img = f.querySelector('img');
            return {id: f.id, title: f.querySelector('h3').textContent, complete: img.complete,
                    width: img.naturalWidth, height: img.naturalHeight};
        })""")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    print(f"\nreport screenshot: {shot}")
    assert [i["id"] for i in images] == [Path(f["file"]).stem for f in figures]
    assert [i["title"].split(". ", 1)[1] for i in images] == [f["title"] for f in figures]
    broken = [i["id"] for i in images if not i["complete"] or i["width"] == 0 or i["height"] == 0]
    assert not broken, f"broken images: {broken}"
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # nothing fetched from a network
    assert shot.stat().st_size > 10_000


# --- seeds, time budgets, overwriting ------------------------------------------------------------------
def test_seeds_report_mean_and_spread_and_keep_every_seed(digits, tmp_path, tiny_classifier):
    out = tiny_compare(digits, tmp_path / "seeds", workers=True, seeds=2, seed=5, epochs=1)
    study = json.loads((out / "metrics.json").read_text())
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["ae-seed5", "ae-seed6", "vae-seed5", "vae-seed6"]
    for run in study["runs"]:
        assert [s["seed"] for s in run["seeds"]] == [5, 6]
        per_seed = [s["metrics"]["latent"]["knn_accuracy"] for s in run["seeds"]]
        assert run["metrics"]["latent"]["knn_accuracy"] == pytest.approx(sum(per_seed) / 2)
        assert run["spread"]["latent"]["knn_accuracy"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)
    assert all(v["seeds"] is None or v["seeds"].endswith("/2 seeds") for v in study["verdicts"])
    assert "±" in (out / "report.md").read_text()


def test_aggregate_is_the_mean_and_standard_deviation_of_each_number():
    mean, spread = aggregate([{"a": {"x": 1.0, "n": 3}, "name": "p"}, {"a": {"x": 3.0, "n": 3}, "name": "q"}])
    assert mean == {"a": {"x": 2.0, "n": 3}, "name": "p"}
    assert spread["a"]["x"] == pytest.approx(2 ** 0.5) and spread["a"]["n"] == 0


def test_a_seed_verdict_needs_a_difference_beyond_the_spread():
    kl = headline(2)  # lower is better
    clear = seed_verdict(kl, [[10.0, 12.0, 11.0], [0.1, 0.2, 0.1]], ["AE", "VAE"])
    assert clear[0] == 1 and clear[1] == "3/3 seeds"
    mixed = seed_verdict(kl, [[1.0, 3.0, 2.0], [2.5, 1.5, 1.8]], ["AE", "VAE"])
    assert mixed[0] is None and "beyond the seeds' spread" in mixed[2]


def test_time_budget_is_the_studys_and_is_shared_out_over_waves():
    configs = study_configs("fast", {"time_budget": 600.0}, n_train=60_000, seeds=3)
    assert [name for name, _ in configs] == ["ae-seed0", "vae-seed0", "ae-seed1", "vae-seed1", "ae-seed2", "vae-seed2"]
    assert {c.train.time_budget for _, c in split_budget(configs, processes=2)} == {200.0}
    default = study_configs("fast", {}, n_train=4_000)
    assert default[0][1].train.time_budget == study_budget(4_000) and study_budget(60_000) == 240.0
    assert study_configs("fast", {"epochs": 3}, n_train=60_000)[0][1].train.time_budget is None
    with pytest.raises(VaelabError, match="give one"):
        study_configs("fast", {"epochs": 3, "time_budget": 60.0}, n_train=60_000)


def test_overwrite_replaces_only_a_report(report, tmp_path, capsys, tiny_classifier):
    runs = ("--runs", report / "runs" / "ae", report / "runs" / "vae")
    out = tmp_path / "again"
    assert run_cli(capsys, "-q", "compare", *runs, "--out", out)[0] == 0
    (out / "stale.txt").write_text("from the old report")
    code, _, err = run_cli(capsys, "-q", "compare", *runs, "--out", out, "--overwrite")
    assert code == 0, err
    assert (out / "report.html").is_file() and not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] in ([], [".again.lock"])
    inside = ("--runs", out / "runs" / "ae", out / "runs" / "vae")
    shutil.copytree(report / "runs", out / "runs")
    assert_one_line_error(capsys, "compare", *inside, "--out", out, "--overwrite", match="would delete",
                          out=tmp_path / "never")
    assert (out / "runs" / "ae" / "checkpoint.safetensors").is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("not a report")
    assert_one_line_error(capsys, "compare", *runs, "--out", other, "--overwrite", match="holds no vaelab report",
                          out=other / "report.html")
    assert (other / "notes.txt").exists()
