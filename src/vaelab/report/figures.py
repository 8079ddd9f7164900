"""The report's figures, drawn from RunViews with matplotlib's object API (Agg canvas, no pyplot state).

Each figure puts the compared models side by side (or one above the other),
so a reader sees the AE's flaw next to the VAE's fix. `FIGURES` lists them in
report order; `render` turns each into PNG bytes and a caption.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.stats import norm

from vaelab.report.views import RunView

DPI = 100
PAD_VALUE = 0.5  # grey lines between tiled images
CLASS_COLOURS = "tab10"

# How each model draws codes, in words (keyed by the model registry name).
SAMPLING_WORDS = {"ae": "uniformly over the bounding box of its training codes (as the book does)",
                  "vae": "from its prior N(0, I)"}
GRID_WORDS = {"ae": "evenly spaced over the bounding box of its codes",
              "vae": "at evenly spaced quantiles of N(0, 1) per axis (the inverse-normal-CDF grid)"}


def tile(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """[rows, cols, H, W] images -> one 2-D mosaic with `pad` grey pixels between them."""
    rows, cols, h, w = images.shape
    mosaic = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), PAD_VALUE)
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[r, c]
    return mosaic


def show_images(ax, images: np.ndarray) -> None:
    ax.imshow(tile(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend_handles(classes: tuple[str, ...]):
    cmap = colormaps[CLASS_COLOURS]
    return [Line2D([], [], marker="o", linestyle="", color=cmap(i % 10), label=name) for i, name in enumerate(classes)]


def scatter_codes(ax, view: RunView, coloured: bool = True) -> None:
    points = view.points
    y = points[:, 1] if points.shape[1] > 1 else np.zeros(len(points))
    if coloured:
        ax.scatter(points[:, 0], y, c=view.labels % 10, cmap=CLASS_COLOURS, vmin=-0.5, vmax=9.5, s=2, alpha=0.6,
                   linewidths=0, rasterized=True)
    else:
        ax.scatter(points[:, 0], y, color="0.7", s=2, alpha=0.5, linewidths=0, rasterized=True)
    ax.set_xlabel(view.projection.labels[0])
    ax.set_ylabel(view.projection.labels[1])


# --- 1. the latent scatter -------------------------------------------------------------------------
def scatter_figure(views: list[RunView]) -> Figure:
    fig = new_figure(5.2 * len(views) + 1.6, 5.0)
    axes = fig.subplots(1, len(views))
    for ax, view in zip(np.atleast_1d(axes), views):
        scatter_codes(ax, view)
        ax.set_title(f"{view.label}: test codes")
    fig.legend(handles=legend_handles(views[0].classes), loc="outside right center", title="class", frameon=False)
    return fig


def scatter_caption(views: list[RunView]) -> str:
    return ("The codes of every test image, coloured by class, drawn on "
            + "; ".join(f"{v.label}: {v.projection.description}" for v in views) + ".")


# --- 2. random samples -----------------------------------------------------------------------------
def samples_figure(views: list[RunView]) -> Figure:
    fig = new_figure(13, 3.6 * len(views))
    grids = fig.subfigures(len(views), 1)
    for sub, view in zip(np.atleast_1d(grids), views):
        left, right = sub.subplots(1, 2, width_ratios=[1, 2.4])
        scatter_codes(left, view, coloured=False)
        marked = view.projection(view.sample_codes)
        left.scatter(marked[:, 0], marked[:, 1] if marked.shape[1] > 1 else np.zeros(len(marked)), color="crimson",
                     marker="x", s=30)
        for i, (px, py) in enumerate(marked[:, :2] if marked.shape[1] > 1 else np.c_[marked, np.zeros(len(marked))]):
            left.annotate(str(i + 1), (px, py), fontsize=7, color="crimson", xytext=(2, 2), textcoords="offset points")
        left.set_title(f"{view.label}: drawn points (×)")
        n, (h, w) = len(view.sample_images), view.sample_images.shape[1:]
        cols = (n + 1) // 2
        padded = np.concatenate([view.sample_images, np.full((2 * cols - n, h, w), PAD_VALUE)])
        show_images(right, padded.reshape(2, cols, h, w))
        for i in range(n):
            right.text((i % cols) * (w + 1) + 1, (i // cols) * (h + 1) + 1, str(i + 1), color="crimson",
                       fontsize=7, va="top")
        right.set_title(f"{view.label}: decoded")
    return fig


def samples_caption(views: list[RunView]) -> str:
    return ("Random latent points, marked × and numbered on the scatter, and the images they decode to; "
            + "; ".join(f"the {v.label} draws {SAMPLING_WORDS[v.model_name]}" for v in views) + ".")


# --- 3. the decoded latent grid ----------------------------------------------------------------------
def grid_figure(views: list[RunView]) -> Figure:
    fig = new_figure(6.0 * len(views), 6.4)
    for ax, view in zip(np.atleast_1d(fig.subplots(1, len(views))), views):
        show_images(ax, view.grid_images)
        rows, cols, h, w = view.grid_images.shape
        z1, z2 = view.grid_ticks
        col_ticks = np.linspace(0, cols - 1, 5).round().astype(int)
        ax.set_xticks(col_ticks * (w + 1) + w / 2, [f"{z1[i]:.2g}" for i in col_ticks])
        ax.set_xlabel("z₁")
        if rows > 1:
            row_ticks = np.linspace(0, rows - 1, 5).round().astype(int)
            ax.set_yticks(row_ticks * (h + 1) + h / 2, [f"{z2[i]:.2g}" for i in row_ticks])
            ax.set_ylabel("z₂")
        ax.set_title(f"{view.label}: {rows}×{cols} grid" if rows > 1 else f"{view.label}: {cols} points")
    return fig


def grid_caption(views: list[RunView]) -> str:
    higher = [v.label for v in views if v.latent_dim > 2]
    return ("Images decoded on a grid of codes: "
            + "; ".join(f"{v.label} {GRID_WORDS[v.model_name]}" for v in views) + "."
            + (f" For {', '.join(higher)} only z₁ and z₂ vary; the other dimensions sit at the centre of the "
               "sampled region." if higher else ""))


# --- 4. reconstructions ----------------------------------------------------------------------------
def format_code(code: np.ndarray) -> str:
    shown = ", ".join(f"{c:.2g}" for c in code[:2])
    return f"({shown}{', …' if len(code) > 2 else ''})"


def reconstructions_figure(views: list[RunView]) -> Figure:
    fig = new_figure(13, 3.3 * len(views))
    for ax, view in zip(np.atleast_1d(fig.subplots(len(views), 1)), views):
        pairs = np.stack([view.originals, view.reconstructions])
        show_images(ax, pairs)
        h, w = pairs.shape[2:]
        for i, code in enumerate(view.original_codes):
            ax.text(i * (w + 1) + w / 2, 2 * (h + 1) + 1, format_code(code), ha="center", va="top", fontsize=7)
        ax.set_title(f"{view.label}: originals (top), reconstructions (bottom), codes below")
        ax.set_ylim(2 * (h + 1) + 6, -0.5)
    return fig


def reconstructions_caption(views: list[RunView]) -> str:
    return ("The first test image of each class, its reconstruction, and its code "
            "(the first two coordinates when the code is longer).")


# --- 5. per-dimension histograms ---------------------------------------------------------------------
HISTOGRAM_DIMS = 4


def histograms_figure(views: list[RunView]) -> Figure:
    cols = min(max(v.latent_dim for v in views), HISTOGRAM_DIMS)
    fig = new_figure(3.2 * cols + 0.5, 2.6 * 2 * len(views))
    axes = np.atleast_2d(fig.subplots(2 * len(views), cols, squeeze=False))
    for r, view in enumerate(views):
        for dim in range(cols):
            top, bottom = axes[2 * r, dim], axes[2 * r + 1, dim]
            if dim >= view.latent_dim:
                top.set_axis_off()
                bottom.set_axis_off()
                continue
            z = view.codes[:, dim]
            span = max(4.0, np.abs(z).max())
            top.hist(z, bins=60, range=(-span, span), density=True, color="steelblue", alpha=0.8)
            grid = np.linspace(-span, span, 400)
            top.plot(grid, norm.pdf(grid), color="black", linewidth=1, label="N(0, 1)")
            top.set_title(f"{view.label}: z{dim + 1}", fontsize=9)
            bottom.hist(norm.cdf(z), bins=40, range=(0, 1), density=True, color="darkorange", alpha=0.8)
            bottom.axhline(1.0, color="black", linewidth=1)
            bottom.set_title(f"{view.label}: Φ(z{dim + 1})", fontsize=9)
        axes[2 * r, 0].legend(fontsize=7, loc="upper right")
    return fig


def histograms_caption(views: list[RunView]) -> str:
    return ("Top of each pair: histogram of the codes per dimension against the N(0, 1) density. Bottom: the same "
            "codes through the normal CDF Φ; codes distributed as N(0, 1) give a flat histogram at height 1, and "
            "codes far outside it pile up at 0 and 1."
            + (f" Only the first {HISTOGRAM_DIMS} dimensions are shown."
               if max(v.latent_dim for v in views) > HISTOGRAM_DIMS else ""))


# --- 6. training curves ----------------------------------------------------------------------------
def training_figure(views: list[RunView]) -> Figure:
    terms = [[k for k in view.history[0]["train"]] if view.history else [] for view in views]
    cols = max(1, max(len(t) for t in terms))
    fig = new_figure(3.6 * cols, 2.8 * len(views))
    axes = fig.subplots(len(views), cols, squeeze=False)
    for r, (view, names) in enumerate(zip(views, terms)):
        epochs = [h["epoch"] for h in view.history]
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(names):
                ax.set_axis_off()
                continue
            name = names[c]
            ax.plot(epochs, [h["train"][name] for h in view.history], marker="o", label="train")
            ax.plot(epochs, [h["test"][name] for h in view.history], marker="s", label="test")
            ax.set_title(f"{view.label}: {name}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel("nats / image")
        if names:
            axes[r, 0].legend(fontsize=7)
        else:
            axes[r, 0].text(0.5, 0.5, "no training history in this run folder", ha="center",
                            transform=axes[r, 0].transAxes)
    return fig


def training_caption(views: list[RunView]) -> str:
    return ("Each loss term per epoch, train (mean over the epoch's batches) and test (after the epoch), in nats per "
            "image without the Gaussian's normalising constant. The AE's and the VAE's scales differ by their "
            "r_loss_factor.")


# --- above 2-D: traversals and interpolations --------------------------------------------------------
def rows_figure(views: list[RunView], attribute: str, row_label: str) -> Figure:
    shown = [v for v in views if getattr(v, attribute) is not None]
    fig = new_figure(8, sum(0.95 * len(getattr(v, attribute)) + 0.6 for v in shown))
    axes = fig.subplots(len(shown), 1, height_ratios=[len(getattr(v, attribute)) for v in shown], squeeze=False)
    for ax, view in zip(axes[:, 0], shown):
        rows = getattr(view, attribute)
        show_images(ax, rows)
        h = rows.shape[2]
        ax.set_yticks([i * (h + 1) + h / 2 for i in range(len(rows))],
                      [f"{row_label} {i + 1}" for i in range(len(rows))])
        ax.set_title(view.label)
    return fig


def traversals_caption(views: list[RunView]) -> str:
    return ("Latent traversals: starting from the code of one test image, each row sweeps one dimension from the 5% "
            "to the 95% quantile of the model's sampling distribution while the others stay fixed.")


def interpolations_caption(views: list[RunView]) -> str:
    return "Straight lines in latent space between the codes of two test images of different classes, in 9 steps."


def any_above_2d(views: list[RunView]) -> bool:
    return any(v.latent_dim > 2 for v in views)


def always(views: list[RunView]) -> bool:
    return True


@dataclass(frozen=True)
class FigureSpec:
    name: str  # the PNG's file stem
    title: str
    draw: Callable[[list[RunView]], Figure]
    caption: Callable[[list[RunView]], str]
    applies: Callable[[list[RunView]], bool] = always


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("scatter", "Latent space of the test set", scatter_figure, scatter_caption),
    FigureSpec("samples", "Images decoded from random latent points", samples_figure, samples_caption),
    FigureSpec("grid", "Decoded latent grid", grid_figure, grid_caption),
    FigureSpec("reconstructions", "Reconstructions", reconstructions_figure, reconstructions_caption),
    FigureSpec("histograms", "Codes per dimension against N(0, 1)", histograms_figure, histograms_caption),
    FigureSpec("training", "Training curves", training_figure, training_caption),
    FigureSpec("traversals", "Latent traversals", lambda v: rows_figure(v, "traversals", "dim"), traversals_caption,
               any_above_2d),
    FigureSpec("interpolations", "Interpolations between test images",
               lambda v: rows_figure(v, "interpolations", "pair"), interpolations_caption, any_above_2d),
)


@dataclass(frozen=True)
class RenderedFigure:
    name: str
    title: str
    caption: str
    png: bytes


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def render(views: list[RunView]) -> list[RenderedFigure]:
    """Every figure that applies to these views, as PNG bytes with its title and caption."""
    return [RenderedFigure(spec.name, spec.title, spec.caption(views), png_bytes(spec.draw(views)))
            for spec in FIGURES if spec.applies(views)]
