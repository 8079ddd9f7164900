"""Encoder and decoder networks, by architecture name.

`conv` is the book's network layer for layer (Generative Deep Learning, ch. 3):
encoder Conv2d 32/64/64/64, kernel 3, strides 1/2/2/1, 'same' padding,
LeakyReLU(0.3), flatten, dense to the latent; decoder dense to 64x7x7, then
ConvTranspose2d 64/64/32/1 with strides 1/2/2/1 and LeakyReLU(0.3), sigmoid
output. Weights start as Keras does (Glorot-uniform, zero bias) so the book's
curves are reproducible. Decoders return logits; the likelihood applies the
sigmoid, which keeps the Bernoulli loss numerically stable.

`faces` is the book's second network, its CelebA faces VAE (ch. 3, 128x128 RGB):
four Conv2d 32/64/64/64, kernel 3, all stride 2, each followed by BatchNorm,
LeakyReLU(0.3) and Dropout(0.25); the decoder mirrors it (dense to 64 x H/16 x
W/16, ConvTranspose2d 64/64/32/C, stride 2, BatchNorm + LeakyReLU + Dropout after
all but the last). BatchNorm keeps running statistics (buffers, saved with the
weights) and Dropout draws noise, so the model must be in eval() mode wherever it
is evaluated rather than trained.

`mlp` is a pixels-512-256 ReLU MLP (PyTorch's default init), mirrored by the
decoder: about a tenth of the conv net's cost per image. `mlp-ln` adds a
LayerNorm before each hidden ReLU, which the study trains to better codes in
the same minutes (docs/training.md). LayerNorm has no running statistics, so
unlike BatchNorm a model means the same in training and evaluation.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from vaelab.errors import VaelabError

LEAKY_SLOPE = 0.3  # Keras' LeakyReLU default, as the book uses it


def keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, Keras' defaults."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class ConvEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], out_features: int):
        super().__init__()
        channels, height, width = image_shape
        if height % 4 or width % 4:
            raise VaelabError(f"the conv architecture needs image sides divisible by 4, got {height}x{width}")
        layers, in_ch = [], channels
        for out_ch, stride in zip((32, 64, 64, 64), (1, 2, 2, 1)):
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.LeakyReLU(LEAKY_SLOPE)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(64 * (height // 4) * (width // 4), out_features)
        keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int):
        super().__init__()
        channels, height, width = image_shape
        self.grid = (64, height // 4, width // 4)
        self.project = nn.Linear(latent_dim, math.prod(self.grid))
        layers, in_ch = [], 64
        for out_ch, stride in zip((64, 64, 32, channels), (1, 2, 2, 1)):
            # output_padding=1 makes a stride-2 transpose exactly double the size, like Keras 'same'
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 3, stride=stride, padding=1, output_padding=stride - 1),
                       nn.LeakyReLU(LEAKY_SLOPE)]
            in_ch = out_ch
        self.deconv = nn.Sequential(*layers[:-1])  # the last layer is followed by the sigmoid, not LeakyReLU
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.project(z).view(-1, *self.grid))


def keras_batch_norm(channels: int) -> nn.BatchNorm2d:
    """Keras' BatchNormalization defaults: running averages with momentum 0.99 (torch's 0.01), epsilon 1e-3."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


FACES_FILTERS = (32, 64, 64, 64)
FACES_DROPOUT = 0.25


def faces_block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, keras_batch_norm(channels), nn.LeakyReLU(LEAKY_SLOPE), nn.Dropout(FACES_DROPOUT)]


class FacesEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], out_features: int):
        super().__init__()
        channels, height, width = image_shape
        if height % 16 or width % 16:
            raise VaelabError(f"the faces architecture needs image sides divisible by 16, got {height}x{width}")
        layers, in_ch = [], channels
        for out_ch in FACES_FILTERS:
            layers += faces_block(nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), out_ch)
            in_ch = out_ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(in_ch * (height // 16) * (width // 16), out_features)
        keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FacesDecoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int):
        super().__init__()
        channels, height, width = image_shape
        self.grid = (FACES_FILTERS[-1], height // 16, width // 16)
        self.project = nn.Linear(latent_dim, math.prod(self.grid))
        layers, in_ch = [], self.grid[0]
        for out_ch in FACES_FILTERS[-2::-1]:  # 64, 64, 32
            layers += faces_block(nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1), out_ch)
            in_ch = out_ch
        layers.append(nn.ConvTranspose2d(in_ch, channels, 3, stride=2, padding=1, output_padding=1))
        self.deconv = nn.Sequential(*layers)
        keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.project(z).view(-1, *self.grid))


MLP_WIDTHS = (512, 256)  # hidden layers of the encoder; the decoder mirrors them


def mlp_layers(sizes: tuple[int, ...], layer_norm: bool) -> list[nn.Module]:
    """Linear layers between consecutive sizes with a ReLU after each but the last; with `layer_norm`, each
    hidden layer's pre-activations are normalised first (LayerNorm, Ba et al. 2016)."""
    layers: list[nn.Module] = []
    for i, (size_in, size_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(size_in, size_out))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(size_out), nn.ReLU()] if layer_norm else [nn.ReLU()]
    return layers


class MLPEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], out_features: int, layer_norm: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(),
                                 *mlp_layers((math.prod(image_shape), *MLP_WIDTHS, out_features), layer_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, layer_norm: bool = False):
        super().__init__()
        self.image_shape = image_shape
        self.net = nn.Sequential(*mlp_layers((latent_dim, *MLP_WIDTHS[::-1], math.prod(image_shape)), layer_norm))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)


ARCHITECTURES = {"conv": (ConvEncoder, ConvDecoder), "faces": (FacesEncoder, FacesDecoder),
                 "mlp": (MLPEncoder, MLPDecoder),
                 "mlp-ln": (partial(MLPEncoder, layer_norm=True), partial(MLPDecoder, layer_norm=True))}


def build_networks(arch: str, image_shape: tuple[int, int, int], encoder_outputs: int, latent_dim: int):
    """(encoder, decoder) for an architecture name; the encoder emits `encoder_outputs` numbers."""
    if arch not in ARCHITECTURES:
        raise VaelabError(f"unknown architecture {arch!r}; choose from: {', '.join(ARCHITECTURES)}")
    encoder_cls, decoder_cls = ARCHITECTURES[arch]
    return encoder_cls(image_shape, encoder_outputs), decoder_cls(image_shape, latent_dim)
