"""What the report's figures show, computed once from a trained model as plain arrays.

The figures (figures.py) only draw; everything that needs the model, the
data or a random draw happens here, with fixed seeds, so a report is
reproducible and the drawing code never touches a network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vaelab.arithmetic import class_mean_difference
from vaelab.data import ImageData, fixed_test_pixels
from vaelab.metrics.conditional import conditioned_samples
from vaelab.metrics.latent import class_spreads
from vaelab.metrics.samples import decode_all
from vaelab.metrics.suite import encode_all

SAMPLES = 20  # random latent points decoded for figure 2
GRID_SIDE = 20  # figure 3: a 20 x 20 grid
STEPS = 9  # traversal and interpolation steps
TRAVERSED_DIMS = 8
INTERPOLATIONS = 5
VIEW_SEED = 99
STYLE_COLUMNS = 10  # the label x style grid of a conditional model: fixed codes, one per column
ATTRIBUTE_REACH = 1.5  # the attribute strip adds 0 to 1.5 times the attribute vector (1: the class means' difference)
POSTERIOR_IMAGES = 5  # test images whose q(z|x) the posterior figure draws
UNLABELLED_SHOWN = 10  # test images reconstructed (one per class when labelled) for unlabelled data: the first ten
SPAN_RATIO = 1.5  # the scatters' axes "differ" when one run's code span is this many times another's
# The book's VAE (1000 * mean-pixel MSE + KL, latent 2, MNIST) ends its 200 epochs at this loss (ch. 3).
BOOK_FINAL_LOSS = 43.0
BOOK_LOSS_DATASETS = ("mnist", "mnist-sample")


@dataclass(frozen=True)
class Ellipse:
    """A 2-D Gaussian N(centre, covariance), drawn as its n-sigma contour
    {p : (p - centre)' covariance^-1 (p - centre) = n^2}, whose area is n^2 pi sqrt(det covariance)."""

    centre: np.ndarray  # [2]
    covariance: np.ndarray  # [2, 2]

    def axes(self, sigmas: float) -> tuple[float, float, float]:
        """Full length of the major and the minor axis of the n-sigma contour, and the major axis's angle
        in degrees from the first plotted axis (matplotlib's Ellipse takes these)."""
        variances, vectors = np.linalg.eigh(self.covariance)  # ascending
        major, minor = 2 * sigmas * np.sqrt(np.clip(variances[::-1], 0, None))
        return float(major), float(minor), float(np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1])))


@dataclass(frozen=True)
class ClassSpread:
    """Flaw 3 for one class: its spread sqrt(det S_c) over the full codes (the metric) and the covariance
    ellipse of its plotted codes."""

    label: int
    name: str
    spread: float
    ellipse: Ellipse


@dataclass(frozen=True)
class Projection:
    """How d-dimensional codes are drawn on a plane, and the sentence that says so."""

    description: str
    mean: np.ndarray
    axes: np.ndarray  # [d, 2]; columns are the plotted directions
    labels: tuple[str, str]

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        return (np.asarray(codes) - self.mean) @ self.axes

    def covariance(self, covariance: np.ndarray) -> np.ndarray:
        """The plotted [2, 2] covariance of a Gaussian with a [d, d] covariance."""
        return self.axes.T @ covariance @ self.axes


def projection_for(codes: np.ndarray) -> Projection:
    """2-D codes as they are; 1-D codes against a zero second axis; above 2-D the first two principal
    components of the test codes."""
    d = codes.shape[1]
    if d <= 2:
        axes = np.eye(d, 2)
        return Projection("the latent coordinates themselves", np.zeros(d), axes,
                          ("z₁", "z₂" if d == 2 else "(none: 1-D code)"))
    centred = codes - codes.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    explained = (singular[:2] ** 2).sum() / (singular**2).sum()
    return Projection(f"the first two principal components of the test codes ({explained:.0%} of their variance)",
                      codes.mean(0), vt[:2].T, ("PC 1", "PC 2"))


