"""The variational autoencoder (Kingma & Welling 2014).

The encoder outputs q(z|x) = N(mean, diag(exp(logvar))); a code is drawn with
the reparameterisation trick z = mean + exp(logvar / 2) * eps, eps ~ N(0, I),
so gradients flow through the sample; the loss is the negative ELBO
    -log p(x|z) + KL(q(z|x) || N(0, I)),
with the KL in closed form: 1/2 sum(mean^2 + exp(logvar) - 1 - logvar).
"""

from __future__ import annotations

import torch

from vaelab.models.ae import Autoencoder, Posterior
from vaelab.models.registry import register_model


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per row, in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


@register_model("vae")
class VAE(Autoencoder):
    default_r_loss_factor = 1000.0  # the book's VAE: 1000 * mean-pixel MSE + KL

    @staticmethod
    def encoder_outputs(latent_dim: int) -> int:
        return 2 * latent_dim  # mean and log-variance from one linear head

    def posterior(self, x: torch.Tensor) -> Posterior:
        mean, logvar = self.encoder(x).to(x.dtype).chunk(2, dim=1)
        return Posterior(mean, logvar)

    def sample_latent(self, x: torch.Tensor) -> torch.Tensor:
        mean, logvar = self.posterior(x)
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, generator=generator, device=self.code_low.device)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mean, logvar = self.posterior(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        reconstruction = self.likelihood.reconstruction(self.decode_logits(z), x).mean()
        kl = kl_to_standard_normal(mean, logvar).mean()
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}
