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
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse as EllipsePatch

from vaelab.report.views import BOOK_FINAL_LOSS, Ellipse, RunView, axes_note

DPI = 100
PAD_VALUE = 0.5  # grey lines between tiled images
CLASS_COLOURS = "tab10"
CLASS_SIGMAS = 2.0  # class ellipses: the 2-sigma contour, area 4 pi sqrt(det S_c)
POSTERIOR_SIGMAS = 2.0
NOTE_COLOUR = "darkred"



def tile(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """[rows, cols, H, W] grey or [rows, cols, H, W, C] colour images -> one mosaic with `pad` grey pixels
    between them."""
    rows, cols, h, w = images.shape[:4]
    mosaic = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, *images.shape[4:]), PAD_VALUE)
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[r, c]
    return mosaic


def show_images(ax, images: np.ndarray) -> None:
    """Grey levels through the grey colour map, colour images as they are (imshow ignores cmap for RGB)."""
    ax.imshow(np.clip(tile(images), 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend_handles(classes: tuple[str, ...]):
    cmap = colormaps[CLASS_COLOURS]
    return [Line2D([], [], marker="o", linestyle="", color=cmap(i % 10), label=name) for i, name in enumerate(classes)]


def class_colour(label: int):
    return colormaps[CLASS_COLOURS](label % 10)


def reproduces(views: list[RunView], figure: str) -> str:
    """" Reproduces the chapter's Figure 2 (AE) and Figure 7 (VAE).", for the kinds of model shown; `figure`
    is a key of the models' `chapter_figures` ("scatter", "samples")."""
    named = dict.fromkeys(f"{v.chapter_figures[figure]} ({v.model_name.upper()})" for v in views
                          if figure in v.chapter_figures)
    return f" Reproduces the chapter's {' and '.join(named)}." if named else ""


def draw_ellipse(ax, ellipse: Ellipse, sigmas: float, **style) -> EllipsePatch:
    major, minor, angle = ellipse.axes(sigmas)
    return ax.add_patch(EllipsePatch(tuple(ellipse.centre), major, minor, angle=angle, fill=False, **style))


def mark_origin(ax, view: RunView, named: bool = True) -> None:
    """A black-on-white + at z = 0 (gid "origin"), so a reader sees where each model's codes sit; `named`
    writes "z = 0" beside it (a figure with a legend says it there instead, clear of crowded codes)."""
    x, y = view.origin
    ax.plot([x], [y], marker="+", markersize=16, markeredgewidth=4, color="white", zorder=9)  # above any label
    ax.plot([x], [y], marker="+", markersize=14, markeredgewidth=2, color="black", zorder=10, gid="origin")
    if named:
        ax.annotate("z = 0", (x, y), xytext=(6, -12), textcoords="offset points", fontsize=8, zorder=7)


def note_axes(fig: Figure, views: list[RunView]) -> None:
    """Say on the figure when the runs' panels have different scales (gid "axes-note")."""
    note = axes_note(views)
    if note:
        fig.suptitle(note, fontsize=9, color=NOTE_COLOUR, wrap=True).set_gid("axes-note")


def scatter_codes(ax, view: RunView, coloured: bool = True) -> None:
    points = view.points
    y = points[:, 1] if points.shape[1] > 1 else np.zeros(len(points))
    size = float(np.clip(10_000 / len(points), 2, 6))  # fewer codes, larger dots
    if coloured and view.classes:
        ax.scatter(points[:, 0], y, c=view.labels % 10, cmap=CLASS_COLOURS, vmin=-0.5, vmax=9.5, s=size, alpha=0.6,
                   linewidths=0, rasterized=True)
    else:
        ax.scatter(points[:, 0], y, color="0.7", s=size, alpha=0.5, linewidths=0, rasterized=True)
    ax.set_xlabel(view.projection.labels[0])
    ax.set_ylabel(view.projection.labels[1])


# --- 1. the latent scatter -------------------------------------------------------------------------
def class_ellipses(ax, view: RunView) -> None:
    """Flaw 3 on the scatter: each class's covariance ellipse; the widest solid and the narrowest dashed,
    both thick and named."""
    widest, narrowest = view.widest, view.narrowest
    for spread in view.spreads:
        named = spread in (widest, narrowest)
        draw_ellipse(ax, spread.ellipse, CLASS_SIGMAS, edgecolor=class_colour(spread.label),
                     linewidth=2.8 if named else 1.0, linestyle="--" if spread is narrowest else "-", zorder=4)
    for spread, word in ((widest, "widest"), (narrowest, "narrowest")):
        x, y = spread.ellipse.centre
        top = y + CLASS_SIGMAS * np.sqrt(spread.ellipse.covariance[1, 1])  # above the ellipse, clear of z = 0
        ax.annotate(f"{word}: {spread.name}", (x, top), fontsize=9, fontweight="bold",
                    color=class_colour(spread.label), ha="center", va="bottom", zorder=8,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8, "linewidth": 0})


def scatter_figure(views: list[RunView]) -> Figure:
    fig = new_figure(5.2 * len(views) + 1.6, 5.4)
    axes = fig.subplots(1, len(views))
    for ax, view in zip(np.atleast_1d(axes), views):
        scatter_codes(ax, view)
        mark_origin(ax, view, named=False)
        if not view.spreads:  # unlabelled data: no classes to colour or compare
            ax.set_title(f"{view.label}: test codes (no labels)", fontsize=10)
            continue
        class_ellipses(ax, view)
        widest, narrowest = view.widest, view.narrowest
        ax.set_title(f"{view.label}: test codes\nwidest class {widest.name} (√det S {widest.spread:.2g}), "
                     f"narrowest {narrowest.name} ({narrowest.spread:.2g})", fontsize=10)
    origin = Line2D([], [], marker="+", markersize=12, markeredgewidth=2, linestyle="", color="black", label="z = 0")
    fig.legend(handles=legend_handles(views[0].classes) + [origin], loc="outside right center",
               title="class" if views[0].classes else None, frameon=False)
    note_axes(fig, views)
    return fig


def scatter_caption(views: list[RunView]) -> str:
    if not all(v.spreads for v in views):
        return ("The codes of every test image (the data has no labels, so no class colours or class spreads), drawn "
                "on " + "; ".join(f"{v.label}: {v.projection.description}" for v in views) + ". + marks z = 0."
                + reproduces(views, "scatter"))
    spreads = "; ".join(f"{v.label}: widest {v.widest.name}, narrowest {v.narrowest.name}, "
                        f"{v.widest.spread / v.narrowest.spread:.2g}× apart" for v in views)
    return ("The codes of every test image, coloured by class, drawn on "
            + "; ".join(f"{v.label}: {v.projection.description}" for v in views) + "."
            + f" Each class's {CLASS_SIGMAS:g}-sigma covariance ellipse (its area is proportional to the class's "
            f"spread √det S_c, flaw 3; the widest solid and thick, the narrowest dashed): {spreads}."
            " + marks z = 0." + reproduces(views, "scatter"))


# --- 2. random samples -----------------------------------------------------------------------------
def samples_figure(views: list[RunView]) -> Figure:
    fig = new_figure(13, 3.6 * len(views))
    grids = fig.subfigures(len(views), 1)
    for sub, view in zip(np.atleast_1d(grids), views):
        left, right = sub.subplots(1, 2, width_ratios=[1, 2.4])
        scatter_codes(left, view, coloured=False)
        mark_origin(left, view)
        marked = view.projection(view.sample_codes)
        left.scatter(marked[:, 0], marked[:, 1] if marked.shape[1] > 1 else np.zeros(len(marked)), color="crimson",
                     marker="x", s=30)
        for i, (px, py) in enumerate(marked[:, :2] if marked.shape[1] > 1 else np.c_[marked, np.zeros(len(marked))]):
            left.annotate(str(i + 1), (px, py), fontsize=7, color="crimson", xytext=(2, 2), textcoords="offset points")
        left.set_title(f"{view.label}: drawn points (×)")
        n, (h, w), pixel = len(view.sample_images), view.sample_images.shape[1:3], view.sample_images.shape[3:]
        cols = (n + 1) // 2
        padded = np.concatenate([view.sample_images, np.full((2 * cols - n, h, w, *pixel), PAD_VALUE)])
        show_images(right, padded.reshape(2, cols, h, w, *pixel))
        for i in range(n):
            right.text((i % cols) * (w + 1) + 1, (i // cols) * (h + 1) + 1, str(i + 1), color="crimson",
                       fontsize=7, va="top")
        right.set_title(f"{view.label}: decoded")
    note_axes(fig, views)
    return fig


def samples_caption(views: list[RunView]) -> str:
    return ("Random latent points, marked × and numbered on the scatter (+ marks z = 0), and the images they "
            "decode to; " + "; ".join(f"the {v.label} draws {v.sampling_words}" for v in views) + "."
            + reproduces(views, "samples"))


# --- 3. the decoded latent grid ----------------------------------------------------------------------
def grid_figure(views: list[RunView]) -> Figure:
    fig = new_figure(6.0 * len(views), 6.4)
    for ax, view in zip(np.atleast_1d(fig.subplots(1, len(views))), views):
        show_images(ax, view.grid_images)
        rows, cols, h, w = view.grid_images.shape[:4]
        z1, z2 = view.grid_ticks
        col_ticks = np.linspace(0, cols - 1, 5).round().astype(int)
        ax.set_xticks(col_ticks * (w + 1) + w / 2, [f"{z1[i]:.2g}" for i in col_ticks])
        ax.set_xlabel("z₁")
        if rows > 1:
            row_ticks = np.linspace(0, rows - 1, 5).round().astype(int)
            ax.set_yticks(row_ticks * (h + 1) + h / 2, [f"{z2[i]:.2g}" for i in row_ticks])
            ax.set_ylabel("z₂")
        title = f"{view.label}: {rows}×{cols} grid" if rows > 1 else f"{view.label}: {cols} points"
        ax.set_title(title + mark_grid_origin(ax, view))
    return fig


def mark_grid_origin(ax, view: RunView) -> str:
    """Mark (z₁, z₂) = (0, 0) on the mosaic where the grid reaches it; else return words for the title."""
    rows, cols, h, w = view.grid_images.shape[:4]
    z1, z2 = view.grid_ticks
    if not (z1.min() <= 0 <= z1.max() and (rows == 1 or z2.min() <= 0 <= z2.max())):
        return "\n(z₁, z₂) = (0, 0) lies outside it"
    x = np.interp(0.0, z1, np.arange(cols) * (w + 1) + w / 2)
    y = np.interp(0.0, z2[::-1], (np.arange(rows) * (h + 1) + h / 2)[::-1]) if rows > 1 else h / 2
    ax.plot([x], [y], marker="+", markersize=16, markeredgewidth=4, color="white", zorder=6)
    ax.plot([x], [y], marker="+", markersize=14, markeredgewidth=2, color="crimson", zorder=7, gid="origin")
    return ""


def grid_caption(views: list[RunView]) -> str:
    higher = [v.label for v in views if v.latent_dim > 2]
    return ("Images decoded on a grid of codes: "
            + "; ".join(f"{v.label} {v.grid_words}" for v in views) + "; + marks (z₁, z₂) = (0, 0)."
            + (f" For {', '.join(higher)} only z₁ and z₂ vary; the other dimensions sit at the centre of the "
               "sampled region." if higher else "") + reproduces(views, "samples"))


# --- 4. reconstructions ----------------------------------------------------------------------------
def format_code(code: np.ndarray) -> str:
    shown = ", ".join(f"{c:.2g}" for c in code[:2])
    return f"({shown}{', …' if len(code) > 2 else ''})"


def reconstructions_figure(views: list[RunView]) -> Figure:
    fig = new_figure(13, 3.3 * len(views))
    for ax, view in zip(np.atleast_1d(fig.subplots(len(views), 1)), views):
        pairs = np.stack([view.originals, view.reconstructions])
        show_images(ax, pairs)
        h, w = pairs.shape[2:4]
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
            top.plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), color="black", linewidth=1, label="N(0, 1)")
            top.axvline(0.0, color="black", linewidth=0.8, linestyle=":", gid="origin")
            top.set_title(f"{view.label}: z{dim + 1}", fontsize=9)
            uniform = torch.special.ndtr(torch.as_tensor(z, dtype=torch.float64)).numpy()  # Φ(z): uniform for N(0, 1)
            bottom.hist(uniform, bins=40, range=(0, 1), density=True, color="darkorange", alpha=0.8)
            bottom.axhline(1.0, color="black", linewidth=1)
            bottom.set_title(f"{view.label}: Φ(z{dim + 1})", fontsize=9)
        axes[2 * r, 0].legend(fontsize=7, loc="upper right")
    return fig


