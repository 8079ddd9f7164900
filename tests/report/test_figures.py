"""Figures from synthetic RunViews: each renders to a PNG, the optional ones only above 2-D, the mosaic
helper puts images where they belong, and every latent plot marks z = 0 and says when the runs' axes differ."""

import numpy as np
import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.models import build_model
from vaelab.report.figures import (
    FIGURES,
    grid_figure,
    posteriors_figure,
    render,
    samples_figure,
    scatter_figure,
    tile,
    training_figure,
)
from vaelab.report.views import (
    Ellipse,
    Projection,
    RunView,
    loss_units,
    plotted_terms,
    posterior_ellipses,
    projection_for,
    spreads_of,
)

AE_CONFIG = {"model": "ae", "likelihood": "gaussian", "r_loss_factor": 1.0}
VAE_CONFIG = {"model": "vae", "likelihood": "gaussian", "r_loss_factor": 1000.0}


class Config:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def fake_view(label, model_name, d, rng, scale=1.0, shift=0.0, book_loss=None, conditional=False):
    codes = rng.normal(size=(300, d)) * scale + shift
    labels = np.arange(300) % 10
    images = lambda *shape: rng.random((*shape, 28, 28))  # noqa: E731
    terms = {"loss": 1.0, "reconstruction": 0.5, "kl": 0.5} if model_name == "vae" else {"loss": 1.0,
                                                                                        "reconstruction": 1.0}
    history = [{"epoch": e, "train": {k: v / e for k, v in terms.items()}, "test": {k: v / e for k, v in terms.items()}}
               for e in (1, 2)]
    projection = projection_for(codes)
    config = Config(**(VAE_CONFIG if model_name == "vae" else AE_CONFIG))
    logvar = np.log(rng.uniform(0.01, 0.1, size=(5, d))) if model_name == "vae" else None
    model = build_model(ModelConfig(model=model_name, arch="mlp"))
    prior = model.prior
    return RunView(label=label, model_name=model_name, chapter_figures=model.chapter_figures,
                   sampling_words=prior.description, grid_words=prior.grid_description, latent_dim=d,
                   classes=tuple("0123456789"), codes=codes,
                   labels=labels, projection=projection, sample_codes=rng.normal(size=(20, d)) * scale + shift,
                   sample_images=images(20), grid_images=images(20, 20) if d > 1 else images(1, 20),
                   grid_ticks=(np.linspace(-2, 2, 20) * scale + shift, np.linspace(2, -2, 20) * scale + shift),
                   originals=images(10), reconstructions=images(10), original_codes=codes[:10], history=history,
                   traversals=images(min(d, 8), 9) if d > 2 else None,
                   interpolations=images(5, 9) if d > 2 else None,
                   spreads=spreads_of(codes, labels, projection, tuple("0123456789")),
                   posterior_images=images(5), posterior_labels=labels[:5], posterior_means=codes[:5],
                   posterior_ellipses=None if logvar is None else posterior_ellipses(
                       torch.tensor(codes[:5]), torch.tensor(logvar), projection),
                   loss_units=loss_units(config, plotted_terms(history)), book_loss=book_loss,
                   label_grid=images(10, 10) if conditional else None,
                   attribute_strip=images(1, 9) if d > 2 else None, attribute_classes=("0", "1") if d > 2 else None)


@pytest.mark.parametrize("dims,expected", [
    ((2, 2), {"scatter", "posteriors", "samples", "grid", "reconstructions", "histograms", "training"}),
    ((2, 5), {spec.name for spec in FIGURES} - {"label_grid"}),
    ((1, 1), {"scatter", "posteriors", "samples", "grid", "reconstructions", "histograms", "training"}),
])
def test_every_figure_renders_to_png(dims, expected):
    rng = np.random.default_rng(0)
    views = [fake_view("AE", "ae", dims[0], rng), fake_view("VAE", "vae", dims[1], rng)]
    rendered = render(views)
    assert {f.name for f in rendered} == expected
    for figure in rendered:
        assert figure.png.startswith(b"\x89PNG\r\n\x1a\n") and len(figure.png) > 5000
        assert figure.caption and figure.title


def test_a_conditional_model_adds_its_label_x_style_grid():
    rng = np.random.default_rng(0)
    views = [fake_view("VAE", "vae", 2, rng), fake_view("CVAE", "vae", 3, rng, conditional=True)]
    rendered = {f.name: f for f in render(views)}
    assert {"label_grid", "attribute"} <= set(rendered)
    assert "Label × style" in rendered["label_grid"].caption and "'0' towards '1'" in rendered["attribute"].caption
    assert rendered["label_grid"].png.startswith(b"\x89PNG")


