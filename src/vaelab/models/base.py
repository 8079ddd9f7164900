"""What every model shares: encoder and decoder networks, a decoder likelihood, and the model API.

A model answers for itself: `posterior(x)` is q(z|x) as an object, `prior` the
distribution it samples codes from, `device` where its weights live. Metrics,
report and explorer ask these instead of checking which model they hold.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from vaelab.models.likelihoods import build_likelihood
from vaelab.models.networks import build_networks

if TYPE_CHECKING:
    from vaelab.config import ModelConfig


class LatentModel(nn.Module):
    registry_name: str  # the name config.json gives the model (models/registry.py)
    default_r_loss_factor: float
    takes_beta = False  # whether the loss has a KL term that --beta weights
    takes_iw_train = False  # whether the loss can be the importance-weighted bound (--iw-train)
    # Whether the model conditions on the images' labels: the trainer then passes each batch's labels (and only
    # then gathers them); methods below take `labels` [N] class indices, which an unconditional model ignores.
    takes_labels = False
    # The chapter's figures this model's report figures reproduce (Generative Deep Learning, ch. 3).
    chapter_figures: dict[str, str] = {}
    # Training images whose codes the prior is fitted to after each epoch (0: the prior is fixed).
    prior_fit_images = 0
    # Weights older versions saved that this model no longer has: dropped when a run folder is read.
    legacy_weights: tuple[str, ...] = ()

    def __init__(self, config: ModelConfig, encoder_outputs: int, decoder_inputs: int | None = None):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = build_networks(config.arch, config.image_shape, encoder_outputs,
                                                    decoder_inputs or config.latent_dim)
        r_loss_factor = self.default_r_loss_factor if config.r_loss_factor is None else config.r_loss_factor
        self.likelihood = build_likelihood(config.likelihood, math.prod(config.image_shape), r_loss_factor)
        if self.legacy_weights:
            self._register_load_state_dict_pre_hook(self.drop_legacy_weights)

    def drop_legacy_weights(self, state_dict: dict, prefix: str, *args) -> None:
        for name in self.legacy_weights:
            state_dict.pop(prefix + name, None)

    def reproduces_book_loss(self) -> bool:
        """Whether the loss is the book VAE's, so that the report can show the book's final value beside it."""
        return False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # Under bf16 autocast the networks compute in bf16; their outputs are cast back to the input's dtype
    # so that losses summed over hundreds of pixels, the KL and the sampling are done in full precision.
    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The code of each image (for a VAE, the posterior mean)."""
        return self.posterior(x, labels).mean

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z).to(z.dtype)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] (the decoder's mean) for codes z [N, latent_dim]."""
        return torch.sigmoid(self.decode_logits(z, labels))

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x, labels), labels)

    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """n decoded images from the model's prior over codes (of the classes `labels`, for a conditional model)."""
        return self.decode(self.prior.sample(n, generator), labels)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                kl_weight: float = 1.0) -> dict[str, torch.Tensor]:
        """The training loss: DistributedDataParallel synchronises gradients through `forward`. `kl_weight`
        scales a KL term during a KL warm-up (TrainConfig.kl_warmup); evaluation always uses 1."""
        return self.loss(x, labels, kl_weight=kl_weight)
