"""Training runs: the loop, checkpoints and per-epoch evaluation."""

from vaelab.train.evaluation import loss_terms
from vaelab.train.loop import TrainingInterrupted, resume, train

__all__ = ["TrainingInterrupted", "loss_terms", "resume", "train"]
