"""The sweep's page: metrics against beta as line plots, the runs' latent scatters in a row, and per flaw the
smallest beta that fixes it; drawn from the sweep's metrics.json content and the runs' RunViews."""

from __future__ import annotations

from html import escape

import numpy as np

from vaelab.metrics.catalogue import CATALOGUE, headline
from vaelab.report.figures import (
    RenderedFigure,
    legend_handles,
    mark_origin,
    new_figure,
    png_bytes,
    scatter_codes,
)
from vaelab.report.html import figure_block, page
from vaelab.report.summary import format_value
from vaelab.report.views import RunView

# The panels of the dial figure: each flaw's headline metric, then what the KL costs.
PANELS = (headline(1), headline(2), headline(3),
          *(next(m for m in CATALOGUE if m.section == "likelihood" and m.key == key) for key in ("mse", "iw_nll")))
KL_PANEL = ("likelihood", "kl", "KL(q(z|x) ‖ N(0, I)), test mean", "nats/image")
SERIES_COLOUR, REFERENCE_COLOUR, FIX_COLOUR = "tab:blue", "tab:red", "tab:green"


def value(metrics: dict, section: str, key: str) -> float | None:
    return metrics.get(section, {}).get(key)


def dial_figure(result: dict):
    """Six panels against beta (symmetric-log axis, so beta = 0 has its place): mean over seeds with the seeds'
    standard deviation as error bars; the reference model as a horizontal line where it has the number."""
    betas = np.array(result["betas"])
    positive = betas[betas > 0]
    panels = [(m.section, m.key, m.name, m.unit, m.flaw) for m in PANELS] + [(*KL_PANEL, None)]
    fixes = {fix["flaw"]: fix["beta"] for fix in result["fixes"]}
    reference = result["reference"]
    fig = new_figure(15, 8.5)
    for ax, (section, key, name, unit, flaw) in zip(fig.subplots(2, 3).flat, panels):
        means = np.array([value(run["metrics"], section, key) for run in result["runs"]], dtype=float)
        spreads = np.array([value(run["spread"], section, key) if run["spread"] else 0.0 for run in result["runs"]],
                           dtype=float)
        ax.errorbar(betas, means, yerr=spreads, marker="o", color=SERIES_COLOUR, capsize=3, label="VAE at β")
        ref = value(reference["metrics"], section, key)
        if ref is not None:
            ax.axhline(ref, color=REFERENCE_COLOUR, linestyle="--", label=reference["label"])
            ref_spread = value(reference["spread"], section, key) if reference["spread"] else None
            if ref_spread:
                ax.axhspan(ref - ref_spread, ref + ref_spread, color=REFERENCE_COLOUR, alpha=0.12)
        if flaw is not None and fixes.get(flaw) is not None:
            ax.axvline(fixes[flaw], color=FIX_COLOUR, linestyle=":", label=f"smallest fixing β = {fixes[flaw]:g}")
        linthresh = positive.min() if len(positive) else 1.0
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(-0.3 * linthresh, max(betas.max(), linthresh) * 1.5)  # no empty negative half
        ax.set_xticks(betas, [f"{b:g}" for b in betas], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("β")
        ax.set_ylabel(unit, fontsize=9)
        ax.set_title((f"flaw {flaw}: " if flaw else "") + name, fontsize=10)
        ax.legend(fontsize=8)
    return fig


def dial_caption(result: dict) -> str:
    seeds = result["settings"]["seeds"]
    spread = (f"error bars and the shaded band: the standard deviation over {seeds} seeds" if seeds > 1
              else "one seed, so no error bars: the seed-to-seed spread is unknown")
    return (f"Each metric of the VAE trained at β = {', '.join(f'{b:g}' for b in result['betas'])} (loss = "
            f"reconstruction + β·KL), against β on a symmetric-log axis; the dashed line is the "
            f"{result['reference']['label']}, drawn where it has the number (it has no KL and no likelihood "
            f"bound); {spread}. A dotted line marks, for each flaw, the smallest β that beats the "
            f"{result['reference']['label']}. Better is lower for every panel except flaw 1's "
            "(share of random samples like the model's reconstructions). Definitions: docs/metrics.md.")


def scatters_figure(views: list[RunView]):
    fig = new_figure(2.7 * len(views) + 1.2, 3.2)
    for ax, view in zip(np.atleast_1d(fig.subplots(1, len(views))), views):
        scatter_codes(ax, view)
        mark_origin(ax, view, named=False)
        ax.set_title(view.label, fontsize=10)
        ax.tick_params(labelsize=7)
    fig.legend(handles=legend_handles(views[0].classes), loc="outside right center", title="class", frameon=False,
               fontsize=7)
    return fig


def scatters_caption(views: list[RunView]) -> str:
    return ("The codes of every test image, coloured by class, for the reference and each β (first seed), on "
            + "; ".join(f"{v.label}: {v.projection.description}" for v in views[:1])
            + (" for each" if len(views) > 1 else "") + "; + marks z = 0. Each panel has its own axes.")


def render_sweep(result: dict, views: list[RunView]) -> list[RenderedFigure]:
    return [RenderedFigure("dial", "The KL dial: each flaw, the reconstruction and the likelihood against β",
                           dial_caption(result), png_bytes(dial_figure(result))),
            RenderedFigure("scatters", "The latent space at each β", scatters_caption(views),
                           png_bytes(scatters_figure(views)))]


def fix_sentence(fix: dict, reference: str, seeds: int) -> str:
    metric = next(m for m in CATALOGUE if m.section in ("samples", "latent") and m.key == fix["metric"])
    if fix["beta"] is None:
        return (f"Flaw {fix['flaw']} ({fix['problem']}): no β of the sweep beats the {reference} on "
                f"{metric.name} ({reference}: {format_value(fix['reference'])}).")
    margin = (f"by more than the seeds' spread ({format_value(abs(fix['value'] - fix['reference']))} > "
              f"{format_value(fix['spread'])})" if seeds > 1
              else "with one seed, so the seed-to-seed spread is unknown: rerun with --seeds 3 to know")
    return (f"Flaw {fix['flaw']} ({fix['problem']}): fixed from β = {fix['beta']:g}, whose {metric.name} "
            f"{format_value(fix['value'])} beats the {reference}'s {format_value(fix['reference'])} "
            f"({metric.better} is better) {margin}.")


def series_table(result: dict) -> str:
    runs = [result["reference"], *result["runs"]]
    metrics = [*PANELS, None]
    head = "".join(f"<th>{escape(run['label'])}</th>" for run in runs)
    rows = []
    for metric in metrics:
        section, key, name, unit = (metric.section, metric.key, metric.name, metric.unit) if metric else KL_PANEL
        cells = []
        for run in runs:
            mean, spread = value(run["metrics"], section, key), value(run["spread"] or {}, section, key)
            cells.append(f'<td class="num">{escape(format_value(mean))}'
                         + (f" ± {escape(format_value(spread))}" if run["spread"] and mean is not None else "")
                         + "</td>")
        arrow = metric.arrow if metric else "—"
        rows.append(f"<tr><td>{escape(name)}</td><td>{arrow}</td>{''.join(cells)}<td class=muted>{escape(unit)}</td>"
                    "</tr>")
    return (f"<table><thead><tr><th>metric</th><th>better</th>{head}<th>unit</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def render_sweep_html(result: dict, figures: list[RenderedFigure]) -> str:
    reference, seeds = result["reference"]["label"], result["settings"]["seeds"]
    title = f"vaelab sweep: the KL weight β on {result['dataset']['name']}"
    fixes = "".join(f"<li>{escape(fix_sentence(f, reference, seeds))}</li>" for f in result["fixes"])
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    figure_html = "".join(figure_block(i + 1, f) for i, f in enumerate(figures))
    return page(title, f"""<ul id="fixes" class="verdicts">{fixes}</ul>
<p>The VAE's loss is reconstruction + β·KL (Higgins et al. 2017; β = 1 is the VAE, β → 0 an autoencoder with
noisy codes). Each β is one run per seed ({seeds} seed{'s' if seeds > 1 else ''}) with the same network and
training as the {escape(reference)} reference; a β fixes a flaw when its headline metric beats the
{escape(reference)}'s by more than the seed-to-seed spread. Measured on {result['dataset']['n_test']} test
images of {escape(result['dataset']['name'])}. <span class=muted>vaelab {escape(result['versions']['vaelab'])};
{escape(seconds)}.</span></p>
<h2>Metrics</h2>{series_table(result)}
<p class=muted>Mean over seeds ± their standard deviation; — : not defined for this model. Definitions:
docs/metrics.md and docs/sweep.md.</p>
<h2>Figures</h2>{figure_html}""")
