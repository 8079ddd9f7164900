"""What the report's figures show, computed once from a trained model as plain arrays.

The figures (figures.py) only draw; everything that needs the model, the
data or a random draw happens here, with fixed seeds, so a report is
reproducible and the drawing code never touches a network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vaelab.data import ImageData, fixed_test_pixels
from vaelab.metrics.latent import sampling_quantile
from vaelab.metrics.samples import decode_all
from vaelab.metrics.suite import encode_all

SAMPLES = 20  # random latent points decoded for figure 2
GRID_SIDE = 20  # figure 3: a 20 x 20 grid
STEPS = 9  # traversal and interpolation steps
TRAVERSED_DIMS = 8
INTERPOLATIONS = 5
VIEW_SEED = 99


@dataclass(frozen=True)
class Projection:
    """How d-dimensional codes are drawn on a plane, and the sentence that says so."""

    description: str
    mean: np.ndarray
    axes: np.ndarray  # [d, 2]; columns are the plotted directions
    labels: tuple[str, str]

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        return (np.asarray(codes) - self.mean) @ self.axes


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
    model_name: str
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

    @property
    def points(self) -> np.ndarray:
        return self.projection(self.codes)


def images(x: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] -> [N, H, W] (first channel) as float arrays for imshow."""
    return x[:, 0].detach().cpu().numpy()


@torch.no_grad()
def latent_grid(model, side: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Decoded codes at evenly spaced quantiles of the sampling distribution of z1 (columns) and z2 (rows,
    top = high); other dimensions at the centre (quantile 1/2). A 1-D code gives one row."""
    d = model.config.latent_dim
    axis = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    rows = axis.flip(0) if d >= 2 else torch.tensor([0.5])
    u = torch.full((len(rows), side, d), 0.5)
    u[:, :, 0] = axis
    if d >= 2:
        u[:, :, 1] = rows[:, None]
    z = sampling_quantile(model, u.view(-1, d))
    grid = images(decode_all(model, z)).reshape(len(rows), side, *model.config.image_shape[1:])
    zz = z.view(len(rows), side, d).cpu().numpy()
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
        z[:, dim] = sampling_quantile(model, u_dim)[:, dim].cpu()
        rows.append(images(decode_all(model, z)))
    return np.stack(rows)


@torch.no_grad()
def interpolations(model, ends: torch.Tensor) -> np.ndarray:
    """Straight lines in latent space between test images of different classes (`ends`: one code per
    class; class i is joined to the class half the list further on)."""
    t = torch.linspace(0, 1, STEPS)[:, None]
    pairs = [(i, (i + len(ends) // 2) % len(ends)) for i in range(min(INTERPOLATIONS, len(ends)))]
    return np.stack([images(decode_all(model, (1 - t) * ends[a] + t * ends[b])) for a, b in pairs])


def first_of_each_class(labels: torch.Tensor) -> torch.Tensor:
    return torch.stack([(labels == c).nonzero()[0, 0] for c in labels.unique()])


@torch.no_grad()
def build_view(label: str, model, data: ImageData, pixels: str, history: list[dict]) -> RunView:
    x = fixed_test_pixels(data.test_images, pixels)
    codes = encode_all(model, x)
    code_array = codes.numpy()
    generator = torch.Generator(model.code_low.device).manual_seed(VIEW_SEED)
    sample_codes = model.sample_prior(SAMPLES, generator)
    grid, ticks = latent_grid(model, GRID_SIDE)
    chosen = first_of_each_class(data.test_labels)
    above_2d = model.config.latent_dim > 2
    return RunView(
        label=label, model_name=model.registry_name, latent_dim=model.config.latent_dim, classes=data.classes,
        codes=code_array, labels=data.test_labels.numpy(), projection=projection_for(code_array),
        sample_codes=sample_codes.cpu().numpy(), sample_images=images(decode_all(model, sample_codes)),
        grid_images=grid, grid_ticks=ticks,
        originals=images(x[chosen]), reconstructions=images(decode_all(model, codes[chosen])),
        original_codes=code_array[chosen.numpy()], history=history,
        traversals=traversals(model, codes[chosen[0]]) if above_2d else None,
        interpolations=interpolations(model, codes[chosen]) if above_2d else None,
    )