def test_captions_say_how_each_model_samples_and_which_projection():
    rng = np.random.default_rng(1)
    views = [fake_view("AE", "ae", 2, rng), fake_view("VAE", "vae", 4, rng)]
    captions = {f.name: f.caption for f in render(views)}
    assert "bounding box of its training codes" in captions["samples"] and "N(0, I)" in captions["samples"]
    assert "inverse-normal-CDF grid" in captions["grid"]
    assert "VAE: the first two principal components" in captions["scatter"]


def test_tile_places_images_with_grey_gaps():
    images = np.arange(6, dtype=float).reshape(2, 3, 1, 1) * np.ones((2, 3, 2, 2))
    mosaic = tile(images, pad=1)
    assert mosaic.shape == (5, 8)
    assert mosaic[0, 0] == 0 and mosaic[0, 3] == 1 and mosaic[3, 6] == 5 and mosaic[2, 0] == 0.5


def test_projection_above_2d_is_pca():
    rng = np.random.default_rng(2)
    codes = rng.normal(size=(500, 3)) * [5.0, 1.0, 0.1]
    projection = projection_for(codes)
    assert isinstance(projection, Projection) and projection(codes).shape == (500, 2)
    assert abs(abs(projection.axes[0, 0]) - 1) < 0.01  # the widest axis comes first
    assert "principal components" in projection.description


# --- what the figures draw, read back from their artists ------------------------------------------------
def origin_marks(ax):
    return [artist for artist in ax.get_children() if artist.get_gid() == "origin"]


def ae_and_vae(rng, d=2):
    """An AE whose codes are large and off-centre, and a VAE's near N(0, I): the book's picture."""
    return [fake_view("AE", "ae", d, rng, scale=10.0, shift=20.0), fake_view("VAE", "vae", d, rng)]


@pytest.mark.parametrize("draw", [scatter_figure, posteriors_figure, samples_figure])
@pytest.mark.parametrize("d", [2, 4])
def test_every_latent_scatter_marks_z_equals_zero(draw, d):
    views = ae_and_vae(np.random.default_rng(3), d)
    fig = draw(views)
    scatters = [ax for ax in fig.get_axes() if ax.collections]  # the panels that plot codes
    assert len(scatters) == 2
    for ax, view in zip(scatters, views):
        (mark,) = origin_marks(ax)
        assert np.allclose(np.ravel(mark.get_data()), view.origin)
        assert np.allclose(view.origin, view.projection(np.zeros((1, d)))[0])
    assert d > 2 or np.allclose(views[0].origin, 0)  # 2-D codes are drawn as they are


def test_the_grid_marks_zero_where_it_reaches_it_and_says_so_where_not():
    rng = np.random.default_rng(4)
    inside, outside = fake_view("VAE", "vae", 2, rng), fake_view("AE", "ae", 2, rng, shift=20.0)
    fig = grid_figure([outside, inside])
    ax_out, ax_in = fig.get_axes()
    assert not origin_marks(ax_out) and "(0, 0) lies outside it" in ax_out.get_title()
    (mark,) = origin_marks(ax_in)
    x, y = np.ravel(mark.get_data())
    rows, cols, h, w = inside.grid_images.shape  # ticks run -2..2 over 20 columns: 0 lies between the middle two
    assert x == pytest.approx(9.5 * (w + 1) + w / 2) and y == pytest.approx(9.5 * (h + 1) + h / 2)


def test_the_figures_say_when_the_runs_axes_differ():
    rng = np.random.default_rng(5)
    fig = scatter_figure(ae_and_vae(rng))
    note = fig.get_suptitle()
    assert note.startswith("Axes differ: AE spans z₁ ") and "; VAE spans z₁ " in note
    same = scatter_figure([fake_view("VAE (a)", "vae", 2, rng), fake_view("VAE (b)", "vae", 2, rng)])
    assert same.get_suptitle() == ""


def test_class_ellipses_are_each_classs_covariance_and_name_the_widest_and_narrowest():
    rng = np.random.default_rng(6)
    scales = np.linspace(0.5, 5.0, 10)  # class c's codes: a round cloud of radius scales[c]
    labels = np.repeat(np.arange(10), 2000)
    codes = rng.normal(size=(20000, 2)) * scales[labels, None] + np.arange(10)[labels, None] * 20
    spreads = spreads_of(codes, labels, projection_for(codes), tuple("abcdefghij"))
    for spread in spreads:
        members = codes[labels == spread.label]
        assert np.allclose(spread.ellipse.covariance, np.cov(members, rowvar=False))
        assert np.allclose(spread.ellipse.centre, members.mean(0))
        assert spread.spread == pytest.approx(np.sqrt(np.linalg.det(np.cov(members, rowvar=False))))
        assert spread.spread == pytest.approx(scales[spread.label] ** 2, rel=0.1)  # sqrt det(s^2 I) = s^2
    view = fake_view("AE", "ae", 2, rng)
    view.spreads = spreads
    assert (view.widest.name, view.narrowest.name) == ("j", "a")
    fig = scatter_figure([view, fake_view("VAE", "vae", 2, rng)])
    ax = fig.get_axes()[0]
    texts = [t.get_text() for t in ax.texts]
    assert "widest: j" in texts and "narrowest: a" in texts and "widest class j" in ax.get_title()
    ellipses = [p for p in ax.patches]
    assert len(ellipses) == 10
    assert ellipses[0].width == pytest.approx(2 * 2 * np.sqrt(np.linalg.eigvalsh(spreads[0].ellipse.covariance)[1]))


