"""The variational autoencoder (Kingma & Welling 2014), its beta weighting (Higgins et al. 2017) and its
importance-weighted objective (Burda, Grosse & Salakhutdinov 2016).

The encoder outputs q(z|x) = N(mean, diag(exp(logvar))); a code is drawn with
the reparameterisation trick, so gradients flow through the sample; the loss is
    -log p(x|z) + beta * KL(q(z|x) || N(0, I)),
with the KL in closed form: 1/2 sum(mean^2 + exp(logvar) - 1 - logvar).
beta = 1 is the negative ELBO; beta > 1 presses the codes harder towards the
prior (Higgins et al.'s beta-VAE), beta -> 0 leaves the KL free and the model
drifts back towards an autoencoder with noisy codes.

With `iw_train` K > 1 the loss is instead the negative importance-weighted bound
    -log 1/K sum_k w_k,   log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),   z_k ~ q(z|x),
which is tighter than the ELBO (K = 1) and rises towards log p(x) with K: the
encoder may spread q wider than the posterior, since only the best of K draws
must explain x. Its gradient weights each draw by its normalised w_k.
"""

from __future__ import annotations

import math

import torch

from vaelab.models.base import LatentModel
from vaelab.models.posteriors import DiagonalGaussian
from vaelab.models.priors import StandardNormal


class VAE(LatentModel):
    registry_name = "vae"
    default_r_loss_factor = 1000.0  # the book's VAE: 1000 * mean-pixel MSE + KL
    takes_beta = True
    takes_iw_train = True
    chapter_figures = {"scatter": "Figure 7", "samples": "Figure 8"}
    legacy_weights = ("code_low", "code_high")  # older versions fitted an AE's box to every model

    def __init__(self, config):
        super().__init__(config, encoder_outputs=2 * config.latent_dim)  # mean and log-variance, one linear head

    def posterior(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> DiagonalGaussian:
        mean, logvar = self.encoder(x).to(x.dtype).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    @property
    def prior(self) -> StandardNormal:
        return StandardNormal(self.config.latent_dim, self.device)

    def reproduces_book_loss(self) -> bool:
        """Whether the loss is the book VAE's (1000 * mean-pixel MSE + KL on a 2-D code), whatever the network."""
        c = self.config
        return (c.likelihood == "gaussian" and c.r_loss_factor == 1000 and c.latent_dim == 2 and c.beta == 1
                and c.iw_train == 1)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None, kl_weight: float = 1.0,
             posterior: DiagonalGaussian | None = None) -> dict[str, torch.Tensor]:
        """`posterior`: q(z|x) for these x and labels when the caller has it already (evaluation shares it with
        the reconstruction's MSE instead of encoding twice)."""
        posterior = posterior if posterior is not None else self.posterior(x, labels)
        if self.config.iw_train > 1:
            return self.iw_loss(x, labels, kl_weight, self.config.iw_train, posterior)
        reconstruction = self.likelihood.reconstruction(self.decode_logits(posterior.sample(), labels), x).mean()
        kl = posterior.kl().mean()
        return {"loss": reconstruction + kl_weight * self.config.beta * kl, "reconstruction": reconstruction, "kl": kl}

    def iw_loss(self, x: torch.Tensor, labels: torch.Tensor | None, kl_weight: float, k: int,
                posterior: DiagonalGaussian | None = None) -> dict[str, torch.Tensor]:
        """The negative K-sample bound (without the likelihood's constant, like `loss`), batch mean in nats per
        image; `kl_weight * beta` scales log p(z) - log q(z|x) as it scales the KL of the ELBO, so K = 1 is the
        VAE's loss in expectation. 'reconstruction' and 'kl' are the first draw's and the closed-form KL, so that
        the logged terms mean what they mean for the VAE."""
        posterior = posterior if posterior is not None else self.posterior(x, labels)
        z = posterior.sample(k)  # [k, N, d], reparameterised
        decoded_labels = None if labels is None else labels.repeat(k)
        logits = self.decode_logits(z.flatten(0, 1), decoded_labels).view(k, *x.shape)
        reconstruction = self.likelihood.reconstruction(logits, x)  # [k, N]
        log_w = -reconstruction + kl_weight * self.config.beta * (self.prior.log_prob(z) - posterior.log_prob(z))
        bound = torch.logsumexp(log_w, 0) - math.log(k)
        return {"loss": -bound.mean(), "reconstruction": reconstruction[0].mean(), "kl": posterior.kl().mean()}
