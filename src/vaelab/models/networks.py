"""Encoder and decoder networks, by architecture name.

`conv` is the book's network layer for layer (Generative Deep Learning, ch. 3):
encoder Conv2d 32/64/64/64, kernel 3, strides 1/2/2/1, 'same' padding,
LeakyReLU(0.3), flatten, dense to the latent; decoder dense to 64x7x7, then
ConvTranspose2d 64/64/32/1 with strides 1/2/2/1 and LeakyReLU(0.3), sigmoid
output. Weights start as Keras does (Glorot-uniform, zero bias) so the book's
curves are reproducible. Decoders return logits; the likelihood applies the
sigmoid, which keeps the Bernoulli loss numerically stable.
"""

from __future__ import annotations

import math

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


class MLPEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], out_features: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), 512), nn.ReLU(),
                                 nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int):
        super().__init__()
        self.image_shape = image_shape
        self.net = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                 nn.Linear(512, math.prod(image_shape)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)


ARCHITECTURES = {"conv": (ConvEncoder, ConvDecoder), "mlp": (MLPEncoder, MLPDecoder)}


def build_networks(arch: str, image_shape: tuple[int, int, int], encoder_outputs: int, latent_dim: int):
    """(encoder, decoder) for an architecture name; the encoder emits `encoder_outputs` numbers."""
    if arch not in ARCHITECTURES:
        raise VaelabError(f"unknown architecture {arch!r}; choose from: {', '.join(ARCHITECTURES)}")
    encoder_cls, decoder_cls = ARCHITECTURES[arch]
    return encoder_cls(image_shape, encoder_outputs), decoder_cls(image_shape, latent_dim)
