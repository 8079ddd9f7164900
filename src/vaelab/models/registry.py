"""Model registry: a name in the config -> the class that implements it.

New models are added here and the trainer,
checkpointing, metrics, report and explorer pick them up unchanged: they only
call the model API (`loss`, `posterior`, `prior`, `decode`, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaelab.errors import VaelabError
from vaelab.models.ae import Autoencoder
from vaelab.models.base import LatentModel
from vaelab.models.cvae import CVAE
from vaelab.models.vae import VAE

if TYPE_CHECKING:
    from vaelab.config import ModelConfig

MODELS: dict[str, type[LatentModel]] = {"ae": Autoencoder, "vae": VAE, "cvae": CVAE}


def model_class(name: str) -> type[LatentModel]:
    if name not in MODELS:
        raise VaelabError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(config: ModelConfig) -> LatentModel:
    return model_class(config.model)(config)