@dataclass
class RunView:
    label: str
    model_name: str  # the registry name, shown as "AE", "VAE"
    chapter_figures: dict[str, str]  # the chapter's figure each kind of report figure reproduces for this model
    sampling_words: str  # how the model draws codes, from its prior
    grid_words: str  # how its latent grid is laid out
    latent_dim: int
    classes: tuple[str, ...]
    codes: np.ndarray  # [N, d] test codes
    labels: np.ndarray  # [N]
    projection: Projection
    sample_codes: np.ndarray  # [SAMPLES, d]
    sample_images: np.ndarray  # [SAMPLES, H, W]
    grid_images: np.ndarray  # [rows, cols, H, W]; columns sweep z1, rows sweep z2 from high to low
    grid_ticks: tuple[np.ndarray, np.ndarray]  # z1 of each column, z2 of each row
    originals: np.ndarray  # [R, H, W] one test image per class
    reconstructions: np.ndarray  # [R, H, W]
    original_codes: np.ndarray  # [R, d]
    history: list[dict]
    traversals: np.ndarray | None  # [dims, STEPS, H, W], latent size above 2 only
    interpolations: np.ndarray | None  # [INTERPOLATIONS, STEPS, H, W], latent size above 2 only
    spreads: list[ClassSpread]  # flaw 3, per class with more codes than dimensions
    posterior_images: np.ndarray  # [POSTERIOR_IMAGES, H, W] the same test images for every run
    posterior_labels: np.ndarray  # [POSTERIOR_IMAGES]
    posterior_means: np.ndarray  # [POSTERIOR_IMAGES, d] their codes
    posterior_ellipses: list[Ellipse] | None  # their plotted q(z|x); None for an AE (a point, no spread)
    loss_units: dict[str, str]  # the unit of each plotted training-curve term
    book_loss: float | None  # the book's final loss, for a run whose loss is the book's VAE loss on MNIST
    # a conditional model's label x style grid: [classes, STYLE_COLUMNS, H, W], row c decoded with label c
    label_grid: np.ndarray | None = None
    # latent size above 2, labelled data: [1, STEPS, H, W] the first shown test image's code plus growing
    # multiples of the attribute vector from its class to the next shown class, and those two class names
    attribute_strip: np.ndarray | None = None
    attribute_classes: tuple[str, str] | None = None

    @property
    def points(self) -> np.ndarray:
        return self.projection(self.codes)

    @property
    def origin(self) -> np.ndarray:
        """Where z = 0 lies on the plot: the VAE's prior mean; for an AE, a point with no special meaning."""
        return self.projection(np.zeros((1, self.latent_dim)))[0]

    @property
    def widest(self) -> ClassSpread:
        return max(self.spreads, key=lambda s: s.spread)

    @property
    def narrowest(self) -> ClassSpread:
        return min(self.spreads, key=lambda s: s.spread)

    def span(self) -> np.ndarray:
        """[[low, high] per plotted axis] of the plotted test codes."""
        points = self.points
        return np.stack([points.min(0), points.max(0)], axis=1)


TERM_ORDER = ("loss", "reconstruction", "kl")  # the training curves' panels, left to right; other terms after


def plotted_terms(history: list[dict]) -> list[str]:
    """The training-curve terms worth a panel: every logged term, less a reconstruction term that is the
    whole loss (an AE's)."""
    if not history:
        return []
    terms = sorted(history[0]["train"], key=lambda t: TERM_ORDER.index(t) if t in TERM_ORDER else len(TERM_ORDER))
    if "reconstruction" in terms and all(h[part]["reconstruction"] == h[part]["loss"]
                                         for h in history for part in ("train", "test")):
        terms.remove("reconstruction")
    return terms


def loss_units(config, terms: list[str]) -> dict[str, str]:
    """Each term's unit. Losses are nats per image without the likelihood's normalising constant; but a
    Gaussian with r_loss_factor 1 (the book's AE) is a plain mean-pixel MSE, and saying "nats" of a
    Gaussian with variance 392 would hide that."""
    r = config.r_loss_factor
    if config.likelihood != "gaussian":
        reconstruction = "nats / image"
    elif r == 1:
        reconstruction = "mean-pixel MSE"
    else:
        reconstruction = f"nats / image ({r:g} × mean-pixel MSE)"
    units = {term: "nats / image" for term in terms}
    if "reconstruction" in terms:
        units["reconstruction"] = reconstruction
    if "loss" in terms and set(terms) <= {"loss", "reconstruction"}:  # no KL: the loss is the reconstruction term
        units["loss"] = reconstruction
    return units


