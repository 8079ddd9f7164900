"""The plain autoencoder: z = f(x), x' = g(z), loss = -log p(x | g(f(x))) up to a constant.

An AE has no prior over codes. To make `sample(n)` meaningful we do what the
book does: draw uniformly from the bounding box of the codes, which
`fit_prior` records from a set of training images after each epoch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from vaelab.config import ModelConfig
from vaelab.models.likelihoods import build_likelihood
from vaelab.models.networks import build_networks
from vaelab.models.registry import register_model


class Posterior(NamedTuple):
    """q(z|x): the mean code and, for VAEs, the log-variance (None for an AE's point mass)."""

    mean: torch.Tensor
    logvar: torch.Tensor | None


@register_model("ae")
class Autoencoder(nn.Module):
    default_r_loss_factor = 1.0  # the book's AE minimises the plain mean-pixel MSE
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = build_networks(
            config.arch, config.image_shape, self.encoder_outputs(config.latent_dim), config.latent_dim)
        r_loss_factor = self.default_r_loss_factor if config.r_loss_factor is None else config.r_loss_factor
        self.likelihood = build_likelihood(config.likelihood, math.prod(config.image_shape), r_loss_factor)
        self.register_buffer("code_low", torch.full((config.latent_dim,), -1.0))
        self.register_buffer("code_high", torch.full((config.latent_dim,), 1.0))

    @staticmethod
    def encoder_outputs(latent_dim: int) -> int:
        return latent_dim

    # --- the model API -------------------------------------------------------------------------
    # Under bf16 autocast the networks compute in bf16; their outputs are cast back to the input's dtype
    # so that losses summed over hundreds of pixels, the KL and the sampling are done in full precision.
    def posterior(self, x: torch.Tensor) -> Posterior:
        return Posterior(self.encoder(x).to(x.dtype), None)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of each image (for a VAE, the posterior mean)."""
        return self.posterior(x).mean

    def sample_latent(self, x: torch.Tensor) -> torch.Tensor:
        """A code drawn from q(z|x); deterministic for an AE."""
        return self.encode(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).to(z.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (the decoder's mean) for codes z [N, latent_dim]."""
        return torch.sigmoid(self.decode_logits(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes, uniform over the bounding box of the codes seen by `fit_prior`."""
        u = torch.rand(n, self.config.latent_dim, generator=generator, device=self.code_low.device)
        return self.code_low + u * (self.code_high - self.code_low)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n decoded images from the model's sampling distribution over codes."""
        return self.decode(self.sample_prior(n, generator))

    @torch.no_grad()
    def fit_prior(self, x: torch.Tensor, batch_size: int = 1000) -> None:
        """The box of the codes of x, encoded in eval mode: no dropout, and BatchNorm's running statistics
        neither used from the batch nor moved."""
        was_training = self.training
        self.eval()
        codes = torch.cat([self.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        self.train(was_training)
        self.code_low.copy_(codes.min(0).values)
        self.code_high.copy_(codes.max(0).values)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training loss: DistributedDataParallel synchronises gradients through `forward`."""
        return self.loss(x, labels)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Batch means of the loss terms, in nats per image; 'loss' is what training minimises."""
        reconstruction = self.likelihood.reconstruction(self.decode_logits(self.encode(x)), x).mean()
        return {"loss": reconstruction, "reconstruction": reconstruction}
