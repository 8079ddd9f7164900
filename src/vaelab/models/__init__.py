"""AE and VAE models, their networks and likelihoods, built by name from a ModelConfig."""

from vaelab.models.ae import Autoencoder, Posterior
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.networks import ARCHITECTURES
from vaelab.models.registry import MODELS, build_model
from vaelab.models.vae import VAE, kl_to_standard_normal

__all__ = ["ARCHITECTURES", "LIKELIHOODS", "MODELS", "VAE", "Autoencoder", "Posterior", "build_model",
           "kl_to_standard_normal"]
