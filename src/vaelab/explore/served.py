"""The run folders the explorer serves: each model loaded once, its test-set codes computed once.

Plain PyTorch and NumPy, no HTTP: the server only validates requests and calls
these methods in worker threads. Inference is read-only (eval mode, inference
mode), so threads may decode with the same model at the same time.

The overlay's "holes" are flaw 1's measure (metrics/samples.py, the headline
"share of random samples like its reconstructions") asked of one latent point
at a time: a point is a hole when the reference classifier's features of its
decode fall outside every k-NN ball of the features of the model's own
reconstructions of the test images (metrics/manifold.py). A classifier's
confidence cannot say this: it is often sure of a blob unlike any digit.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab.data import ImageData, fixed_test_pixels, load_data
from vaelab.errors import VaelabError
from vaelab.metrics.classifier import Recipe, ReferenceClassifier, cache_folder, load_cached
from vaelab.metrics.manifold import CHUNK, knn_radii
from vaelab.report.views import GRID_SIDE, SAMPLES, VIEW_SEED
from vaelab.runs import load, read_config

ENCODE_BATCH = 1000  # test images encoded per forward pass at start-up
CACHE_ENTRIES = 2048  # identical decode / classify requests answered from memory, per run
CODE_DECIMALS = 4  # codes are sent rounded: far finer than a screen pixel, a third of the JSON
LATENT_BOUND = 1e3  # |coordinate| limit: far outside any trained code, small enough to stay finite


Points = tuple[tuple[float, ...], ...]  # hashable latent points, the cache key
FoundClassifier = tuple[ReferenceClassifier | None, str | None]  # the classifier, or why there is none
Guesses = tuple[list[int], list[float], list[bool], list[float]]  # label, confidence, hole, ball ratio per point


def cached_classifier(data: ImageData) -> FoundClassifier:
    """The dataset's reference classifier if the metrics have already trained and cached it.

    The explorer never trains one itself: that takes minutes, and start-up should take seconds.
    """
    if not data.classes:
        return None, f"{data.name} has no labels, so there is no reference classifier to name what a point decodes to"
    found = load_cached(cache_folder(data.identity()["sha256"]), data, Recipe())
    if found is None:
        return None, (f"no reference classifier cached for {data.name} yet (the sample-quality metrics "
                      f"train and cache one)")
    return found, None


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] -> uint8 [N, C, H, W], rounded as an 8-bit PNG would store them."""
    return images.mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()


