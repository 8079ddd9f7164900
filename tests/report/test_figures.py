"""Figures from synthetic RunViews: each renders to a PNG, the optional ones only above 2-D, and the
mosaic helper puts images where they belong."""

import numpy as np
import pytest

from vaelab.report.figures import FIGURES, render, tile
from vaelab.report.views import Projection, RunView, projection_for


def fake_view(label, model_name, d, rng):
    codes = rng.normal(size=(300, d))
    images = lambda *shape: rng.random((*shape, 28, 28))  # noqa: E731
    history = [{"epoch": e, "train": {"loss": 1.0 / e, "kl": 0.5}, "test": {"loss": 1.1 / e, "kl": 0.6}}
               for e in (1, 2)]
    return RunView(label=label, model_name=model_name, latent_dim=d, classes=tuple("0123456789"), codes=codes,
                   labels=np.arange(300) % 10, projection=projection_for(codes), sample_codes=rng.normal(size=(20, d)),
                   sample_images=images(20), grid_images=images(20, 20) if d > 1 else images(1, 20),
                   grid_ticks=(np.linspace(-2, 2, 20), np.linspace(2, -2, 20)), originals=images(10),
                   reconstructions=images(10), original_codes=codes[:10], history=history,
                   traversals=images(min(d, 8), 9) if d > 2 else None,
                   interpolations=images(5, 9) if d > 2 else None)


@pytest.mark.parametrize("dims,expected", [
    ((2, 2), {"scatter", "samples", "grid", "reconstructions", "histograms", "training"}),
    ((2, 5), {spec.name for spec in FIGURES}),
    ((1, 1), {"scatter", "samples", "grid", "reconstructions", "histograms", "training"}),
])
def test_every_figure_renders_to_png(dims, expected):
    rng = np.random.default_rng(0)
    views = [fake_view("AE", "ae", dims[0], rng), fake_view("VAE", "vae", dims[1], rng)]
    rendered = render(views)
    assert {f.name for f in rendered} == expected
    for figure in rendered:
        assert figure.png.startswith(b"\x89PNG\r\n\x1a\n") and len(figure.png) > 5000
        assert figure.caption and figure.title


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
