"""The faces network (BatchNorm + Dropout) trains, resumes bitwise and evaluates in eval mode, on tiny RGB data."""

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab.runs import read_metrics


def faces_config(epochs):
    return vaelab.preset("book-faces-vae").replace(model={"latent_dim": 8},
                                                   train={"epochs": epochs, "seed": 3, "device": "cpu"})


@pytest.mark.determinism
def test_faces_resume_is_bitwise_identical_with_batchnorm_statistics(rgb_data, tmp_path):
    straight = vaelab.train(faces_config(3), tmp_path / "straight", show_progress=False)
    stopped = vaelab.train(faces_config(1), tmp_path / "stopped", show_progress=False)
    vaelab.resume(stopped, epochs=3, show_progress=False)
    a, b = load_file(straight / "model.safetensors"), load_file(stopped / "model.safetensors")
    assert any(name.endswith("running_var") for name in a)  # the statistics are saved with the weights
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(straight) == [{**m, "seconds": s["seconds"], "images_per_s": s["images_per_s"]}
                                      for m, s in zip(read_metrics(stopped), read_metrics(straight))]


def test_loaded_faces_model_is_in_eval_mode_and_deterministic(rgb_data, tmp_path):
    run = vaelab.train(faces_config(1), tmp_path / "run", show_progress=False)
    model = vaelab.load(run)
    assert not model.training
    x = rgb_data.test_images[:4].float() / 255
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))
    assert model.reconstruct(x).shape == (4, 3, 16, 16)