def png_strip(images: np.ndarray) -> bytes:
    """uint8 images [N, C, H, W] side by side in one PNG (grey for C = 1, RGB for C = 3)."""
    n, c, h, w = images.shape
    strip = images.transpose(2, 0, 3, 1).reshape(h, n * w, c)
    out = io.BytesIO()
    Image.fromarray(strip[:, :, 0] if c == 1 else strip).save(out, format="PNG")
    return out.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def ball_ratio(samples: torch.Tensor, reference: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """min over reference rows r of |s - r| / radius(r), for each sample row s: at most 1 exactly when s lies
    in some reference k-NN ball, manifold_precision's test; how far above 1 says how far outside."""
    samples, reference = samples.double(), reference.double()  # as manifold_precision: float32 moves points
    radii = radii.clamp_min(1e-12)  # a zero radius (duplicate references) holds only its own point
    return torch.cat([(torch.cdist(samples[i:i + CHUNK], reference) / radii).min(1).values
                      for i in range(0, len(samples), CHUNK)])


def principal_axes(codes: torch.Tensor) -> dict[str, list]:
    """Mean and the two leading principal directions of the codes: the default 2-D view of a larger latent."""
    mean = codes.mean(0)
    _, _, vh = torch.linalg.svd(codes - mean, full_matrices=False)
    return {"mean": mean.tolist(), "axes": vh[:2].tolist()}


def rounded(values: torch.Tensor) -> list:
    return np.round(values.double().numpy(), CODE_DECIMALS).tolist()


@torch.inference_mode()
def test_codes(model: torch.nn.Module, test_x: torch.Tensor) -> torch.Tensor:
    """The code of each test image (a VAE's posterior mean), a batch at a time."""
    return torch.cat([model.encode(batch.to(model.device)).cpu() for batch in test_x.split(ENCODE_BATCH)])


@torch.no_grad()
def latent_view(model: torch.nn.Module, codes: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """What a panel draws besides decodes: the codes and labels, their ranges and PCA plane, and the prior's
    codes of the report's figures (its random samples and latent grid, the same seed and size)."""
    prior = model.prior
    samples = prior.sample(SAMPLES, torch.Generator(model.device).manual_seed(VIEW_SEED)).cpu()
    return {"latent_dim": codes.shape[1], "codes": rounded(codes), "labels": labels.tolist(), "classes": classes,
            "low": codes.min(0).values.tolist(), "high": codes.max(0).values.tolist(),
            "pca": principal_axes(codes),
            "prior": {"description": prior.description, "grid_description": prior.grid_description,
                      "samples": samples.tolist(), "grid_side": GRID_SIDE,
                      "grid": prior.grid(GRID_SIDE).reshape(-1, codes.shape[1]).cpu().tolist()}}


class ServedRun:
    """One run: its model, test set and test-set codes, and the answers the API gives about them."""

    def __init__(self, run_id: str, run_dir: Path, model: torch.nn.Module, data: ImageData,
                 pixels: str, classifier: ReferenceClassifier | None, classifier_reason: str | None):
        self.id, self.name, self.model, self.data = run_id, run_dir.name, model, data
        self.classifier, self.classifier_reason = classifier, classifier_reason
        self.latent_dim = model.config.latent_dim
        self.image_shape = tuple(model.config.image_shape)
        self.test_x = fixed_test_pixels(data.test_images, pixels)
        self.codes = codes = test_codes(model, self.test_x)
        self.reference: tuple[torch.Tensor, torch.Tensor] | None = None  # see reconstruction_manifold
        self.reference_lock = threading.Lock()
        # the largest response never changes: render it once
        self.codes_json = json.dumps({"run": run_id, **latent_view(model, codes, data.test_labels,
                                                                    list(data.classes))}).encode()
        self.decode = functools.lru_cache(CACHE_ENTRIES)(self._decode)
        self.classify = functools.lru_cache(CACHE_ENTRIES)(self._classify)

    def info(self) -> dict:
        config, classifier = self.model.config, self.classifier
        about_classifier = None if classifier is None else {"dataset": classifier.dataset,
                                                            "test_accuracy": classifier.test_accuracy}
        return {"id": self.id, "name": self.name, "model": config.model, "arch": config.arch,
                "latent_dim": self.latent_dim, "image_shape": list(self.image_shape),
                "dataset": self.data.name, "n_test": len(self.test_x), "classes": list(self.data.classes),
                "classifier": about_classifier, "classifier_reason": self.classifier_reason,
                "conditional": self.conditional}

    @property
    def conditional(self) -> bool:
        """Whether the model decodes a chosen class (a CVAE): the page then offers a class selector."""
        return self.model.takes_labels

    def _decode(self, z: Points, fmt: str, label: int | None = None) -> bytes:
        """The decoder's mean images for latent points, as a PNG strip or raw uint8 [N, C, H, W] bytes; a
        conditional model decodes them all with `label` (None: no label)."""
        with torch.inference_mode():
            labels = None if label is None else torch.full((len(z),), label)
            images = to_uint8(self.model.decode(torch.tensor(z, dtype=torch.float32), labels))
        return png_strip(images) if fmt == "png" else images.tobytes()

    def reconstruction_manifold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifier features of the model's reconstructions of the test images, and their k-NN radii.

        Built on the first request that needs it (seconds for 10,000 images), not at start-up, and once
        however many threads ask at the same time."""
        with self.reference_lock:
            if self.reference is None:
                with torch.inference_mode():
                    decoded = torch.cat([self.model.decode(c) for c in self.codes.split(ENCODE_BATCH)])
                    features, _ = self.classifier.outputs(decoded)
                self.reference = features, knn_radii(features)
            return self.reference

    def _classify(self, z: Points) -> Guesses:
        """For the image decoded at each point: the reference classifier's guess and confidence, and whether
        the point is a hole (its decode unlike every reconstruction of a test image) with its ball ratio."""
        with torch.inference_mode():
            features, probs = self.classifier.outputs(self.model.decode(torch.tensor(z, dtype=torch.float32)))
            ratio = ball_ratio(features, *self.reconstruction_manifold())
        confidence, label = probs.max(1)
        return (label.tolist(), [round(c, 4) for c in confidence.tolist()], (ratio > 1).tolist(),
                [round(r, 4) for r in ratio.tolist()])

    def reconstruct(self, x: torch.Tensor) -> dict:
        """Code and reconstruction of one image x [C, H, W] in [0, 1]."""
        with torch.inference_mode():
            code = self.model.encode(x[None])
            reconstruction = to_uint8(self.model.decode(code))
        return {"code": code[0].tolist(), "input": data_url(png_strip(to_uint8(x[None]))),
                "reconstruction": data_url(png_strip(reconstruction))}


def run_id(name: str, taken: dict) -> str:
    """A URL-safe id from the folder name, made unique with a suffix: runs/vae and old/vae -> vae, vae-2."""
    base = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "run"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def load_runs(run_dirs: list[str | Path],
              find_classifier: Callable[[ImageData], FoundClassifier] = cached_classifier,
              ) -> dict[str, ServedRun]:
    """Load every run (each dataset and reference classifier once) before serving, so a bad
    folder fails at start-up with a one-line error and requests never touch the disk."""
    if not run_dirs:
        raise VaelabError("name at least one run folder to explore")
    datasets: dict[tuple, ImageData] = {}
    classifiers: dict[tuple, FoundClassifier] = {}
    runs: dict[str, ServedRun] = {}
    for run_dir in map(Path, run_dirs):
        config, _ = read_config(run_dir)
        if config.model.latent_dim < 2:
            raise VaelabError(f"{run_dir}: the explorer shows a plane of the latent space, which needs "
                              f"latent_dim >= 2 (this run has {config.model.latent_dim})")
        model = load(run_dir)
        key = config.data
        if key not in datasets:
            datasets[key] = load_data(key)
        data = datasets[key]
        if tuple(data.image_shape) != tuple(config.model.image_shape):
            raise VaelabError(f"{run_dir}: {data.name} images are {data.image_shape}, but the model was "
                              f"trained on {tuple(config.model.image_shape)}")
        if key not in classifiers:
            classifiers[key] = find_classifier(data)
        rid = run_id(run_dir.name, runs)
        runs[rid] = ServedRun(rid, run_dir, model, data, config.data.pixels, *classifiers[key])
    return runs
