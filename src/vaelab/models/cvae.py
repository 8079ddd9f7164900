"""The conditional VAE (Sohn, Lee & Yan 2015; the MNIST post of Dykeman 2016): encoder and decoder both see
the label, so the code z is free to carry the style (slant, thickness) and the label says which digit.

The label enters as a one-hot vector, concatenated to the decoder's input
(z ++ onehot(y)) and to the input of the encoder's last dense layer. One-hot
rather than a learnt embedding: with a handful of classes it has nothing to
learn, is the form both papers use, and leaves the architectures untouched, so
every network (mlp, conv, faces) conditions the same way. Concatenating onehot(y)
to a dense layer's input adds a per-class column of weights, so the encoder side
is written as a bias-free linear map of the one-hot added to the encoder's output.

Labels are dropped (replaced by the all-zero "no label" vector) for 10% of the
training images, as classifier-free guidance does (Ho & Salimans 2022): the same
weights then also model the unlabelled case, which gives every label-free call
(the study's likelihood bound, latent scatter, samples; the explorer without a
class) a meaning: the model's unconditional mode. A label of -1 (an unlabelled
image) is the same "no label".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.models.base import LatentModel
from vaelab.models.posteriors import DiagonalGaussian
from vaelab.models.priors import StandardNormal
from vaelab.models.vae import VAE

LABEL_DROPOUT = 0.1  # fraction of training images shown without their label


class ConditionalNormal(StandardNormal):
    """The CVAE's p(z | y) = N(0, I) for every class y: the class is given to the decoder, not drawn."""

    description = "from its prior N(0, I), decoded without a label unless a class is asked for"


class CVAE(VAE):
    registry_name = "cvae"
    takes_labels = True
    chapter_figures: dict[str, str] = {}  # the chapter has no CVAE
    legacy_weights = ()

    def __init__(self, config):
        # n_classes is 0 until the training data is known (a new run's config is checked before data loads);
        # the trainer refuses unlabelled data for a model that takes labels
        d, classes = config.latent_dim, config.n_classes
        LatentModel.__init__(self, config, encoder_outputs=2 * d, decoder_inputs=d + classes)
        # onehot(y) into the encoder's last dense layer (none while the classes are unknown)
        self.label_in = nn.Linear(classes, 2 * d, bias=False) if classes else None

    @property
    def classes(self) -> int:
        return self.config.n_classes

    def one_hot(self, labels: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
        """[n, classes] one-hot rows; all zeros for "no label" (labels None, or -1)."""
        if labels is None:
            return like.new_zeros(n, self.classes)
        return F.one_hot(labels.clamp(min=0), self.classes).to(like.dtype) * (labels >= 0).to(like.dtype)[:, None]

    def posterior(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> DiagonalGaussian:
        outputs = self.encoder(x).to(x.dtype)
        if self.label_in is not None:
            outputs = outputs + self.label_in(self.one_hot(labels, len(x), x)).to(x.dtype)
        mean, logvar = outputs.chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(torch.cat([z, self.one_hot(labels, len(z), z)], 1)).to(z.dtype)

    @property
    def prior(self) -> ConditionalNormal:
        return ConditionalNormal(self.config.latent_dim, self.device)

    def reproduces_book_loss(self) -> bool:
        return False

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None, kl_weight: float = 1.0,
             posterior: DiagonalGaussian | None = None) -> dict[str, torch.Tensor]:
        if self.training and labels is not None:  # (a given posterior saw the labels before this dropout)
            dropped = torch.rand(len(labels), device=labels.device) < LABEL_DROPOUT
            labels = torch.where(dropped, torch.full_like(labels, -1), labels)
            posterior = None
        return super().loss(x, labels, kl_weight, posterior)
