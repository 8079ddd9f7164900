"""The synthetic `shapes` dataset: deterministic, labelled RGB, with the factors it was drawn from."""

import numpy as np
import torch

from vaelab.data import load_dataset
from vaelab.data.shapes import CLASSES, SCALE_RANGE, generate


def test_generation_is_deterministic_and_matches_its_factors():
    made = generate(count=60, size=(32, 40), seed=3)
    again = generate(count=60, size=(32, 40), seed=3)
    assert np.array_equal(made.images, again.images) and made.images.shape == (60, 3, 32, 40)
    assert not np.array_equal(made.images, generate(count=60, size=(32, 40), seed=4).images)
    assert set(made.labels.tolist()) == {0, 1, 2}
    assert SCALE_RANGE[0] <= made.factors["scale"].min() and made.factors["scale"].max() <= SCALE_RANGE[1]
    for i in range(60):
        ink = made.images[i].any(axis=0)
        ys, xs = np.nonzero(ink)
        half = made.factors["scale"][i] * 32
        assert abs(xs.mean() + 0.5 - (half + made.factors["x"][i] * (40 - 2 * half))) < 2.5
        colours = {tuple(c) for c in made.images[i][:, ink].T}
        assert len(colours) == 1 and max(colours.pop()) == 255  # one fully saturated colour
        area = ink.sum() / (2 * half) ** 2  # square 1, circle pi/4, triangle 1/2 of the bounding square
        assert abs(area - {0: 1.0, 1: np.pi / 4, 2: 0.5}[int(made.labels[i])]) < 0.2


def test_shapes_dataset_sizes_channels_and_split():
    data = load_dataset("shapes", image_size=(16, 16), test_fraction=0.1)
    assert data.classes == CLASSES and data.image_shape == (3, 16, 16) and data.in_memory
    assert len(data.train_images) == 9000 and len(data.test_images) == 1000
    grey = load_dataset("shapes", image_size=(16, 16), channels=1)
    assert grey.image_shape == (1, 16, 16)
    assert torch.equal(load_dataset("shapes", image_size=(16, 16)).test_labels, data.test_labels)


def test_compare_on_shapes_renders_an_rgb_report(tmp_path):
    import json

    import vaelab
    from vaelab.metrics import Recipe

    report = vaelab.compare(out=tmp_path / "compare", dataset="shapes", image_size=(16, 16),
                            time_budget=2.0, iw_samples=5, device="cpu", show_progress=False,
                            classifier=Recipe(epochs=0, min_images=512, batch_size=64))
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "shapes" and metrics["dataset"]["image_shape"] == [3, 16, 16]
    assert (report / "report.html").is_file()
    samples = next(f for f in (report / "figures").iterdir() if f.name.startswith("samples"))
    from PIL import Image

    pixels = np.asarray(Image.open(samples).convert("RGB")).astype(int)
    assert (np.abs(pixels[..., 0] - pixels[..., 1]) + np.abs(pixels[..., 1] - pixels[..., 2])).max() > 0  # colour
