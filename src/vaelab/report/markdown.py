"""report.md: the same report as report.html in Markdown, with the figures as linked PNG files."""

from __future__ import annotations

from vaelab.report.figures import RenderedFigure
from vaelab.report.summary import RUN_SETTINGS, format_value, measures, table


def cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def render_markdown(study: dict, figures: list[RenderedFigure], figure_folder: str) -> str:
    labels = [run["label"] for run in study["runs"]]
    c = study["calibration"]
    lines = [f"# vaelab: {' vs '.join(labels)} on {study['dataset']['name']}", ""]
    lines += [f"- **{v['plain']}**" for v in study["verdicts"]]
    lines += ["", f"{study['dataset']['n_test']} test images. Time: "
              + ", ".join(f"{k} {v:.0f} s" for k, v in study["seconds"].items()) + ".", "",
              "## What the numbers show", ""]
    lines += [f"- {v['sentence']}" for v in study["verdicts"]]
    lines += ["", "## Metrics", "", "| measures | metric | better | " + " | ".join(map(cell, labels)) + " | unit |",
              "|---|---|---|" + "---:|" * len(labels) + "---|"]
    for row in table([run["metrics"] for run in study["runs"]], [run.get("spread") for run in study["runs"]]):
        m = row.metric
        values = [f"**{row.text(i)}**" if row.best == i else row.text(i) for i in range(len(row.values))]
        lines.append(f"| {measures(m)} | {cell(m.name)} | {m.arrow} | "
                     + " | ".join(values) + f" | {cell(m.unit)} |")
    lines += ["", "↓ lower is better, ↑ higher is better, the better value in bold; — : not defined for the model. "
              "Definitions: docs/metrics.md.", "", "## Calibration", ""]
    lines += [f"- Reference classifier test accuracy: {c['classifier_test_accuracy']:.2%}",
              f"- {c['n_images']} real training vs test images (what a perfect model would score): "
              f"manifold precision {format_value(c['precision_train_vs_test'])}, "
              f"classifier FID {format_value(c['fid_train_vs_test'])}",
              f"- Real test images: top-class probability {format_value(c['top_probability'])}, classifier score "
              f"{format_value(c['classifier_score'])}"] if c else [
        f"- {study['dataset']['name']} has no labels: there is no reference classifier, so the metrics read through "
        "it and flaw 3's class metrics say *needs labels*."]
    lines += ["", "## Figures", ""]
    for i, figure in enumerate(figures):
        lines += [f"### {i + 1}. {figure.title}", "", f"![{figure.title}]({figure_folder}/{figure.name}.png)", "",
                  figure.caption, ""]
    lines += ["## Runs", "", "| setting | " + " | ".join(map(cell, labels)) + " |", "|---|" + "---|" * len(labels)]
    for key in RUN_SETTINGS:
        lines.append(f"| {key} | " + " | ".join(cell(run.get(key, "—")) for run in study["runs"]) + " |")
    return "\n".join(lines) + "\n"
