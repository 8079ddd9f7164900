"""report.html: one self-contained page (inline CSS, figures as base64 PNG data URIs), readable offline.

Built from the study dictionary that is also written as metrics.json, plus the
rendered figures; every piece of text is HTML-escaped.
"""

from __future__ import annotations

import base64
from html import escape

from vaelab.report.figures import RenderedFigure
from vaelab.report.summary import RUN_SETTINGS, format_value, measures, table

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; } th, td { padding: .3em .8em; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.best { font-weight: bold; background: #e8f4e8; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .92em; } .flaw { margin: .6em 0; } .muted { color: #777; font-size: .9em; }
ul.verdicts { font-size: 1.15em; background: #f4f7fb; padding: .6em 1em .6em 2em; border-left: 4px solid #4477aa; }
"""


def metrics_table(study: dict) -> str:
    labels = [run["label"] for run in study["runs"]]
    head = "".join(f"<th>{escape(label)}</th>" for label in labels)
    body = []
    for row in table([run["metrics"] for run in study["runs"]], [run.get("spread") for run in study["runs"]]):
        m = row.metric
        cells = "".join(f'<td class="num{" best" if row.best == i else ""}">{escape(row.text(i))}</td>'
                        for i in range(len(row.values)))
        body.append(f"<tr><td>{escape(measures(m))}</td><td>{escape(m.name)}</td><td>{m.arrow}</td>{cells}"
                    f"<td class=muted>{escape(m.unit)}</td></tr>")
    return (f"<table><thead><tr><th>measures</th><th>metric</th><th>better</th>{head}<th>unit</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            "<p class=muted>↓ lower is better, ↑ higher is better; the better value is in bold. "
            "— : not defined for this model (an AE has no likelihood). Definitions: docs/metrics.md.</p>")


def calibration(study: dict) -> str:
    c = study["calibration"]
    if not c:
        return (f"<p>{escape(study['dataset']['name'])} has no labels: there is no reference classifier, so the "
                "metrics read through it and flaw 3's class metrics say <i>needs labels</i>.</p>")
    return ("<ul>"
            f"<li>Reference classifier test accuracy: <b>{c['classifier_test_accuracy']:.2%}</b> on "
            f"{escape(study['dataset']['name'])}.</li>"
            f"<li>{c['n_images']} real training against {c['n_images']} real test images (what a perfect model "
            f"would score): manifold precision <b>{format_value(c['precision_train_vs_test'])}</b>, classifier FID "
            f"<b>{format_value(c['fid_train_vs_test'])}</b>.</li>"
            f"<li>Real test images: mean top-class probability {format_value(c['top_probability'])}, "
            f"classifier score {format_value(c['classifier_score'])} (maximum {len(study['dataset']['classes'])})."
            "</li></ul>")


def runs_table(study: dict) -> str:
    head = "".join(f"<th>{escape(run['label'])}</th>" for run in study["runs"])
    rows = "".join(f"<tr><td>{k}</td>" + "".join(f"<td>{escape(str(run.get(k, '—')))}</td>" for run in study["runs"])
                   + "</tr>" for k in RUN_SETTINGS)
    return f"<table><thead><tr><th>setting</th>{head}</tr></thead><tbody>{rows}</tbody></table>"


def figure_block(number: int, figure: RenderedFigure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (f'<figure id="{escape(figure.name)}"><h3>{number}. {escape(figure.title)}</h3>'
            f'<img src="data:image/png;base64,{data}" alt="{escape(figure.title)}">'
            f"<figcaption>{escape(figure.caption)}</figcaption></figure>")


def page(title: str, body: str) -> str:
    """A whole self-contained HTML page: `title` (plain text) as title and heading, then `body` (HTML)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
{body}
</body></html>
"""


def render_html(study: dict, figures: list[RenderedFigure]) -> str:
    labels = " vs ".join(run["label"] for run in study["runs"])
    title = f"vaelab: {labels} on {study['dataset']['name']}"
    plain = "".join(f"<li>{escape(v['plain'])}</li>" for v in study["verdicts"])
    flaws = "".join(f'<p class="flaw">{escape(v["sentence"])}</p>' for v in study["verdicts"])
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in study["seconds"].items())
    figure_html = "".join(figure_block(i + 1, f) for i, f in enumerate(figures))
    return page(title, f"""<ul id="verdicts" class="verdicts">{plain}</ul>
<p>The three flaws of an autoencoder's latent space (Generative Deep Learning, ch. 3), measured on
{study['dataset']['n_test']} test images of {escape(study['dataset']['name'])}.
<span class=muted>vaelab {escape(study['versions']['vaelab'])}; {escape(seconds)}.</span></p>
<h2>What the numbers show</h2>{flaws}
<h2>Metrics</h2>{metrics_table(study)}
<h2>Calibration</h2>{calibration(study)}
<h2>Figures</h2>{figure_html}
<h2>Runs</h2>{runs_table(study)}""")
