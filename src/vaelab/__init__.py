"""vaelab: train, evaluate and explore autoencoders and variational autoencoders on images.

The public API (the CLI calls only these):

    run = vaelab.train(vaelab.preset("book-vae"), "runs/vae")
    vaelab.resume("runs/vae", epochs=10)
    vaelab.evaluate("runs/vae")                      # add iw_samples=1000 for the study's metrics
    vaelab.compare(out="compare")                    # AE vs VAE: the three flaws -> compare/report.html
    vaelab.sweep("0,0.1,1", out="sweep")             # the VAE at each KL weight beta, against the AE
    model = vaelab.load("runs/vae"); z = model.encode(x); x2 = model.decode(z)
    vaelab.export_onnx("runs/vae", "onnx/vae")       # encoder.onnx + decoder.onnx for other runtimes
    vaelab.export_html(["runs/ae", "runs/vae"], "ae-vs-vae.html")  # the explorer as one file, no server
    vaelab.explorer(["runs/ae", "runs/vae"])         # the same page, inline in a notebook
    v = vaelab.attribute_vector("runs/vae", 3, 8)    # mean code of the 8s minus that of the 3s
    strip = vaelab.morph("runs/vae", image_a, image_b, steps=9)   # decoded codes between two images
"""

__version__ = "0.1.0"

from vaelab.arithmetic import attribute_vector, morph  # noqa: E402
from vaelab.compare import compare  # noqa: E402
from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig, preset  # noqa: E402
from vaelab.data import dataset_info, load_dataset  # noqa: E402
from vaelab.errors import VaelabError  # noqa: E402
from vaelab.evaluate import evaluate  # noqa: E402
from vaelab.explore import explore  # noqa: E402
from vaelab.explore.page import explorer, export_html  # noqa: E402
from vaelab.export import export_onnx  # noqa: E402
from vaelab.runs import load  # noqa: E402
from vaelab.sweep import sweep  # noqa: E402
from vaelab.train import resume, train  # noqa: E402

__all__ = ["DataConfig", "ModelConfig", "RunConfig", "TrainConfig", "VaelabError", "attribute_vector", "compare",
           "dataset_info", "evaluate", "explore", "explorer", "export_html", "export_onnx", "load",
           "load_dataset", "morph", "preset", "resume", "sweep", "train"]
