"""Manifold precision on synthetic features whose answer is known."""

import pytest
import torch

from vaelab.metrics.manifold import knn_radii, manifold_precision


def test_radii_are_distances_to_the_kth_other_point():
    points = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert knn_radii(points, k=2).tolist() == [3.0, 2.0, 3.0, 5.0]


def test_samples_from_the_real_distribution_are_inside_and_far_ones_outside():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 8, generator=generator)
    same = torch.randn(1000, 8, generator=generator)
    assert manifold_precision(same, real) > 0.9
    assert manifold_precision(same + 10.0, real) == 0.0
    half = torch.cat([same[:500], same[500:] + 10.0])
    assert manifold_precision(half, real) == pytest.approx(manifold_precision(same[:500], real) / 2)


def test_a_real_point_is_inside_its_own_ball_and_chunking_does_not_matter(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    real = torch.randn(300, 4, generator=generator)
    assert manifold_precision(real, real) == 1.0
    samples = torch.randn(250, 4, generator=generator) * 1.5
    whole = manifold_precision(samples, real)
    monkeypatch.setattr("vaelab.metrics.manifold.CHUNK", 7)
    assert manifold_precision(samples, real) == whole
