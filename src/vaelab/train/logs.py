"""Training logs for other tools, beside metrics.jsonl: `--log tensorboard[=DIR]`.

The loop calls a logger at three points: `step` after each optimiser step (the loss terms, kept as tensors, so
a step costs no device sync), `epoch` after each epoch's test pass (its metrics and pictures), and `commit`
after each checkpoint. Nothing is written before the checkpoint it belongs to is committed: a run folder
never logs steps that a resume would train again, and a new run's log appears with the run folder. Every
value is logged against the run's optimiser step count, so a resumed run continues the same curves.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vaelab.errors import VaelabError

GRID_IMAGES = 8  # test images (and samples) per picture
GRID_SEED = 1234  # the samples' codes: the same every epoch, so the pictures show the model changing


def parse_log(text: str) -> tuple[str, str | None]:
    """'tensorboard' or 'tensorboard=DIR' -> (kind, DIR or None)."""
    kind, _, folder = text.partition("=")
    if kind not in LOGGERS:
        raise VaelabError(f"unknown log {kind!r}; choose from: {', '.join(LOGGERS)} (e.g. --log tensorboard=DIR)")
    if _ and not folder:
        raise VaelabError(f"--log {text}: give a folder after '=', or leave '=' out for the run folder's {kind}/")
    return kind, folder or None


def grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """[N, C, H, W] in [0, 1] -> one [C, rows*(H+1)-1, columns*(W+1)-1] picture, grey lines between images."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    picture = torch.full((c, rows * (h + 1) - 1, columns * (w + 1) - 1), 0.5)
    for i, image in enumerate(images):
        r, k = divmod(i, columns)
        picture[:, r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = image
    return picture


class TensorBoardLog:
    """TensorBoard event files: scalars `step/<term>` (each step's training batch), `train/<term>` and
    `test/<term>` (epoch means, as in metrics.jsonl), `speed/images_per_s`, and per epoch the pictures
    `reconstructions` (test images above their reconstructions) and `samples`."""

    def __init__(self, folder: str | None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise VaelabError("--log tensorboard needs the tensorboard package: pip install 'vaelab[tensorboard]'") \
                from None
        self.writer_class = SummaryWriter
        self.folder = Path(folder) if folder else None
        self.writer = None
        self.steps: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.epochs: list[tuple[int, dict[str, float], torch.Tensor, torch.Tensor]] = []

    def step(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        self.steps.append((step, {name: value.detach() for name, value in terms.items()}))

    @torch.no_grad()
    def epoch(self, step: int, record: dict, model: torch.nn.Module, test_x: torch.Tensor) -> None:
        """An epoch's metrics (a metrics.jsonl record) and pictures of the model, drawn in eval mode."""
        scalars = {f"{part}/{name}": value for part in ("train", "test") for name, value in record[part].items()}
        scalars["speed/images_per_s"] = record["images_per_s"]
        was_training = model.training
        model.eval()
        x = test_x[:GRID_IMAGES].to(next(model.parameters()).device)
        generator = torch.Generator(device=x.device).manual_seed(GRID_SEED)
        reconstructions = torch.cat([x, model.reconstruct(x)]).float().cpu()
        samples = model.sample(GRID_IMAGES, generator).float().cpu()
        model.train(was_training)
        self.epochs.append((step, scalars, grid(reconstructions, len(x)), grid(samples, GRID_IMAGES)))

    def commit(self, run_dir: Path) -> None:
        """Write what the checkpoint just committed (called after every checkpoint, on the main process)."""
        if not (self.steps or self.epochs):
            return
        if self.writer is None:  # purge_step: a resumed run drops what an earlier process logged past its checkpoint
            first = min([step for step, _ in self.steps] + [epoch[0] for epoch in self.epochs])
            self.writer = self.writer_class(str(self.folder or run_dir / "tensorboard"), purge_step=first)
        if self.steps:
            names = sorted(self.steps[0][1])
            values = torch.stack([torch.stack([terms[n].float() for n in names]) for _, terms in self.steps]).tolist()
            for (step, _), row in zip(self.steps, values):
                for name, value in zip(names, row):
                    self.writer.add_scalar(f"step/{name}", value, step)
        for step, scalars, reconstructions, samples in self.epochs:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.add_image("reconstructions", reconstructions, step)
            self.writer.add_image("samples", samples, step)
        self.writer.flush()
        self.steps, self.epochs = [], []

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


LOGGERS = {"tensorboard": TensorBoardLog}


def make_logger(logs: str | None) -> TensorBoardLog | None:
    """The logger `--log` asks for, or None (then the loop does no logging work at all)."""
    if logs is None:
        return None
    kind, folder = parse_log(logs)
    return LOGGERS[kind](folder)
