"""Flaw 1's headline on a model whose sampling region is known: codes drawn where the data's codes are
decode to images like its reconstructions; codes drawn far outside decode to something else."""

import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.metrics.samples import sample_quality
from vaelab.models import build_model


class PixelJudge:
    """A stand-in for the reference classifier: the features are the pixels themselves."""

    def outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = images.flatten(1)
        return features, torch.softmax(features[:, :10], dim=1)


@pytest.fixture(scope="module")
def ae_and_images():
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="ae", arch="mlp", latent_dim=2)).eval()
    prototypes = torch.rand(5, 1, 28, 28)
    picks = torch.randint(0, 5, (600,))
    images = (prototypes[picks] + 0.05 * torch.randn(600, 1, 28, 28)).clamp(0, 1)
    return model, images[:300], images[300:]


def quality(model, test_x, train_x, test_labels=None):
    judge = PixelJudge()
    real, _ = judge.outputs(test_x)
    labels = torch.zeros(len(test_x), dtype=torch.long) if test_labels is None else test_labels
    with torch.no_grad():
        return sample_quality(model, judge, real, model.encode(test_x), labels, model.encode(train_x),
                              batch_size=64)


def test_reconstruction_accuracy_is_the_judges_accuracy_on_reconstructions(ae_and_images):
    model, test_x, train_x = ae_and_images
    model.fit_prior(train_x)
    with torch.no_grad():
        labels = PixelJudge().outputs(model.reconstruct(test_x))[1].argmax(1)
    assert quality(model, test_x, train_x, labels)["reconstruction_accuracy"] == 1.0
    wrong = labels.clone()
    wrong[: len(wrong) // 3] = (wrong[: len(wrong) // 3] + 1) % 10
    assert quality(model, test_x, train_x, wrong)["reconstruction_accuracy"] == pytest.approx(2 / 3, abs=1e-9)


def test_samples_from_the_codes_box_look_like_reconstructions_and_far_ones_do_not(ae_and_images):
    model, test_x, train_x = ae_and_images
    model.fit_prior(train_x)
    near = quality(model, test_x, train_x)
    low, high = model.code_low.clone(), model.code_high.clone()
    model.code_low.copy_(low - 100 * (high - low))  # a box that is almost all empty space
    model.code_high.copy_(high + 100 * (high - low))
    far = quality(model, test_x, train_x)
    model.code_low.copy_(low)
    model.code_high.copy_(high)

    assert near["precision_at_codes"] == far["precision_at_codes"] > 0.9  # the sampler plays no part in it
    assert near["precision_vs_reconstructions"] > 0.5
    assert far["precision_vs_reconstructions"] < 0.05
    assert near["n_samples"] == far["n_samples"] == len(test_x)