def histograms_caption(views: list[RunView]) -> str:
    return ("Top of each pair: histogram of the codes per dimension against the N(0, 1) density (dotted: 0). "
            "Bottom: the same "
            "codes through the normal CDF Φ; codes distributed as N(0, 1) give a flat histogram at height 1, and "
            "codes far outside it pile up at 0 and 1."
            + (f" Only the first {HISTOGRAM_DIMS} dimensions are shown."
               if max(v.latent_dim for v in views) > HISTOGRAM_DIMS else ""))


# --- 6. training curves ----------------------------------------------------------------------------
def training_figure(views: list[RunView]) -> Figure:
    cols = max(1, max(len(v.loss_units) for v in views))
    fig = new_figure(3.8 * cols, 2.9 * len(views))
    axes = fig.subplots(len(views), cols, squeeze=False)
    for r, view in enumerate(views):
        epochs = [h["epoch"] for h in view.history]
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(view.loss_units):
                ax.set_axis_off()
                continue
            name, unit = list(view.loss_units.items())[c]
            ax.plot(epochs, [h["train"][name] for h in view.history], marker="o", label="train")
            ax.plot(epochs, [h["test"][name] for h in view.history], marker="s", label="test")
            if name == "loss" and view.book_loss is not None:
                ax.axhline(view.book_loss, color="black", linestyle="--", linewidth=1, gid="book-loss",
                           label=f"the book: {view.book_loss:.1f} after 200 epochs")
            ax.set_title(f"{view.label}: {name}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel(unit, fontsize=8)
        if view.loss_units:
            axes[r, 0].legend(fontsize=7)
        else:
            axes[r, 0].text(0.5, 0.5, "no training history in this run folder", ha="center",
                            transform=axes[r, 0].transAxes)
    return fig


def training_caption(views: list[RunView]) -> str:
    units = "; ".join(f"{v.label}: " + ", ".join(f"{name} in {unit}" for name, unit in v.loss_units.items())
                      for v in views if v.loss_units)
    book = [v.label for v in views if v.book_loss is not None]
    return ("Each loss term per epoch, train (mean over the epoch's batches) and test (after the epoch), each run on "
            f"its own axes and in its own unit ({units}). Nats are without the Gaussian's normalising constant; a "
            "Gaussian likelihood with r_loss_factor 1 is a plain mean-pixel MSE."
            + (f" Dashed: the book's final loss, {BOOK_FINAL_LOSS:.1f} after 200 epochs (its VAE: the same loss on "
               f"MNIST, its conv network), for {', '.join(book)}." if book else ""))


# --- 7. the VAE idea: a distribution per image -------------------------------------------------------
def posteriors_figure(views: list[RunView]) -> Figure:
    n = len(views[0].posterior_images)
    fig = new_figure(5.0 * len(views) + 1.4, 5.0)
    axes = fig.subplots(1, len(views) + 1, width_ratios=[1] * len(views) + [0.22])
    for ax, view in zip(axes, views):
        scatter_codes(ax, view, coloured=False)
        mark_origin(ax, view)
        points = view.projection(view.posterior_means)
        for i, (point, label) in enumerate(zip(points, view.posterior_labels)):
            colour = class_colour(int(label))
            if view.posterior_ellipses is None:
                ax.plot([point[0]], [point[1]], marker="o", markersize=7, color=colour, markeredgecolor="black",
                        zorder=5)
            else:
                draw_ellipse(ax, view.posterior_ellipses[i], POSTERIOR_SIGMAS, edgecolor=colour, linewidth=2,
                             zorder=5, gid="posterior")
                ax.plot([point[0]], [point[1]], marker=".", color=colour, zorder=5)
            ax.annotate(str(i + 1), tuple(point[:2]), xytext=(5, 5), textcoords="offset points", fontsize=10,
                        fontweight="bold", color=colour, zorder=8)
        ax.set_title(f"{view.label}: " + ("its code for each image (a point)" if view.posterior_ellipses is None
                                          else f"q(z|x) for each image ({POSTERIOR_SIGMAS:g}σ ellipse)"))
    images = views[0].posterior_images
    show_images(axes[-1], images[:, None])
    h = images.shape[1]
    axes[-1].set_yticks([i * (h + 1) + h / 2 for i in range(n)], [str(i + 1) for i in range(n)])
    axes[-1].set_title("images")
    note_axes(fig, views)
    return fig


def posteriors_caption(views: list[RunView]) -> str:
    return (f"The idea of the VAE (the chapter's Figures 4–6): the same {len(views[0].posterior_images)} test images, "
            "numbered, through each encoder. An AE maps an image to one point; a VAE to a normal distribution "
            f"q(z|x) = N(μ, diag σ²), drawn as its {POSTERIOR_SIGMAS:g}σ ellipse around μ, and trains its decoder "
            "on samples from it, so the region around each code must decode to a similar image. Grey: all test "
            "codes; + marks z = 0.")


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
    return ("Morphs (vaelab.morph): straight lines in latent space between the codes of two test images of "
            "different classes, in 9 steps.")


def attribute_caption(views: list[RunView]) -> str:
    names = "; ".join(f"{v.label}: from a '{v.attribute_classes[0]}' towards '{v.attribute_classes[1]}'"
                      for v in views if v.attribute_classes)
    return ("Latent arithmetic (vaelab.attribute_vector): the code of a test image plus 0 to 1.5 times the "
            "difference of two classes' mean test codes, decoded in 9 steps (" + names + ").")


def label_grid_figure(views: list[RunView]) -> Figure:
    shown = [v for v in views if v.label_grid is not None]
    fig = new_figure(8, sum(0.8 * len(v.label_grid) + 0.6 for v in shown))
    axes = fig.subplots(len(shown), 1, height_ratios=[len(v.label_grid) for v in shown], squeeze=False)
    for ax, view in zip(axes[:, 0], shown):
        show_images(ax, view.label_grid)
        h = view.label_grid.shape[2]
        ax.set_yticks([i * (h + 1) + h / 2 for i in range(len(view.label_grid))], list(view.classes))
        ax.set_title(view.label)
    return fig


def label_grid_caption(views: list[RunView]) -> str:
    return ("Label × style: each row is decoded with one class's label, each column from one fixed code z ~ N(0, I); "
            "the label chooses the class and the code the style. The report's table gives the classifier accuracy "
            "of such class-conditioned samples (docs/metrics.md).")


def any_label_grid(views: list[RunView]) -> bool:
    return any(v.label_grid is not None for v in views)


def any_attribute_strip(views: list[RunView]) -> bool:
    return any(v.attribute_strip is not None for v in views)


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
    FigureSpec("posteriors", "A point per image (AE) or a distribution per image (VAE)", posteriors_figure,
               posteriors_caption),
    FigureSpec("samples", "Images decoded from random latent points", samples_figure, samples_caption),
    FigureSpec("grid", "Decoded latent grid", grid_figure, grid_caption),
    FigureSpec("reconstructions", "Reconstructions", reconstructions_figure, reconstructions_caption),
    FigureSpec("histograms", "Codes per dimension against N(0, 1)", histograms_figure, histograms_caption),
    FigureSpec("training", "Training curves", training_figure, training_caption),
    FigureSpec("traversals", "Latent traversals", lambda v: rows_figure(v, "traversals", "dim"), traversals_caption,
               any_above_2d),
    FigureSpec("interpolations", "Interpolations between test images",
               lambda v: rows_figure(v, "interpolations", "pair"), interpolations_caption, any_above_2d),
    FigureSpec("attribute", "Adding an attribute vector", lambda v: rows_figure(v, "attribute_strip", "strip"),
               attribute_caption, any_attribute_strip),
    FigureSpec("label_grid", "Label × style (conditional model)", label_grid_figure, label_grid_caption,
               any_label_grid),
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
