"""Latent arithmetic and morphing: attribute vectors are class-mean differences; morphs join two codes."""

import dataclasses

import pytest
import torch

import vaelab
from vaelab.arithmetic import class_mean_difference
from vaelab.config import ModelConfig
from vaelab.errors import VaelabError
from vaelab.models import build_model


def test_attribute_vectors_recover_the_known_means_of_synthetic_clusters():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0, 0.0], [3.0, -1.0, 2.0], [-2.0, 4.0, 0.5]])
    labels = torch.arange(3).repeat_interleave(4000)
    codes = means[labels] + 0.5 * torch.randn(len(labels), 3, generator=g)
    vector = class_mean_difference(codes, labels, 1, 2)
    assert torch.allclose(vector, means[2] - means[1], atol=0.05)  # sd of the estimate: 0.5 * sqrt(2 / 4000) = 0.011
    assert torch.allclose(class_mean_difference(codes, labels, 2, 1), -vector)
    with pytest.raises(VaelabError, match="no test image of class 5"):
        class_mean_difference(codes, labels, 0, 5)


def test_the_public_functions_on_a_loaded_model(mnist_sample):
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="vae", arch="mlp", r_loss_factor=1000.0)).eval()
    every_fifth = slice(None, None, 5)  # 200 test images of every class
    data = dataclasses.replace(mnist_sample, test_images=mnist_sample.test_images[every_fifth],
                               test_labels=mnist_sample.test_labels[every_fifth])
    by_index = vaelab.attribute_vector(model, 3, 8, data=data)
    by_name = vaelab.attribute_vector(model, "3", "8", data=data)
    x = data.test_images.float() / 255
    with torch.no_grad():
        codes = model.encode(x)
    expected = codes[data.test_labels == 8].mean(0) - codes[data.test_labels == 3].mean(0)
    assert by_index.shape == (2,) and torch.allclose(by_index, expected, atol=1e-5) and torch.equal(by_index, by_name)
    with pytest.raises(VaelabError, match="unknown class 'eleven'"):
        vaelab.attribute_vector(model, 3, "eleven", data=data)
    with pytest.raises(VaelabError, match="give the data"):
        vaelab.attribute_vector(model, 3, 8)

    a, b = x[0], x[1]
    strip = vaelab.morph(model, a, b, steps=5)
    assert strip.shape == (5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(strip[0], model.reconstruct(a[None])[0], atol=1e-6)
        assert torch.allclose(strip[-1], model.reconstruct(b[None])[0], atol=1e-6)
        middle = model.decode((model.encode(a[None]) + model.encode(b[None])) / 2)[0]
    assert torch.allclose(strip[2], middle, atol=1e-5)
    with pytest.raises(VaelabError, match="at least 2 steps"):
        vaelab.morph(model, a, b, steps=1)
    with pytest.raises(VaelabError, match="shape"):
        vaelab.morph(model, a, torch.rand(3, 8, 8))
