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
@pytest.mark.parametrize("arch", ["conv", "mlp", "mlp-ln"])
@pytest.mark.parametrize("latent_dim", [1, 2, 16])
def test_shapes(model, arch, latent_dim):
    m = build_model(ModelConfig(model=model, arch=arch, latent_dim=latent_dim))
    x = torch.rand(3, 1, 28, 28)
    posterior = m.posterior(x)
    assert posterior.mean.shape == (3, latent_dim)
    assert posterior.has_density == (model == "vae")
    assert m.decode(m.encode(x)).shape == (3, 1, 28, 28)
    assert m.reconstruct(x).min() >= 0 and m.reconstruct(x).max() <= 1
    assert m.sample(5).shape == (5, 1, 28, 28)
    assert posterior.sample().shape == (3, latent_dim)
    assert posterior.sample(4, torch.Generator().manual_seed(0)).shape == (4, 3, latent_dim)
    assert m.prior.sample(6).shape == (6, latent_dim) and m.prior.grid(5).shape[1:] == (5, latent_dim)
    assert m.device == torch.device("cpu")


def test_mlp_sizes():
    m = build_model(ModelConfig(model="ae", arch="mlp", latent_dim=2))
    widths = [layer.out_features for layer in m.encoder.modules() if isinstance(layer, torch.nn.Linear)]
    assert widths == [512, 256, 2]


def test_the_mlp_keeps_its_weight_names_and_mlp_ln_normalises_every_hidden_layer():
    """Run folders of the plain MLP saved before mlp-ln existed must still load: same names, same shapes."""
    names = {k: tuple(v.shape) for k, v in build_model(ModelConfig(model="vae", arch="mlp")).state_dict().items()}
    assert names == {"encoder.net.1.weight": (512, 784), "encoder.net.1.bias": (512,),
                     "encoder.net.3.weight": (256, 512), "encoder.net.3.bias": (256,),
                     "encoder.net.5.weight": (4, 256), "encoder.net.5.bias": (4,),
                     "decoder.net.0.weight": (256, 2), "decoder.net.0.bias": (256,),
                     "decoder.net.2.weight": (512, 256), "decoder.net.2.bias": (512,),
                     "decoder.net.4.weight": (784, 512), "decoder.net.4.bias": (784,)}
    m = build_model(ModelConfig(model="vae", arch="mlp-ln"))
    for net, widths in ((m.encoder.net, [512, 256]), (m.decoder.net, [256, 512])):
        kinds = [type(layer).__name__ for layer in net if not isinstance(layer, torch.nn.Flatten)]
        assert kinds == ["Linear", "LayerNorm", "ReLU"] * 2 + ["Linear"]
        assert [layer.normalized_shape[0] for layer in net if isinstance(layer, torch.nn.LayerNorm)] == widths
    # each hidden layer's pre-activations have mean 0 and variance 1 over its units, whatever the input's scale
    hidden = m.encoder.net[:3](torch.rand(5, 1, 28, 28) * 100)
    assert torch.allclose(hidden.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(hidden.var(1, unbiased=False), torch.ones(5), atol=1e-3)


def test_other_image_sizes_and_bad_ones():
    m = build_model(ModelConfig(model="vae", arch="conv", image_shape=(3, 32, 32)))
    assert m.reconstruct(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(VaelabError, match="divisible by 4, got 30x30"):
        build_model(ModelConfig(arch="conv", image_shape=(1, 30, 30)))


def test_ae_samples_from_its_code_box():
    m = build_model(ModelConfig(model="ae", arch="mlp"))
    m.code_low.copy_(torch.tensor([-3.0, 10.0]))
    m.code_high.copy_(torch.tensor([-1.0, 11.0]))
    z = m.prior.sample(1000)
    assert (z[:, 0] >= -3).all() and (z[:, 0] <= -1).all() and (z[:, 1] >= 10).all() and (z[:, 1] <= 11).all()
    x = torch.rand(50, 1, 28, 28)
    m.fit_prior(x)
    codes = m.encode(x)
    assert torch.equal(m.code_low, codes.min(0).values) and torch.equal(m.code_high, codes.max(0).values)


@pytest.mark.parametrize("field,value,message", [("model", "gan", "unknown model 'gan'; choose from: ae, vae"),
                                                 ("arch", "resnet",
                                                  "unknown architecture 'resnet'; choose from: conv, faces, mlp"),
                                                 ("likelihood", "poisson", "choose from: bernoulli, gaussian")])
def test_unknown_names(field, value, message):
    with pytest.raises(VaelabError, match=message):
        build_model(ModelConfig(**{field: value}))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_conv_takes_any_channel_count_and_sides_divisible_by_4(channels):
    m = build_model(ModelConfig(model="vae", arch="conv", image_shape=(channels, 36, 20)))
    assert m.reconstruct(torch.rand(2, channels, 36, 20)).shape == (2, channels, 36, 20)
    assert m.sample(3).shape == (3, channels, 36, 20)


def faces_model(image_shape=(3, 128, 128)):
    return build_model(ModelConfig(model="vae", arch="faces", latent_dim=200, image_shape=image_shape))


def count_buffers(module):
    return sum(b.numel() for name, b in module.named_buffers() if not name.endswith("num_batches_tracked"))


def test_book_faces_parameter_counts():
    """The Keras summaries of the book's faces VAE (GDL_code models/VAE.py with 03_05_vae_faces_train's settings:
    128x128x3, filters 32/64/64/64, z_dim 200, batch norm and dropout): encoder 1,732,944 total of which 448
    non-trainable (BatchNorm's moving mean and variance), decoder 917,123 total of which 320 non-trainable."""
    m = faces_model()
    assert (count(m.encoder), count_buffers(m.encoder)) == (1_732_496, 448)
    assert (count(m.decoder), count_buffers(m.decoder)) == (916_803, 320)


def test_book_faces_layers_and_shapes():
    m = faces_model()
    convs = [c for c in m.encoder.modules() if isinstance(c, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride[0], c.kernel_size[0]) for c in convs] == [(32, 2, 3), (64, 2, 3), (64, 2, 3),
                                                                               (64, 2, 3)]
    deconvs = [c for c in m.decoder.modules() if isinstance(c, torch.nn.ConvTranspose2d)]
    assert [(c.out_channels, c.stride[0]) for c in deconvs] == [(64, 2), (64, 2), (32, 2), (3, 2)]
    kinds = [type(layer).__name__ for layer in m.decoder.deconv]
    assert kinds[-1] == "ConvTranspose2d" and kinds.count("BatchNorm2d") == kinds.count("Dropout") == 3
    assert {d.p for d in m.modules() if isinstance(d, torch.nn.Dropout)} == {0.25}
    m.eval()
    x = torch.rand(2, 3, 128, 128)
    assert m.encoder.features(x).shape == (2, 64 * 8 * 8)  # the book's (None, 8, 8, 64) before flattening
    assert m.posterior(x).mean.shape == (2, 200) and m.reconstruct(x).shape == (2, 3, 128, 128)


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 32, 48), (3, 64, 64)])
def test_faces_any_size_divisible_by_16(shape):
    m = faces_model(shape).eval()
    assert m.reconstruct(torch.rand(2, *shape)).shape == (2, *shape) and m.sample(2).shape == (2, *shape)


