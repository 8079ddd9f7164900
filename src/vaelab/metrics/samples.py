"""Flaw 1, images decoded from empty space: are a model's random samples as good as what it decodes at real codes?

Codes are drawn from the model's own sampling distribution (AE: uniform over
the bounding box of its codes, as the book does; VAE: N(0, I)) and decoded to
the decoder's mean image. Everything is judged by the reference classifier:

- precision against its reconstructions (the headline): the share of samples
  that land on the manifold of the model's own reconstructions of the test
  images. It asks the flaw's question exactly: a code drawn from empty space
  decodes to something unlike anything the decoder makes at the codes of real
  images. How sharp the decoder is at its best (a VAE's blur) cancels out; the
  same precision for decodes at the codes of training images is what a sampler
  that hits the codes' distribution exactly would score;
- precision against real images: the same, against the real test images'
  manifold: how realistic the samples are, blur included;
- classifier FID: the Fréchet distance between the classifier's penultimate
  features of n samples and of n real test images;
- top probability: the mean over samples of the classifier's largest class probability;
- classifier score: exp(E_x KL(p(y|x) || p(y))), the Inception score with our
  classifier (Salimans et al. 2016): 1 when every sample gets the same class
  distribution, at most the number of classes when each sample is one class
  for sure and the classes are used evenly;
- reconstruction accuracy (not a flaw: whether the model is trained at all): the
  classifier's accuracy on the model's reconstructions of the test images, with
  the test labels; the classifier's accuracy on the real test images is its ceiling;
- confident fraction: of an even grid of codes over the sampled region, the
  share that decodes to an image the classifier gives one class with
  probability >= 0.9. Empty space between the codes shows up as a low share.

The same numbers for real images calibrate them: the FID between n training
and n test images is the floor a perfect model would reach at this n.
"""

from __future__ import annotations

import torch

from vaelab.metrics.classifier import ReferenceClassifier
from vaelab.metrics.fid import frechet_between
from vaelab.metrics.latent import even_unit_points
from vaelab.metrics.manifold import knn_radii, manifold_precision

CONFIDENT = 0.9
GRID_SIDE = 32  # the confident-fraction grid: 32 x 32 codes in 2-D (32^2 Sobol points above)
SAMPLE_SEED = 7


@torch.no_grad()
def decode_all(model, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Decoder means in [0, 1] for codes z (on any device), batch by batch, on the CPU."""
    device = model.device
    return torch.cat([model.decode(z[i:i + batch_size].to(device)).cpu() for i in range(0, len(z), batch_size)])


def top_probability(probabilities: torch.Tensor) -> float:
    return probabilities.max(1).values.mean().item()


def classifier_score(probabilities: torch.Tensor) -> float:
    """exp of the mean KL between each image's class distribution and their average (0 log 0 = 0)."""
    p = probabilities.double()
    marginal = p.mean(0, keepdim=True)
    kl = torch.xlogy(p, p).sum(1) - (p * torch.log(marginal.clamp_min(1e-30))).sum(1)
    return kl.mean().exp().item()


def confident_fraction(probabilities: torch.Tensor, threshold: float = CONFIDENT) -> float:
    return (probabilities.max(1).values >= threshold).double().mean().item()


def sample_quality(model, classifier: ReferenceClassifier, real_features: torch.Tensor, test_codes: torch.Tensor,
                   test_labels: torch.Tensor, train_codes: torch.Tensor, batch_size: int = 1000,
                   seed: int = SAMPLE_SEED, grid_side: int = GRID_SIDE, real_radii: torch.Tensor | None = None) -> dict:
    """Flaw 1's numbers for as many random samples of `model` as there are test images: judged against the
    model's reconstructions (its decodes at the test images' codes), and against the features of the real test
    images (and their k-NN radii, computed here when not given); `train_codes` are codes of training images."""
    n = len(test_codes)
    prior = model.prior
    generator = torch.Generator(model.device).manual_seed(seed)
    features, probabilities = classifier.outputs(decode_all(model, prior.sample(n, generator), batch_size))
    reconstructions, reconstruction_probabilities = classifier.outputs(decode_all(model, test_codes, batch_size))
    recognised = reconstruction_probabilities.argmax(1) == test_labels.to(reconstruction_probabilities.device)
    at_codes, _ = classifier.outputs(decode_all(model, train_codes[:n], batch_size))
    reconstruction_radii = knn_radii(reconstructions)
    grid = prior.quantile(even_unit_points(model.config.latent_dim, grid_side))
    _, grid_probabilities = classifier.outputs(decode_all(model, grid, batch_size))
    return {"precision_vs_reconstructions": manifold_precision(features, reconstructions, reconstruction_radii),
            "precision_at_codes": manifold_precision(at_codes, reconstructions, reconstruction_radii),
            "precision": manifold_precision(features, real_features, real_radii),
            "reconstruction_accuracy": recognised.double().mean().item(),
            "fid": frechet_between(features, real_features), "top_probability": top_probability(probabilities),
            "classifier_score": classifier_score(probabilities),
            "confident_fraction": confident_fraction(grid_probabilities), "n_samples": n, "grid_points": len(grid)}
