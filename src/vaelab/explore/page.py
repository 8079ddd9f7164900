"""`vaelab export --html`: the explorer as one self-contained HTML file, the decoder running in the page.

    page = vaelab.explorer(["runs/ae", "runs/vae"])   # displays inline in a notebook (_repr_html_)
    page.save("ae-vs-vae.html")                       # or vaelab.export_html(runs, "ae-vs-vae.html")

The page is the explorer's own index.html, explore.js and explore.css (one source of truth for the drawing),
with page.js as its source of codes and decodes instead of the server's API. Everything is inlined: a
page opened from file:// may not fetch anything (Chrome's CORS rule), and a Content-Security-Policy of
`default-src 'none'` makes sure it does not.

Each decoder travels as a *program*: the layers torch.fx finds in `model.decoder` (Linear, LayerNorm, ReLU,
LeakyReLU, ConvTranspose2d, eval-mode BatchNorm folded into a per-channel affine, Dropout dropped, the
view to an image), run by decoder.js, a forward pass written for exactly these layers (docs/export.md says
why not onnxruntime-web). Its weights are rounded to 24-bit floats (float32 with the 8 low mantissa bits
rounded off, relative error <= 2^-16) when the decoded pixels stay within PIXEL_TOLERANCE of PyTorch's,
checked here on CHECK_CODES codes of the prior with this same program, else kept as float32. The bytes
are split into planes (all first bytes, all second bytes, ...), which deflate compresses far better, and
the page inflates them with the browser's own DecompressionStream.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from vaelab.data import fixed_test_pixels, load_data
from vaelab.errors import VaelabError
from vaelab.explore.served import LATENT_BOUND, latent_view, run_id, test_codes
from vaelab.runs import fsync_folder, load, read_config

STATIC = Path(__file__).parent / "static"
DEFAULT_CODES = 2000  # test codes drawn per run: the scatter's shape, at ~40 kB of JSON per 2-D run
PIXEL_TOLERANCE = 1e-4  # max |page pixel - PyTorch pixel|, pixels in [0, 1]
CHECK_CODES = 1000  # prior codes the export checks the rounded weights on
CODE_SEED = 0  # which test images' codes the page holds: the first N of one seeded permutation
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:"


# ---- the decoder as a program: ops over named weights -------------------------------------------------------

@dataclass
class Program:
    """What decoder.js runs: `ops` in order, each naming its weights, over an input of `inputs` numbers
    (the code, then a one-hot label for a conditional model) to an image of `image_shape`."""
    ops: list[dict]
    weights: dict[str, torch.Tensor]
    inputs: int
    image_shape: tuple[int, int, int]


def channel_affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = x * scale + shift per channel (folded in float64)."""
    scale = norm.weight.double() / (norm.running_var.double() + norm.eps).sqrt()
    shift = norm.bias.double() - norm.running_mean.double() * scale
    return scale.float(), shift.float()


def module_op(name: str, module: nn.Module, weights: dict[str, torch.Tensor]) -> dict | None:
    """The op of one leaf module (None: nothing to do in eval mode), its tensors added to `weights`."""
    def keep(**tensors: torch.Tensor) -> dict[str, str]:
        for key, tensor in tensors.items():
            weights[f"{name}.{key}"] = tensor.detach().float().cpu().contiguous()
        return {key: f"{name}.{key}" for key in tensors}

    if isinstance(module, nn.Linear):
        return {"op": "linear", "in": module.in_features, "out": module.out_features,
                **keep(weight=module.weight, bias=module.bias)}
    if isinstance(module, nn.LayerNorm):
        return {"op": "layer_norm", "size": math.prod(module.normalized_shape), "eps": module.eps,
                **keep(weight=module.weight, bias=module.bias)}
    if isinstance(module, nn.ConvTranspose2d):
        if module.groups != 1 or module.dilation != (1, 1) or module.bias is None:
            raise VaelabError(f"decoder layer {name}: the page decodes ConvTranspose2d without groups, dilation "
                              f"or a missing bias only")
        return {"op": "conv_transpose2d", "in": module.in_channels, "out": module.out_channels,
                "kernel": list(module.kernel_size), "stride": list(module.stride), "padding": list(module.padding),
                "output_padding": list(module.output_padding), **keep(weight=module.weight, bias=module.bias)}
    if isinstance(module, nn.BatchNorm2d):
        scale, shift = channel_affine(module)
        return {"op": "channel_affine", "channels": module.num_features, **keep(scale=scale, shift=shift)}
    if isinstance(module, nn.ReLU):
        return {"op": "relu"}
    if isinstance(module, nn.LeakyReLU):
        return {"op": "leaky_relu", "slope": module.negative_slope}
    if isinstance(module, nn.Dropout):
        return None  # the identity in eval mode
    raise VaelabError(f"decoder layer {name} ({type(module).__name__}) has no counterpart in the page's decoder "
                      f"(docs/export.md lists the layers it runs)")


