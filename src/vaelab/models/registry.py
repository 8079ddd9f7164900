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


def default_r_loss_factor(name: str) -> float:
    """The r_loss_factor a model gets when none is given (the book's: 1 for the AE, 1000 for the VAE); an
    unknown name is reported by `build_model`."""
    import vaelab.models.ae  # noqa: F401  (registers 'ae')
    import vaelab.models.vae  # noqa: F401  (registers 'vae')

    return MODELS[name].default_r_loss_factor if name in MODELS else 1000.0
