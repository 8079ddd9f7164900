import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.errors import VaelabError
from vaelab.models import build_model


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_book_conv_parameter_counts():
    ae = build_model(ModelConfig(model="ae", arch="conv", latent_dim=2))
    assert (count(ae.encoder), count(ae.decoder)) == (98_946, 102_017)  # the book's Keras summaries
    vae = build_model(ModelConfig(model="vae", arch="conv", latent_dim=2))
    assert count(vae.encoder) == 98_946 + 6_274  # plus the log-variance head: the book's 105,220


def test_book_conv_layers():
    ae = build_model(ModelConfig(model="ae", arch="conv"))
    convs = [m for m in ae.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride[0], c.kernel_size[0]) for c in convs] == [(32, 1, 3), (64, 2, 3), (64, 2, 3),
                                                                               (64, 1, 3)]
    deconvs = [m for m in ae.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.out_channels, c.stride[0]) for c in deconvs] == [(64, 1), (64, 2), (32, 2), (1, 1)]
    slopes = {m.negative_slope for m in ae.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.3}
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in ae.decoder.modules()) == 3  # none after the last layer


@pytest.mark.parametrize("model", ["ae", "vae"])
@pytest.mark.parametrize("arch", ["conv", "mlp"])
@pytest.mark.parametrize("latent_dim", [1, 2, 16])
def test_shapes(model, arch, latent_dim):
    m = build_model(ModelConfig(model=model, arch=arch, latent_dim=latent_dim))
    x = torch.rand(3, 1, 28, 28)
    mean, logvar = m.posterior(x)
    assert mean.shape == (3, latent_dim)
    assert (logvar is None) == (model == "ae")
    assert m.decode(m.encode(x)).shape == (3, 1, 28, 28)
    assert m.reconstruct(x).min() >= 0 and m.reconstruct(x).max() <= 1
    assert m.sample(5).shape == (5, 1, 28, 28)
    assert m.sample_latent(x).shape == (3, latent_dim)


def test_mlp_sizes():
    m = build_model(ModelConfig(model="ae", arch="mlp", latent_dim=2))
    widths = [layer.out_features for layer in m.encoder.modules() if isinstance(layer, torch.nn.Linear)]
    assert widths == [512, 256, 2]


def test_other_image_sizes_and_bad_ones():
    m = build_model(ModelConfig(model="vae", arch="conv", image_shape=(3, 32, 32)))
    assert m.reconstruct(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(VaelabError, match="divisible by 4, got 30x30"):
        build_model(ModelConfig(arch="conv", image_shape=(1, 30, 30)))


def test_ae_samples_from_its_code_box():
    m = build_model(ModelConfig(model="ae", arch="mlp"))
    m.code_low.copy_(torch.tensor([-3.0, 10.0]))
    m.code_high.copy_(torch.tensor([-1.0, 11.0]))
    z = m.sample_prior(1000)
    assert (z[:, 0] >= -3).all() and (z[:, 0] <= -1).all() and (z[:, 1] >= 10).all() and (z[:, 1] <= 11).all()
    x = torch.rand(50, 1, 28, 28)
    m.fit_prior(x)
    codes = m.encode(x)
    assert torch.equal(m.code_low, codes.min(0).values) and torch.equal(m.code_high, codes.max(0).values)


@pytest.mark.parametrize("field,value,message", [("model", "gan", "unknown model 'gan'; choose from: ae, vae"),
                                                 ("arch", "resnet",
                                                  "unknown architecture 'resnet'; choose from: conv, mlp"),
                                                 ("likelihood", "poisson", "choose from: bernoulli, gaussian")])
def test_unknown_names(field, value, message):
    with pytest.raises(VaelabError, match=message):
        build_model(ModelConfig(**{field: value}))