def decoder_program(model: nn.Module) -> Program:
    """The model's decoder (eval mode) as a Program, read from its torch.fx graph, sigmoid appended
    (model.decode is sigmoid(decoder(...)))."""
    decoder = model.decoder
    try:
        graph = fx.symbolic_trace(decoder).graph
    except Exception as error:  # fx raises many kinds for code it cannot trace
        raise VaelabError(f"the decoder ({type(decoder).__name__}) cannot be traced for the page: {error}") from None
    modules = dict(decoder.named_modules())
    ops, weights = [], {}
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op == "call_module":
            op = module_op(node.target, modules[node.target], weights)
        elif node.op == "call_method" and node.target in ("view", "reshape") and node.args[1] == -1:
            op = {"op": "reshape", "shape": [int(size) for size in node.args[2:]]}
        else:
            raise VaelabError(f"the decoder step {node.op} {node.target} has no counterpart in the page's decoder")
        if op is not None:
            ops.append(op)
    ops.append({"op": "sigmoid"})
    classes = model.classes if model.takes_labels else 0
    return Program(ops, weights, model.config.latent_dim + classes, tuple(model.config.image_shape))


def decoder_inputs(model: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The decoder network's input rows: the code, then a conditional model's one-hot label (zeros for -1)."""
    return torch.cat([z, model.one_hot(labels, len(z), z)], 1) if model.takes_labels else z


def run_program(program: Program, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The program in PyTorch, op by op as decoder.js runs it: checks the program (and rounded weights)
    before they go into a page."""
    w = program.weights if weights is None else weights
    for op in program.ops:
        kind = op["op"]
        if kind == "linear":
            x = F.linear(x, w[op["weight"]], w[op["bias"]])
        elif kind == "layer_norm":
            x = F.layer_norm(x, (op["size"],), w[op["weight"]], w[op["bias"]], op["eps"])
        elif kind == "conv_transpose2d":
            x = F.conv_transpose2d(x, w[op["weight"]], w[op["bias"]], op["stride"], op["padding"],
                                   op["output_padding"])
        elif kind == "channel_affine":
            x = x * w[op["scale"]][:, None, None] + w[op["shift"]][:, None, None]
        else:
            x = UNARY[kind](x, op)
    return x


UNARY: dict[str, Callable[[torch.Tensor, dict], torch.Tensor]] = {
    "relu": lambda x, op: F.relu(x),
    "leaky_relu": lambda x, op: F.leaky_relu(x, op["slope"]),
    "reshape": lambda x, op: x.reshape(-1, *op["shape"]),
    "sigmoid": lambda x, op: torch.sigmoid(x),
}


# ---- weights as bytes: 24-bit floats or float32, byte planes, deflate -----------------------------------------

def rounded_to_24_bits(tensor: torch.Tensor) -> torch.Tensor:
    """float32 with the low 8 mantissa bits rounded off (to nearest, ties away): what 3 bytes can hold."""
    bits = tensor.float().contiguous().view(torch.int32).numpy().view(np.uint32).astype(np.uint64)
    kept = ((bits + 0x80) & 0xFFFFFF00).astype(np.uint32)
    return torch.from_numpy(kept.view(np.float32).copy()).reshape(tensor.shape)


def packed_weights(weights: dict[str, torch.Tensor], byte_count: int) -> str:
    """All weights (in `weights` order) as the top `byte_count` bytes of each float32, byte planes from the
    most significant, deflated and base64-encoded."""
    flat = np.concatenate([t.numpy().ravel() for t in weights.values()]).astype("<f4")
    planes = flat.view(np.uint8).reshape(-1, 4)[:, ::-1][:, :byte_count]  # little-endian: byte 3 first
    return base64.b64encode(zlib.compress(np.ascontiguousarray(planes.T).tobytes(), 9)).decode("ascii")


def checked_weights(model: nn.Module, program: Program) -> tuple[dict[str, torch.Tensor], int, float]:
    """The weights the page gets (24-bit if they keep every pixel within PIXEL_TOLERANCE, else float32),
    their bytes per number, and the largest pixel difference from model.decode the check found."""
    generator = torch.Generator(model.device).manual_seed(CODE_SEED)
    z = model.prior.sample(CHECK_CODES, generator).float().cpu()
    classes = model.classes if model.takes_labels else 0
    labels = torch.arange(CHECK_CODES) % (classes + 1) - 1 if classes else None  # every class and "no label"
    with torch.inference_mode():
        expected = model.decode(z.to(model.device), None if labels is None else labels.to(model.device)).cpu()
        x = decoder_inputs(model, z, labels)
        exact = (run_program(program, x) - expected).abs().max().item()
        if exact > PIXEL_TOLERANCE:
            raise VaelabError(f"the page's decoder program differs from the model by {exact:.1e} per pixel "
                              f"(more than {PIXEL_TOLERANCE:g}): this decoder cannot be exported to a page")
        short = {name: rounded_to_24_bits(t) for name, t in program.weights.items()}
        error = (run_program(program, x, short) - expected).abs().max().item()
    return (short, 3, error) if error <= PIXEL_TOLERANCE else (program.weights, 4, exact)


# ---- one run's part of the page ---------------------------------------------------------------------------------

@dataclass
class PageRun:
    info: dict  # what the served API's /api/runs says about a run
    view: dict  # what its /codes says
    decoder: dict  # the program, its packed weights and how they were stored
    weight_count: int
    bytes_per_weight: int
    max_pixel_error: float  # of the stored weights against model.decode, on CHECK_CODES prior codes


def page_run(run_dir: Path, run_id: str, codes: int, datasets: dict) -> PageRun:
    """One run's part of the page; `datasets` holds the datasets loaded so far (each is loaded once)."""
    config, _ = read_config(run_dir)
    if config.model.latent_dim < 2:
        raise VaelabError(f"{run_dir}: the explorer shows a plane of the latent space, which needs "
                          f"latent_dim >= 2 (this run has {config.model.latent_dim})")
    model = load(run_dir).cpu().eval()
    if config.data not in datasets:
        datasets[config.data] = load_data(config.data)
    data = datasets[config.data]
    if tuple(data.image_shape) != tuple(config.model.image_shape):
        raise VaelabError(f"{run_dir}: {data.name} images are {data.image_shape}, but the model was "
                          f"trained on {tuple(config.model.image_shape)}")
    chosen = torch.randperm(len(data.test_images), generator=torch.Generator().manual_seed(CODE_SEED))[:codes]
    chosen = chosen.sort().values  # test-set order, so a page's codes are a subset of a larger page's
    test_x = fixed_test_pixels(data.test_images, config.data.pixels)[chosen]
    return model_page_run(model, run_id, run_dir.name, data.name, list(data.classes), test_x,
                          data.test_labels[chosen])


def model_page_run(model: nn.Module, run_id: str, name: str, dataset: str, classes: list[str],
                   test_x: torch.Tensor, test_labels: torch.Tensor) -> PageRun:
    """A model's part of the page: the codes of `test_x` (pixels as the model takes them) and its decoder."""
    view = latent_view(model, test_codes(model, test_x), test_labels, classes)
    program = decoder_program(model)
    weights, byte_count, error = checked_weights(model, program)
    config = model.config
    info = {"id": run_id, "name": name, "model": config.model, "arch": config.arch,
            "latent_dim": config.latent_dim, "image_shape": list(config.image_shape), "dataset": dataset,
            "n_test": len(test_x), "classes": classes, "classifier": None,
            "classifier_reason": "an exported page has no reference classifier (vaelab explore has)",
            "conditional": model.takes_labels}
    decoder = {"ops": program.ops, "inputs": program.inputs, "image_shape": list(program.image_shape),
               "weights": [[key, list(t.shape)] for key, t in weights.items()],
               "bytes_per_weight": byte_count, "packed": packed_weights(weights, byte_count)}
    return PageRun(info, view, decoder, sum(t.numel() for t in weights.values()), byte_count, error)


# ---- the page ------------------------------------------------------------------------------------------------

def inline_script(source: str) -> str:
    if re.search(r"</script", source, re.IGNORECASE):
        raise ValueError("a script to inline contains '</script'")
    return f"<script>\n{source}</script>"


def page_html(runs: list[PageRun], title: str) -> str:
    """index.html with its style and scripts inlined, page.js as the source and the runs as JSON."""
    page = (STATIC / "index.html").read_text()
    data = json.dumps({"runs": [{"info": r.info, "view": r.view, "decoder": r.decoder} for r in runs],
                       "limits": {"latent_bound": LATENT_BOUND}}, separators=(",", ":"))
    data = data.replace("<", "\\u003c")  # no "</script>" or "<!--" can end the data block early
    style = (STATIC / "explore.css").read_text()
    replacements = {
        '<link rel="stylesheet" href="/static/explore.css">': f"<style>\n{style}</style>",
        '<link rel="icon" href="data:,">': f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        "<title>vaelab explore</title>": f"<title>{html.escape(title)}</title>",
        '<script src="/static/server.js"></script>': (
            f'<script type="application/json" id="vaelab-page-data">{data}</script>\n  '
            + "\n  ".join(inline_script((STATIC / name).read_text()) for name in ("decoder.js", "page.js"))),
        '<script src="/static/explore.js"></script>': inline_script((STATIC / "explore.js").read_text()),
    }
    for old, new in replacements.items():
        if old not in page:
            raise ValueError(f"index.html no longer has {old!r}: page.py must follow it")
        page = page.replace(old, new)
    leftover = re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|#)[^"']*""", page.split('id="vaelab-page-data"')[0])
    if leftover:
        raise ValueError(f"the page would still load {leftover}")
    return page


def writable_page(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise VaelabError(f"{path} is a folder; name the .html file to write")
    if not path.parent.is_dir():
        raise VaelabError(f"{path.parent} does not exist: make it first, or name a file in an existing folder")
    return path


class Explorer:
    """The exported explorer page for some runs: `.html`, `.save(path)`, and inline in a notebook."""

    def __init__(self, runs: list[PageRun]):
        self.runs = runs
        self.html = page_html(runs, "vaelab · " + " vs ".join(r.info["name"] for r in runs))

    def save(self, path: str | Path) -> Path:
        """Write the page atomically: the file is complete or absent, whatever stops the process."""
        path = writable_page(path)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(self.html)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        fsync_folder(path.parent)
        return path

    def summary(self) -> str:
        """One line per run: how its decoder was stored, and the page's size."""
        lines = [f"{r.info['name']}: {r.info['arch']} decoder, {r.weight_count:,} weights as "
                 f"{8 * r.bytes_per_weight}-bit floats (max pixel difference from PyTorch {r.max_pixel_error:.1e}), "
                 f"{r.info['n_test']} test codes" for r in self.runs]
        return "\n".join(lines + [f"page: {len(self.html.encode()) / 1e6:.2f} MB"])

    def _repr_html_(self) -> str:
        """The page in a sandboxed iframe (its scripts run, but cannot reach the notebook)."""
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
                f'style="width:100%;height:{360 + 620 * math.ceil(len(self.runs) / 2)}px;border:0"></iframe>')


def explorer(runs: list[str | Path] | str | Path, codes: int = DEFAULT_CODES) -> Explorer:
    """The explorer page for these run folders (each run's decoder, `codes` of its test codes)."""
    run_dirs = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not run_dirs:
        raise VaelabError("name at least one run folder to export")
    if codes < 1:
        raise VaelabError(f"--codes must be at least 1, got {codes}")
    taken: dict[str, PageRun] = {}
    datasets: dict = {}
    for run_dir in run_dirs:
        rid = run_id(run_dir.name, taken)
        taken[rid] = page_run(run_dir, rid, codes, datasets)
    return Explorer(list(taken.values()))


def export_html(runs: list[str | Path] | str | Path, out: str | Path, codes: int = DEFAULT_CODES) -> Explorer:
    """Write the explorer page for these runs to `out` (one self-contained HTML file); returns it."""
    writable_page(out)  # before minutes of loading, not after
    page = explorer(runs, codes)
    page.save(out)
    return page
