"""Latent arithmetic and morphing, the chapter's face experiments on any labelled data.

An attribute vector is the difference of two class means of the codes,
    v = mean{ encode(x) : y = to } - mean{ encode(x) : y = from },
over the test images: adding v to the code of a `from` image and decoding moves
it towards `to` (the chapter adds a "smiling" vector to faces). A morph decodes
evenly spaced points on the straight line between two images' codes. Both use
the model's label-free codes (a conditional model's unconditional mode).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vaelab.data import ImageData, fixed_test_pixels, load_data
from vaelab.errors import VaelabError
from vaelab.models import LatentModel
from vaelab.runs import load, read_config

ENCODE_BATCH = 1000


def class_index(data: ImageData, name: int | str) -> int:
    """A class given by index or by name, checked against the data's classes."""
    if isinstance(name, str) and name in data.classes:
        return data.classes.index(name)
    if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < len(data.classes):
        return name
    raise VaelabError(f"unknown class {name!r}; {data.name} has " + (
        f"classes 0-{len(data.classes) - 1}: {', '.join(data.classes)}" if data.classes else "no labels"))


def class_mean_difference(codes: torch.Tensor, labels: torch.Tensor, from_class: int, to_class: int) -> torch.Tensor:
    """Mean code of the `to_class` rows minus that of the `from_class` rows ([d])."""
    means = []
    for c in (from_class, to_class):
        rows = labels == c
        if not rows.any():
            raise VaelabError(f"no test image of class {c}: an attribute vector needs both classes")
        means.append(codes[rows].double().mean(0))
    return (means[1] - means[0]).float()


def model_and_data(run: str | Path | LatentModel, data: ImageData | None) -> tuple[LatentModel, ImageData, str]:
    """The model, the data it is measured on (the run's own unless given) and the run's pixel mode."""
    if isinstance(run, LatentModel):
        if data is None:
            raise VaelabError("give the data to measure a loaded model on (data=...)")
        return run, data, "continuous"
    config, _ = read_config(Path(run))
    return load(run), data if data is not None else load_data(config.data), config.data.pixels


@torch.no_grad()
def encode_images(model: LatentModel, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    codes = torch.cat([model.encode(batch.to(model.device)).cpu() for batch in x.split(ENCODE_BATCH)])
    model.train(was_training)
    return codes


def attribute_vector(run: str | Path | LatentModel, from_class: int | str, to_class: int | str,
                     data: ImageData | None = None) -> torch.Tensor:
    """The code difference [latent_dim] that moves a `from_class` image towards `to_class` (class index or
    name): the difference of the two classes' mean codes over the test images of `data` (a run folder's own
    dataset unless given; a loaded model needs `data`)."""
    model, data, pixels = model_and_data(run, data)
    source, target = class_index(data, from_class), class_index(data, to_class)
    wanted = (data.test_labels == source) | (data.test_labels == target)
    codes = encode_images(model, fixed_test_pixels(data.test_images[wanted], pixels))
    return class_mean_difference(codes, data.test_labels[wanted], source, target)


@torch.no_grad()
def morph(run: str | Path | LatentModel, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """`steps` images [steps, C, H, W] in [0, 1] decoded from evenly spaced codes between those of images a and
    b ([C, H, W] in [0, 1], the model's pixel scale), a's reconstruction first and b's last."""
    if not isinstance(steps, int) or steps < 2:
        raise VaelabError(f"a morph needs at least 2 steps, got {steps}")
    model = run if isinstance(run, LatentModel) else load(run)
    if a.shape != b.shape or tuple(a.shape) != tuple(model.config.image_shape):
        raise VaelabError(f"morph needs two images of the model's shape {tuple(model.config.image_shape)}, "
                          f"got {tuple(a.shape)} and {tuple(b.shape)}")
    ends = encode_images(model, torch.stack([a, b]).float())
    t = torch.linspace(0, 1, steps)[:, None]
    return decode_codes(model, ends[0] * (1 - t) + ends[1] * t)


@torch.no_grad()
def decode_codes(model: LatentModel, codes: torch.Tensor) -> torch.Tensor:
    """Decoded images of codes [N, d], on the CPU."""
    was_training = model.training
    model.eval()
    images = model.decode(codes.to(model.device)).cpu()
    model.train(was_training)
    return images
