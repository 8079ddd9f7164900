"""Every metric of one trained model on its dataset's test set, grouped as the study reads them:

    likelihood   the loss terms; for a VAE the negative ELBO and the importance-weighted bound
    samples      flaw 1: what random latent points decode to
    latent       flaws 2 and 3: the shape of the codes

A `Reference` holds what all models on one dataset share: the reference
classifier, its features of the real test images, and the same numbers for
real images (the calibration every sample score is read against).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab.data import ImageData, fixed_test_pixels
from vaelab.data.pixels import to_unit
from vaelab.errors import VaelabError
from vaelab.metrics.classifier import Recipe, ReferenceClassifier, reference_classifier
from vaelab.metrics.conditional import conditioned_accuracy
from vaelab.metrics.fid import frechet_between
from vaelab.metrics.latent import latent_metrics
from vaelab.metrics.likelihood import likelihood_metrics
from vaelab.metrics.manifold import knn_radii, manifold_precision
from vaelab.metrics.samples import classifier_score, sample_quality, top_probability

KNN_REFERENCE_IMAGES = 10_000  # training images: the k-NN classifier's memory, and real codes to decode
FLOOR_SEED = 11


@dataclass
class Reference:
    classifier: ReferenceClassifier
    real_features: torch.Tensor  # penultimate features of the test images
    real_radii: torch.Tensor  # their k-NN radii: the real-image manifold that samples are scored against
    calibration: dict


def require_test_images(data: ImageData) -> None:
    if len(data.test_images) < 2:
        raise VaelabError(f"dataset {data.name!r} has {len(data.test_images)} test images; the metrics need a test set")


def reference(data: ImageData, recipe: Recipe = Recipe(), show_progress: bool = True) -> Reference | None:
    """The classifier for `data` and the real-image calibration: its test accuracy, the manifold precision
    and FID of as many random training images as there are test images against the test images (what a
    perfect model would score), and the real test images' top probability and classifier score. None for
    unlabelled data: the classifier trains on the labels."""
    require_test_images(data)
    if not data.classes:
        return None
    classifier = reference_classifier(data, recipe, show_progress)
    features, probabilities = classifier.outputs(to_unit(data.test_images))
    generator = torch.Generator().manual_seed(FLOOR_SEED)
    train_subset = torch.randperm(len(data.train_images), generator=generator)[:len(data.test_images)]
    train_features, _ = classifier.outputs(to_unit(data.train_images[train_subset]))
    radii = knn_radii(features)
    calibration = {"classifier_test_accuracy": classifier.test_accuracy,
                   "precision_train_vs_test": manifold_precision(train_features, features, radii),
                   "fid_train_vs_test": frechet_between(train_features, features),
                   "top_probability": top_probability(probabilities),
                   "classifier_score": classifier_score(probabilities), "n_images": len(features)}
    return Reference(classifier, features, radii, calibration)


@torch.no_grad()
def encode_all(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    device = model.device
    return torch.cat([model.encode(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def run_metrics(model, data: ImageData, pixels: str, ref: Reference | None, iw_samples: int,
                batch_size: int = 1000) -> dict:
    """Likelihood, sample-quality and latent metrics of `model` on the test set of `data`, whose images
    reach the model through the pixel mode it was trained with. Unlabelled data (no `ref`) has no
    sample-quality or class metrics: "labelled" is False and the catalogue's label metrics are absent."""
    require_test_images(data)
    x = fixed_test_pixels(data.test_images, pixels)
    reference_x = fixed_test_pixels(data.train_images[:KNN_REFERENCE_IMAGES], pixels)
    codes = encode_all(model, x, batch_size)
    reference_codes = encode_all(model, reference_x, batch_size)
    labelled = ref is not None
    samples = sample_quality(model, ref.classifier, ref.real_features, codes, data.test_labels, reference_codes,
                             batch_size, real_radii=ref.real_radii) if labelled else {}
    if labelled and model.takes_labels:
        conditioned = conditioned_accuracy(model, lambda images: ref.classifier.outputs(images)[1].argmax(1),
                                           batch_size=batch_size)
        samples["conditioned_accuracy"] = conditioned["conditioned_accuracy"]
    return {
        "labelled": labelled,
        "likelihood": likelihood_metrics(model, x, iw_samples, batch_size),
        "samples": samples,
        "latent": latent_metrics(codes, data.test_labels if labelled else None, reference_codes,
                                 data.train_labels[:KNN_REFERENCE_IMAGES] if labelled else None),
    }
