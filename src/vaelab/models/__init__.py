"""AE, VAE and conditional VAE models, their networks, likelihoods, priors and posteriors, built by name from a
ModelConfig."""

from vaelab.models.ae import Autoencoder
from vaelab.models.base import LatentModel
from vaelab.models.cvae import CVAE
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.networks import ARCHITECTURES
from vaelab.models.posteriors import DiagonalGaussian, PointMass, kl_to_standard_normal
from vaelab.models.priors import BoxPrior, StandardNormal
from vaelab.models.registry import MODELS, build_model, model_class
from vaelab.models.vae import VAE

__all__ = ["ARCHITECTURES", "CVAE", "LIKELIHOODS", "MODELS", "VAE", "Autoencoder", "BoxPrior", "DiagonalGaussian",
           "LatentModel", "PointMass", "StandardNormal", "build_model", "kl_to_standard_normal", "model_class"]
