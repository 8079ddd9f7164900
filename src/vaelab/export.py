"""A run's encoder and decoder as two ONNX models, so a trained decoder can ship in an app or a web page.

    encoder.onnx   images [N, C, H, W] float32 in [0, 1]  ->  mean [N, d] (+ logvar [N, d] for a VAE)
    decoder.onnx   code [N, d] float32                    ->  images [N, C, H, W] float32 in [0, 1]
    model.json     what the graphs expect: names, shapes, the model and the run they came from

A conditional model (the CVAE) takes its labels in both graphs as a second input, labels [N] int64 (a class
index, or -1 for "no label": the model's unconditional mode), so every row is decoded as the class asked for.

The batch dimension N is dynamic. The graphs are the model in eval mode (BatchNorm's running statistics, no
Dropout), traced by torch's TorchScript-based exporter: it needs only torch and exports a small model in a
fraction of a second, where the newer torch.export-based one needs onnxscript and takes seconds per graph.
The folder appears complete or not at all: files are written to a staging folder that is renamed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from vaelab.errors import VaelabError
from vaelab.runs import fsync_folder, read_config
from vaelab.runs import load as load_run

OPSET = 17  # ONNX opset: onnxruntime 1.14+ and onnxruntime-web run it
FILES = ("encoder.onnx", "decoder.onnx", "model.json")


class EncoderGraph(nn.Module):
    """images (and labels, for a conditional model) -> the posterior's mean (and log-variance, where it has one)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        posterior = self.model.posterior(images, labels)
        return posterior.mean if posterior.logvar is None else (posterior.mean, posterior.logvar)


class DecoderGraph(nn.Module):
    """codes (and labels, for a conditional model) -> images in [0, 1] (the decoder's mean, sigmoid included)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, code: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.decode(code, labels)


def export_graph(module: nn.Module, examples: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                 output_names: list[str]) -> None:
    """Trace `module` on `examples` (one per input name) into an ONNX file whose batch dimension is dynamic."""
    batch = {0: "batch"}
    with warnings.catch_warnings():  # torch warns that this exporter is no longer its default
        warnings.simplefilter("ignore")
        torch.onnx.export(module, examples, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes={name: batch for name in [*input_names, *output_names]}, opset_version=OPSET,
                          dynamo=False)


def refuse_taken(out: Path) -> None:
    if out.is_symlink() and not out.exists() or out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VaelabError(f"{out} already exists and is not empty; choose a new folder for the ONNX files")


def export_onnx(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run's encoder and decoder as ONNX models into the new folder `out`; returns `out`."""
    try:
        import onnx
    except ImportError:
        raise VaelabError("ONNX export needs the onnx package: pip install 'vaelab[export]'") from None
    run_dir, out = Path(run_dir), Path(out)
    refuse_taken(out)
    config, _ = read_config(run_dir)
    model = load_run(run_dir).to(memory_format=torch.contiguous_format)  # eval mode
    c, h, w = config.model.image_shape
    images, code = torch.rand(2, c, h, w), torch.randn(2, config.model.latent_dim)
    # a conditional model's labels are an input of both graphs (traced with a class and with "no label")
    labels = (torch.tensor([min(1, config.model.n_classes - 1), -1]),) if model.takes_labels else ()
    label_inputs = ["labels"] if labels else []
    with torch.no_grad():
        has_logvar = model.posterior(images, *labels).logvar is not None
    encoder_outputs = ["mean", "logvar"] if has_logvar else ["mean"]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.export-{os.getpid()}"  # hidden beside `out`; removed on failure
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        export_graph(EncoderGraph(model), (images, *labels), staging / "encoder.onnx", ["images", *label_inputs],
                     encoder_outputs)
        export_graph(DecoderGraph(model), (code, *labels), staging / "decoder.onnx", ["code", *label_inputs],
                     ["images"])
        for name in FILES[:2]:
            onnx.checker.check_model(str(staging / name))
        label_shape = {"labels": ["batch"]} if labels else {}
        description = {
            "run": str(run_dir.resolve()), "model": config.model.model, "arch": config.model.arch,
            "opset": OPSET, "image_shape": [c, h, w], "latent_dim": config.model.latent_dim,
            "encoder": {"file": "encoder.onnx", "input": {"images": ["batch", c, h, w], **label_shape},
                        "outputs": {name: ["batch", config.model.latent_dim] for name in encoder_outputs}},
            "decoder": {"file": "decoder.onnx", "input": {"code": ["batch", config.model.latent_dim], **label_shape},
                        "outputs": {"images": ["batch", c, h, w]}},
            "pixels": "float32 in [0, 1], channels first (NCHW)",
            **({"labels": f"int64 class index 0-{config.model.n_classes - 1}, or -1 for no label"} if labels else {})}
        (staging / "model.json").write_text(json.dumps(description, indent=2) + "\n")
        refuse_taken(out)  # again: something may have written there meanwhile
        if out.exists():
            out.rmdir()  # an empty folder given as --onnx
        staging.rename(out)
        fsync_folder(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
