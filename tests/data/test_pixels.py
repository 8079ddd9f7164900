import pytest
import torch

from vaelab.data import fixed_test_pixels, pixel_transform
from vaelab.errors import VaelabError


def test_modes():
    images = torch.tensor([[0, 64, 127, 128, 255]], dtype=torch.uint8)
    assert torch.allclose(pixel_transform("continuous")(images), images.float() / 255)
    assert pixel_transform("static")(images).tolist() == [[0, 0, 0, 1, 1]]
    draws = pixel_transform("dynamic")(images.expand(20000, 5), torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(draws.mean(0), images[0].float() / 255, atol=0.015)


def test_dynamic_is_fresh_per_call_but_test_set_is_fixed():
    images = torch.full((1000, 1, 4, 4), 128, dtype=torch.uint8)
    dynamic = pixel_transform("dynamic")
    assert not torch.equal(dynamic(images), dynamic(images))
    assert torch.equal(fixed_test_pixels(images, "dynamic"), fixed_test_pixels(images, "dynamic"))


def test_unknown_mode():
    with pytest.raises(VaelabError, match="choose from: continuous, dynamic, static"):
        pixel_transform("grey")