def test_faces_refuses_sides_not_divisible_by_16():
    with pytest.raises(VaelabError, match="faces architecture needs image sides divisible by 16, got 28x28"):
        faces_model((1, 28, 28))


def test_faces_is_deterministic_in_eval_mode_only():
    m = faces_model((3, 32, 32))
    x = torch.rand(4, 3, 32, 32)
    running_mean = m.encoder.features[1].running_mean
    initial = running_mean.clone()
    assert not torch.equal(m.encode(x), m.encode(x))  # dropout in training mode
    assert not torch.equal(running_mean, initial)  # and BatchNorm's statistics move
    trained = running_mean.clone()
    m.eval()
    assert torch.equal(m.encode(x), m.encode(x)) and torch.equal(running_mean, trained)


def test_an_ae_fits_its_box_in_eval_mode():
    """Dropout and BatchNorm's batch statistics stay out of the box, and the running statistics do not move."""
    m = build_model(ModelConfig(model="ae", arch="faces", latent_dim=3, image_shape=(3, 16, 16)))
    x = torch.rand(8, 3, 16, 16)
    m.encode(x)
    running_mean = m.encoder.features[1].running_mean.clone()
    m.fit_prior(x)
    assert m.training and torch.equal(m.encoder.features[1].running_mean, running_mean)
    m.eval()
    codes = m.encode(x)
    assert torch.equal(m.code_low, codes.min(0).values) and torch.equal(m.code_high, codes.max(0).values)