def book_loss(model, dataset: str, pixels: str) -> float | None:
    """BOOK_FINAL_LOSS when this run minimises the book VAE's loss on MNIST digits (any network: the number
    is a value of the same loss), else None."""
    same = model.reproduces_book_loss() and pixels == "continuous" and dataset in BOOK_LOSS_DATASETS
    return BOOK_FINAL_LOSS if same else None


def axes_note(views: list[RunView]) -> str | None:
    """A sentence for figures that draw each run's codes on its own axes, when their scales differ enough
    to mislead a reader comparing the panels by eye."""
    spans = [view.span() for view in views]
    widths = np.array([span[:, 1] - span[:, 0] for span in spans])
    widths = widths[:, widths.min(0) > 0]
    if len(views) < 2 or not widths.size or (widths.max(0) / widths.min(0)).max() < SPAN_RATIO:
        return None
    described = []
    for view, span in zip(views, spans):
        names = view.projection.labels if view.latent_dim > 1 else view.projection.labels[:1]
        ranges = ", ".join(f"{name} {low:.2g} to {high:.2g}" for name, (low, high) in zip(names, span))
        described.append(f"{view.label} spans {ranges}")
    return "Axes differ: " + "; ".join(described) + "."


def spreads_of(codes: np.ndarray, labels: np.ndarray, projection: Projection,
               classes: tuple[str, ...]) -> list[ClassSpread]:
    points = projection(codes)
    return [ClassSpread(label, classes[label], spread,
                        Ellipse(points[labels == label].mean(0), np.cov(points[labels == label], rowvar=False)))
            for label, spread in class_spreads(codes, labels).items()]


def posterior_ellipses(mean: torch.Tensor, logvar: torch.Tensor | None, projection: Projection) -> list[Ellipse] | None:
    """q(z|x) = N(mean, diag(exp(logvar))) of each image, as plotted; None for an AE's point mass."""
    if logvar is None:
        return None
    centres = projection(mean.cpu().numpy())
    return [Ellipse(centre, projection.covariance(np.diag(variance)))
            for centre, variance in zip(centres, logvar.exp().cpu().double().numpy())]


def images(x: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] -> float arrays for imshow: [N, H, W] grey levels for one channel, [N, H, W, C] colour for
    RGB (and RGBA); other channel counts show their first channel."""
    x = x.detach().cpu()
    return (x.permute(0, 2, 3, 1) if x.shape[1] in (3, 4) else x[:, 0]).numpy()


@torch.no_grad()
def latent_grid(model, side: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Decoded codes at evenly spaced quantiles of the sampling distribution of z1 (columns) and z2 (rows,
    top = high); other dimensions at the centre (quantile 1/2). A 1-D code gives one row."""
    zz = model.prior.grid(side)
    rows, _, d = zz.shape
    decoded = images(decode_all(model, zz.view(-1, d)))
    grid = decoded.reshape(rows, side, *decoded.shape[1:])
    zz = zz.cpu().numpy()
    return grid, (zz[0, :, 0], zz[:, 0, 1] if d >= 2 else np.zeros(1))


@torch.no_grad()
def traversals(model, base: torch.Tensor) -> np.ndarray:
    """From one test code, each of the first dimensions swept over the 5%..95% quantiles of the sampling
    distribution while the others stay put."""
    d = model.config.latent_dim
    u = torch.full((STEPS, d), 0.5)
    rows = []
    for dim in range(min(d, TRAVERSED_DIMS)):
        u_dim = u.clone()
        u_dim[:, dim] = torch.linspace(0.05, 0.95, STEPS)
        z = base.repeat(STEPS, 1)
        z[:, dim] = model.prior.quantile(u_dim)[:, dim].cpu()
        rows.append(images(decode_all(model, z)))
    return np.stack(rows)


