"""Test-set means of a model's loss terms, in nats per image (used every epoch and by `evaluate`)."""

from __future__ import annotations

import torch

EVAL_SEED = 1234  # fixed noise for the VAE's sampled codes, so test numbers are reproducible


@torch.no_grad()
def loss_terms(model, x: torch.Tensor, batch_size: int = 1000, seed: int = EVAL_SEED,
               labels: torch.Tensor | None = None) -> dict[str, float]:
    """Means over `x` (already transformed pixels) of every term of `model.loss`, plus:

    - `mse`: mean per-pixel squared error of the deterministic reconstruction
      (the decoder's mean at the code's mean), in [0, 1] pixel units squared;
    - `neg_elbo` (VAEs): reconstruction + likelihood normaliser + KL, the
      negative evidence lower bound in nats per image.

    `labels` (a conditional model's classes of x) are passed to the model; without them it is scored unconditioned.
    The global RNG is forked so evaluating never shifts a training run's random stream.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].to(device)
            batch_labels = None if labels is None else labels[start:start + batch_size].to(device)
            posterior = model.posterior(batch, batch_labels)  # one encoder pass for the loss and the MSE
            terms = model.loss(batch, batch_labels, posterior=posterior)
            # per image first: a mean over the whole batch is split between threads, so its rounding would
            # depend on the thread count (an image's row is summed by one thread)
            terms["mse"] = (model.decode(posterior.mean, batch_labels) - batch).pow(2).flatten(1).mean(1).mean()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item() * len(batch)
    model.train(was_training)
    means = {name: total / len(x) for name, total in sums.items()}
    if "kl" in means:
        means["neg_elbo"] = means["reconstruction"] + model.likelihood.log_normaliser + means["kl"]
    return means
