"""Model registry: a name in the config -> the class that implements it.

New models (a beta-VAE, a conditional VAE) register here and the trainer,
checkpointing and evaluation pick them up unchanged: they only call the model
API (`loss`, `encode`, `decode`, ...).
"""

from __future__ import annotations

from vaelab.config import ModelConfig
from vaelab.errors import VaelabError

MODELS: dict[str, type] = {}


def register_model(name: str):
    def add(cls: type) -> type:
        MODELS[name] = cls
        cls.registry_name = name
        return cls
    return add


def build_model(config: ModelConfig):
    import vaelab.models.ae  # noqa: F401  (registers 'ae')
    import vaelab.models.vae  # noqa: F401  (registers 'vae')

    if config.model not in MODELS:
        raise VaelabError(f"unknown model {config.model!r}; choose from: {', '.join(MODELS)}")
    return MODELS[config.model](config)
