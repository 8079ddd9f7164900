"""Does a 7 come out when a 7 is asked for? The class accuracy of class-conditioned samples.

For a model that conditions on labels (`model.takes_labels`), `per_class` codes
z ~ p(z) are decoded with each class's label in turn, and a classifier names
each image's class:
    conditioned_accuracy = (1 / N) sum_i [classifier(decode(z_i, y_i)) = y_i],
the share of samples classified as the class they were asked for. Chance is
1 / classes; the reference classifier's accuracy on real test images is the
ceiling. The same codes serve every class, so the classes differ only by label.
"""

from __future__ import annotations

from typing import Callable

import torch

CONDITIONED_SEED = 2718
PER_CLASS = 100  # samples per class: 1,000 on MNIST, a standard error of about 0.01 at 90%


@torch.no_grad()
def conditioned_samples(model, per_class: int = PER_CLASS, seed: int = CONDITIONED_SEED,
                        batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [classes * per_class, C, H, W] on the CPU and the labels they were decoded with (class-major)."""
    classes = model.config.n_classes
    codes = model.prior.sample(per_class, torch.Generator(model.device).manual_seed(seed))
    labels = torch.arange(classes, device=model.device).repeat_interleave(per_class)
    codes = codes.repeat(classes, 1)
    images = torch.cat([model.decode(codes[i:i + batch_size], labels[i:i + batch_size]).cpu()
                        for i in range(0, len(codes), batch_size)])
    return images, labels.cpu()


def conditioned_accuracy(model, predict: Callable[[torch.Tensor], torch.Tensor], per_class: int = PER_CLASS,
                         batch_size: int = 1000) -> dict[str, float]:
    """`predict` maps images in [0, 1] to class indices (the reference classifier's most probable class)."""
    images, labels = conditioned_samples(model, per_class, batch_size=batch_size)
    correct = (predict(images).cpu() == labels).double()
    return {"conditioned_accuracy": correct.mean().item(), "chance": 1 / model.config.n_classes,
            "n_samples": len(labels)}
