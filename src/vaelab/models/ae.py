"""The plain autoencoder: z = f(x), x' = g(z), loss = -log p(x | g(f(x))) up to a constant.

An AE has no prior over codes. To make `sample(n)` meaningful we do what the
book does: draw uniformly from the bounding box of the codes, which
`fit_prior` records from the first `prior_fit_images` training images after
each epoch. The box lives in the weights (buffers code_low, code_high), so the
run folder of every finished epoch samples from its own box.
"""

from __future__ import annotations

import torch

from vaelab.models.base import LatentModel
from vaelab.models.posteriors import PointMass
from vaelab.models.priors import BoxPrior


class Autoencoder(LatentModel):
    registry_name = "ae"
    default_r_loss_factor = 1.0  # the book's AE minimises the plain mean-pixel MSE
    chapter_figures = {"scatter": "Figure 2", "samples": "Figure 3"}
    prior_fit_images = 10_000

    def __init__(self, config):
        super().__init__(config, encoder_outputs=config.latent_dim)
        self.register_buffer("code_low", torch.full((config.latent_dim,), -1.0))
        self.register_buffer("code_high", torch.full((config.latent_dim,), 1.0))

    def posterior(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> PointMass:
        return PointMass(self.encoder(x).to(x.dtype))

    @property
    def prior(self) -> BoxPrior:
        return BoxPrior(self.code_low, self.code_high)

    @torch.no_grad()
    def fit_prior(self, x: torch.Tensor, batch_size: int = 1000) -> None:
        """The box of the codes of x (training images), encoded in eval mode: no dropout, and BatchNorm's
        running statistics neither used from the batch nor moved."""
        was_training = self.training
        self.eval()
        codes = torch.cat([self.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        self.train(was_training)
        self.code_low.copy_(codes.min(0).values)
        self.code_high.copy_(codes.max(0).values)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None, kl_weight: float = 1.0,
             posterior: PointMass | None = None) -> dict[str, torch.Tensor]:
        """Batch means of the loss terms, in nats per image; 'loss' is what training minimises (an AE has no
        KL term for `kl_weight` to scale). `posterior`: x's codes when the caller has them already."""
        codes = (posterior if posterior is not None else self.posterior(x)).mean
        reconstruction = self.likelihood.reconstruction(self.decode_logits(codes), x).mean()
        return {"loss": reconstruction, "reconstruction": reconstruction}
