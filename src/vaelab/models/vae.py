"""The variational autoencoder (Kingma & Welling 2014) and its beta weighting (Higgins et al. 2017).

The encoder outputs q(z|x) = N(mean, diag(exp(logvar))); a code is drawn with
the reparameterisation trick, so gradients flow through the sample; the loss is
    -log p(x|z) + beta * KL(q(z|x) || N(0, I)),
with the KL in closed form: 1/2 sum(mean^2 + exp(logvar) - 1 - logvar).
beta = 1 is the negative ELBO; beta > 1 presses the codes harder towards the
prior (Higgins et al.'s beta-VAE), beta -> 0 leaves the KL free and the model
drifts back towards an autoencoder with noisy codes.
"""

from __future__ import annotations

import torch

from vaelab.models.base import LatentModel
from vaelab.models.posteriors import DiagonalGaussian
from vaelab.models.priors import StandardNormal


class VAE(LatentModel):
    registry_name = "vae"
    default_r_loss_factor = 1000.0  # the book's VAE: 1000 * mean-pixel MSE + KL
    takes_beta = True
    chapter_figures = {"scatter": "Figure 7", "samples": "Figure 8"}
    legacy_weights = ("code_low", "code_high")  # older versions fitted an AE's box to every model

    def __init__(self, config):
        super().__init__(config, encoder_outputs=2 * config.latent_dim)  # mean and log-variance, one linear head

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        mean, logvar = self.encoder(x).to(x.dtype).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    @property
    def prior(self) -> StandardNormal:
        return StandardNormal(self.config.latent_dim, self.device)

    def reproduces_book_loss(self) -> bool:
        """Whether the loss is the book VAE's (1000 * mean-pixel MSE + KL on a 2-D code), whatever the network."""
        c = self.config
        return c.likelihood == "gaussian" and c.r_loss_factor == 1000 and c.latent_dim == 2 and c.beta == 1

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None,
             kl_weight: float = 1.0) -> dict[str, torch.Tensor]:
        posterior = self.posterior(x)
        reconstruction = self.likelihood.reconstruction(self.decode_logits(posterior.sample()), x).mean()
        kl = posterior.kl().mean()
        return {"loss": reconstruction + kl_weight * self.config.beta * kl, "reconstruction": reconstruction, "kl": kl}