@torch.no_grad()
def interpolations(model, ends: torch.Tensor) -> np.ndarray:
    """Straight lines in latent space between test images of different classes (`ends`: one code per
    class; class i is joined to the class half the list further on)."""
    t = torch.linspace(0, 1, STEPS)[:, None]
    pairs = [(i, (i + len(ends) // 2) % len(ends)) for i in range(min(INTERPOLATIONS, len(ends)))]
    return np.stack([images(decode_all(model, (1 - t) * ends[a] + t * ends[b])) for a, b in pairs])


@torch.no_grad()
def label_grid(model) -> np.ndarray:
    """Row c decodes the same STYLE_COLUMNS codes z ~ p(z) with label c: the label picks the class, each column
    keeps one style (slant, thickness) across the classes."""
    decoded = images(conditioned_samples(model, STYLE_COLUMNS, seed=VIEW_SEED)[0])
    return decoded.reshape(model.config.n_classes, STYLE_COLUMNS, *decoded.shape[1:])


@torch.no_grad()
def attribute_strip(model, codes: torch.Tensor, labels: torch.Tensor, start: int, to_class: int) -> np.ndarray:
    """The code of test image `start` moved along the attribute vector from its class to `to_class`
    (vaelab.attribute_vector: the difference of the two classes' mean test codes), 0 to ATTRIBUTE_REACH times."""
    vector = class_mean_difference(codes, labels, int(labels[start]), to_class)
    steps = torch.linspace(0, ATTRIBUTE_REACH, STEPS)[:, None]
    return images(decode_all(model, codes[start] + steps * vector))[None]


def first_of_each_class(labels: torch.Tensor) -> torch.Tensor:
    return torch.stack([(labels == c).nonzero()[0, 0] for c in labels.unique()])


@torch.no_grad()
def build_view(label: str, model, data: ImageData, pixels: str, history: list[dict]) -> RunView:
    x = fixed_test_pixels(data.test_images, pixels)
    codes = encode_all(model, x)
    code_array = codes.numpy()
    prior = model.prior
    generator = torch.Generator(model.device).manual_seed(VIEW_SEED)
    sample_codes = prior.sample(SAMPLES, generator)
    grid, ticks = latent_grid(model, GRID_SIDE)
    labelled = bool(data.classes)  # unlabelled data: no class colours, no class spreads (flaw 3 needs labels)
    chosen = first_of_each_class(data.test_labels) if labelled else torch.arange(min(UNLABELLED_SHOWN, len(x)))
    shown = chosen[::max(1, len(chosen) // POSTERIOR_IMAGES)][:POSTERIOR_IMAGES]
    posterior = model.posterior(x[shown].to(model.device))
    projection = projection_for(code_array)
    labels = data.test_labels.numpy()
    terms = plotted_terms(history)
    above_2d = model.config.latent_dim > 2
    attribute = above_2d and labelled and len(chosen) >= 2  # from the first shown class to the second
    attribute_names = tuple(data.classes[int(data.test_labels[i])] for i in chosen[:2]) if attribute else None
    return RunView(
        label=label, model_name=model.registry_name, chapter_figures=model.chapter_figures,
        sampling_words=prior.description, grid_words=prior.grid_description,
        latent_dim=model.config.latent_dim, classes=data.classes,
        codes=code_array, labels=labels, projection=projection,
        sample_codes=sample_codes.cpu().numpy(), sample_images=images(decode_all(model, sample_codes)),
        grid_images=grid, grid_ticks=ticks,
        originals=images(x[chosen]), reconstructions=images(decode_all(model, codes[chosen])),
        original_codes=code_array[chosen.numpy()], history=history,
        traversals=traversals(model, codes[chosen[0]]) if above_2d else None,
        interpolations=interpolations(model, codes[chosen]) if above_2d else None,
        spreads=spreads_of(code_array, labels, projection, data.classes) if labelled else [],
        posterior_images=images(x[shown]), posterior_labels=labels[shown.numpy()],
        posterior_means=posterior.mean.cpu().numpy(),
        posterior_ellipses=posterior_ellipses(posterior.mean, posterior.logvar, projection),
        loss_units=loss_units(model.config, terms), book_loss=book_loss(model, data.name, pixels),
        label_grid=label_grid(model) if model.takes_labels else None,
        attribute_strip=attribute_strip(model, codes, data.test_labels, int(chosen[0]),
                                        int(data.test_labels[chosen[1]])) if attribute else None,
        attribute_classes=attribute_names,
    )
