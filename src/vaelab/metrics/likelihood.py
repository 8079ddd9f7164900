"""How likely a VAE finds the test images: the ELBO and the importance-weighted bound, in nats per image.

For z_1..z_K drawn from the encoder's q(z|x), the importance weights
    w_k = p(x|z_k) p(z_k) / q(z_k|x)
average to an unbiased estimate of p(x), so by Jensen
    L_K(x) = E[log 1/K sum_k w_k]  <=  log p(x),
with L_1 the ELBO, L_K rising with K and reaching log p(x) as K -> infinity
(Burda, Grosse & Salakhutdinov 2016). We report -L_K, an upper bound on
-log p(x). The decoder term is log p(x|z) = -(reconstruction + log_normaliser)
of the model's own likelihood, so the same code serves Bernoulli and
fixed-variance Gaussian decoders. An AE's q(z|x) is a point mass, without a density: no bound.
"""

from __future__ import annotations

import math

import torch

from vaelab.errors import VaelabError
from vaelab.train.evaluation import loss_terms

MAX_DECODES = 8192  # images decoded per call: bounds memory whatever K and the batch size
IW_SEED = 4321


@torch.no_grad()
def log_weights(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """log w for k codes per image of the batch x: [k, len(x)]."""
    posterior = model.posterior(x)
    z = posterior.sample(k, generator)
    logits = model.decode_logits(z.flatten(0, 1)).view(k, *x.shape)  # x broadcasts over the k samples: no copies
    log_px_z = -(model.likelihood.reconstruction(logits, x) + model.likelihood.log_normaliser)
    return log_px_z + model.prior.log_prob(z) - posterior.log_prob(z)


def check_iw_samples(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise VaelabError(f"iw-samples must be a whole number of at least 1, got {k}")


@torch.no_grad()
def iw_log_likelihood(model, x: torch.Tensor, k: int, batch_size: int = 1000, seed: int = IW_SEED) -> torch.Tensor:
    """L_K(x) for every image of x (nats), with the K samples taken in chunks of at most MAX_DECODES decodes."""
    check_iw_samples(k)
    device = next(model.parameters()).device
    if not model.posterior(x[:1].to(device)).has_density:
        raise VaelabError(f"a {model.registry_name} has no q(z|x) or p(z), so it has no likelihood bound")
    generator = torch.Generator(device).manual_seed(seed)
    batch_size = min(batch_size, MAX_DECODES)
    bounds = []
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size].to(device)
        chunk = max(1, MAX_DECODES // len(batch))
        total = torch.full((len(batch),), -math.inf, dtype=torch.float64, device=device)
        for done in range(0, k, chunk):
            weights = log_weights(model, batch, min(chunk, k - done), generator).double()
            total = torch.logaddexp(total, torch.logsumexp(weights, 0))
        bounds.append((total - math.log(k)).cpu())
    return torch.cat(bounds)


def likelihood_metrics(model, x: torch.Tensor, iw_samples: int, batch_size: int = 1000) -> dict[str, float]:
    """Test-set likelihood numbers (nats per image): the loss terms for every model; for a VAE also
    the negative ELBO and -L_K with its standard error over images."""
    check_iw_samples(iw_samples)
    terms = loss_terms(model, x, batch_size)
    result = {"reconstruction": terms["reconstruction"], "mse": terms["mse"]}
    if "neg_elbo" not in terms:
        return result
    nll = -iw_log_likelihood(model, x, iw_samples, batch_size)
    return {**result, "kl": terms["kl"], "neg_elbo": terms["neg_elbo"], "iw_nll": nll.mean().item(),
            "iw_nll_stderr": (nll.std() / math.sqrt(len(nll))).item() if len(nll) > 1 else 0.0,
            "iw_samples": iw_samples}