def test_ellipse_axes_follow_the_covariance():
    major, minor, angle = Ellipse(np.zeros(2), np.diag([1.0, 4.0])).axes(2.0)
    assert (major, minor) == pytest.approx((8.0, 4.0)) and abs(angle) % 180 == pytest.approx(90)
    rotated = np.array([[2.5, 1.5], [1.5, 2.5]])  # variances 4 and 1 along the diagonals
    major, minor, angle = Ellipse(np.zeros(2), rotated).axes(1.0)
    assert (major, minor) == pytest.approx((4.0, 2.0)) and angle % 180 == pytest.approx(45)


def test_posterior_ellipses_are_the_projected_diagonal_gaussians():
    mean = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    logvar = torch.log(torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]]))
    projection = Projection("test", np.zeros(3), np.eye(3)[:, [2, 0]], ("z₃", "z₁"))  # plots z3 against z1
    first, second = posterior_ellipses(mean, logvar, projection)
    assert np.allclose(first.centre, [3.0, 1.0]) and np.allclose(first.covariance, np.diag([0.3, 0.1]))
    assert np.allclose(second.covariance, np.eye(2))
    assert posterior_ellipses(mean, None, projection) is None  # an AE's posterior is a point


def test_the_posterior_figure_draws_an_ellipse_per_image_for_the_vae_only():
    views = ae_and_vae(np.random.default_rng(7))
    ae_ax, vae_ax, images_ax = posteriors_figure(views).get_axes()
    assert not ae_ax.patches and len(ae_ax.lines) >= 5  # the AE: a point per image
    drawn = [p for p in vae_ax.patches if p.get_gid() == "posterior"]
    assert len(drawn) == 5
    for patch, ellipse in zip(drawn, views[1].posterior_ellipses):
        assert patch.width == pytest.approx(ellipse.axes(2.0)[0]) and np.allclose(patch.center, ellipse.centre)
    assert [t.get_text() for t in images_ax.get_yticklabels()] == ["1", "2", "3", "4", "5"]


def test_training_curves_use_each_runs_unit_and_the_books_reference():
    rng = np.random.default_rng(8)
    ae, vae = fake_view("AE", "ae", 2, rng), fake_view("VAE", "vae", 2, rng, book_loss=43.0)
    assert ae.loss_units == {"loss": "mean-pixel MSE"}  # its reconstruction term is the whole loss
    assert list(vae.loss_units) == ["loss", "reconstruction", "kl"]
    assert vae.loss_units["reconstruction"] == "nats / image (1000 × mean-pixel MSE)"
    axes = training_figure([ae, vae]).get_axes()
    assert axes[0].get_ylabel() == "mean-pixel MSE" and axes[3].get_ylabel() == "nats / image"
    books = [line for ax in axes for line in ax.get_lines() if line.get_gid() == "book-loss"]
    assert len(books) == 1 and books[0] in axes[3].get_lines() and books[0].get_ydata()[0] == 43.0


def test_loss_units_by_likelihood():
    assert loss_units(Config(likelihood="gaussian", r_loss_factor=1.0), ["loss"]) == {"loss": "mean-pixel MSE"}
    assert loss_units(Config(likelihood="gaussian", r_loss_factor=1000.0), ["loss", "reconstruction"])["loss"] \
        == "nats / image (1000 × mean-pixel MSE)"
    assert loss_units(Config(likelihood="bernoulli", r_loss_factor=1000.0), ["loss", "reconstruction", "kl"]) == \
        {"loss": "nats / image", "reconstruction": "nats / image", "kl": "nats / image"}
    history = [{"epoch": 1, "train": {"kl": 1.0, "loss": 3.0, "reconstruction": 2.0},
                "test": {"kl": 1.0, "loss": 3.0, "reconstruction": 2.0}}]
    assert plotted_terms(history) == ["loss", "reconstruction", "kl"] and plotted_terms([]) == []


def test_captions_name_the_chapters_figures():
    captions = {f.name: f.caption for f in render(ae_and_vae(np.random.default_rng(9)))}
    assert "Reproduces the chapter's Figure 2 (AE) and Figure 7 (VAE)." in captions["scatter"]
    for name in ("samples", "grid"):
        assert "Reproduces the chapter's Figure 3 (AE) and Figure 8 (VAE)." in captions[name]
    assert "the chapter's Figures 4–6" in captions["posteriors"]
    assert "widest" in captions["scatter"] and "narrowest" in captions["scatter"]
