"""The exported page's Python side: the decoder read as a program computes model.decode, its weights keep the
pixel bound when rounded to 24 bits, the bytes round-trip, the HTML loads nothing and cannot be broken by a
run's name, and `vaelab export --html` fails in one line, leaving nothing behind."""

from __future__ import annotations

import base64
import json
import shutil
import zlib
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pagekit import LIKELIHOODS, NETWORKS, model_page, random_model, train_run
from torch import nn

from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.explore import page as page_module
from vaelab.explore.page import (
    CSP,
    PIXEL_TOLERANCE,
    checked_weights,
    decoder_inputs,
    decoder_program,
    packed_weights,
    rounded_to_24_bits,
    run_program,
)


def prior_inputs(model, n=64):
    z = model.prior.sample(n, torch.Generator().manual_seed(3))
    labels = torch.arange(n) % (model.classes + 1) - 1 if model.takes_labels else None
    return z, labels


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("model_name, arch, image_shape", NETWORKS)
def test_the_program_decodes_what_pytorch_decodes(model_name, arch, image_shape, likelihood):
    model = random_model(model_name, arch, image_shape, likelihood)
    program = decoder_program(model)
    z, labels = prior_inputs(model)
    with torch.inference_mode():
        expected = model.decode(z, labels)
        got = run_program(program, decoder_inputs(model, z, labels))
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-6  # the same float32 ops, BatchNorm folded in float64
        weights, byte_count, error = checked_weights(model, program)
    assert byte_count == 3 and error <= PIXEL_TOLERANCE  # 24-bit weights keep every network within the bound
    assert program.inputs == model.config.latent_dim + (10 if model.takes_labels else 0)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules() if m in set(model.decoder.modules()))
    assert sum(op["op"] == "channel_affine" for op in program.ops) == norms
    assert not any(op["op"] == "dropout" for op in program.ops) and program.ops[-1] == {"op": "sigmoid"}


def test_24_bit_rounding_is_round_to_nearest_of_16_significant_bits():
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(10_000, generator=generator) * 10.0 ** torch.randint(-8, 8, (10_000,),
                                                                                   generator=generator),
                   torch.tensor([0.0, -0.0, 1.0, -2.5, 3.4e38])])
    rounded = rounded_to_24_bits(x)
    assert (rounded.view(torch.int32) & 0xFF).eq(0).all()  # the 8 low bits are gone
    exact = x.double()  # independently: |x| to the nearest multiple of 2^(exponent - 15), ties away from zero
    exponent = torch.floor(torch.log2(exact.abs().clamp_min(1e-300)))
    ulp = torch.exp2(exponent - 15)
    want = torch.sign(exact) * torch.floor(exact.abs() / ulp + 0.5) * ulp
    assert torch.equal(rounded.double(), want)
    relative = ((rounded.double() - exact).abs() / exact.abs().clamp_min(1e-300))
    assert relative.max() <= 2.0 ** -16


@pytest.mark.parametrize("byte_count", [3, 4])
def test_packed_weights_unpack_to_the_same_floats(byte_count):
    generator = torch.Generator().manual_seed(0)
    weights = {"a.weight": torch.randn(7, 5, generator=generator), "a.bias": torch.randn(7, generator=generator),
               "b.scale": torch.rand(3, generator=generator) * 1e-6}
    if byte_count == 3:
        weights = {name: rounded_to_24_bits(t) for name, t in weights.items()}
    planes = np.frombuffer(zlib.decompress(base64.b64decode(packed_weights(weights, byte_count))), np.uint8)
    count = sum(t.numel() for t in weights.values())
    planes = planes.reshape(byte_count, count)  # plane b holds byte b of every number, most significant first
    bits = np.zeros(count, np.uint32)
    for b in range(byte_count):
        bits |= planes[b].astype(np.uint32) << (24 - 8 * b)
    want = np.concatenate([t.numpy().ravel() for t in weights.values()])
    assert np.array_equal(bits.view(np.float32), want)


def test_a_layer_the_page_cannot_run_is_a_one_line_error():
    model = random_model("vae", "mlp", (1, 28, 28))
    model.decoder = nn.Sequential(nn.Linear(2, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))
    with pytest.raises(VaelabError, match=r"decoder layer 1 \(Tanh\) has no counterpart in the page's decoder"):
        decoder_program(model)


def test_a_program_that_differs_from_the_model_is_refused(monkeypatch):
    model = random_model("vae", "conv", (1, 28, 28))
    program = decoder_program(model)
    monkeypatch.setitem(page_module.UNARY, "leaky_relu", lambda x, op: F.relu(x))
    with pytest.raises(VaelabError, match="the page's decoder program differs from the model by"):
        checked_weights(model, program)


def test_weights_stay_float32_when_24_bits_would_break_the_bound(monkeypatch):
    model = random_model("vae", "mlp", (1, 28, 28))
    program = decoder_program(model)
    monkeypatch.setattr(page_module, "PIXEL_TOLERANCE", 1e-9)  # the program is exact; 24-bit weights are not
    weights, byte_count, error = checked_weights(model, program)
    assert byte_count == 4 and error <= 1e-9 and weights is program.weights


class Tags(HTMLParser):
    """The start tags of a document, with their attributes, and the text inside each <script>."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self.in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self.in_script = True
            self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag):
        self.in_script = self.in_script and tag != "script"

    def handle_data(self, data):
        if self.in_script:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parsed(document: str) -> Tags:
    tags = Tags()
    tags.feed(document)
    return tags


def page_data(document: str) -> dict:
    (data,) = [text for attrs, text in parsed(document).scripts if attrs.get("id") == "vaelab-page-data"]
    return json.loads(data)


def test_the_page_loads_nothing_and_a_runs_name_cannot_end_its_script():
    name = 'x</script><script>alert("a")</script><!--'
    page = model_page({name: random_model("vae", "mlp", (1, 28, 28))})
    tags = parsed(page.html)
    assert [attrs for attrs, _ in tags.scripts] == [{}, {"type": "application/json", "id": "vaelab-page-data"}, {}, {}]
    data = page_data(page.html)
    assert data["runs"][0]["info"]["name"] == name and data["runs"][0]["info"]["id"] == name
    meta = [a for t, a in tags.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert meta == [{"http-equiv": "Content-Security-Policy", "content": CSP}] and "default-src 'none'" in CSP
    for tag, attrs in tags.tags:  # nothing from a URL: no src, href or stylesheet link
        assert not {"src", "href"} & set(attrs), (tag, attrs)
    for attrs, script in tags.scripts:
        if attrs:
            continue
        assert "fetch(" not in script and "new Worker(" not in script and "import(" not in script


def test_in_a_notebook_the_page_is_a_sandboxed_iframe_of_itself():
    page = model_page({"vae": random_model("vae", "mlp", (1, 28, 28))})
    (tag, attrs), = [(t, a) for t, a in parsed(page._repr_html_()).tags]
    assert tag == "iframe" and attrs["srcdoc"] == page.html  # the parser unescapes the attribute
    assert attrs["sandbox"] == "allow-scripts"  # scripts run; same-origin access to the notebook is not given


def test_a_failed_save_leaves_neither_the_page_nor_a_temporary_file(tmp_path, monkeypatch):
    page = model_page({"vae": random_model("vae", "mlp", (1, 28, 28))})

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(page_module.os, "fsync", full_disk)
    with pytest.raises(OSError):
        page.save(tmp_path / "page.html")
    assert list(tmp_path.iterdir()) == []


# ---- the command ---------------------------------------------------------------------------------------------

def test_export_html_writes_one_page_for_several_runs(explore_runs, tmp_path, capsys):
    out = tmp_path / "ae-vs-vae.html"
    assert main(["export", str(explore_runs["ae"]), str(explore_runs["vae"]), str(explore_runs["vae3"]),
                 "--html", str(out), "--codes", "30"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out}\n"
    lines = captured.err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["ae", "vae", "vae3", "page"]
    assert all("24-bit floats" in line for line in lines[:3])
    data = page_data(out.read_text())
    assert [r["info"]["id"] for r in data["runs"]] == ["ae", "vae", "vae3"]
    assert [r["info"]["n_test"] for r in data["runs"]] == [30, 30, 30]
    three_d = data["runs"][2]["view"]  # a 3-D run is drawn in its PCA plane, as `vaelab explore` draws it
    assert three_d["latent_dim"] == 3 and len(three_d["pca"]["axes"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae-vs-vae.html"]


@pytest.fixture(scope="module")
def bad_runs(explore_runs, explore_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-runs")
    corrupt = shutil.copytree(explore_runs["vae"], root / "corrupt")
    for name in ("model.safetensors", "checkpoint.safetensors"):  # either alone is repaired from the other
        (corrupt / name).write_bytes((corrupt / name).read_bytes()[:-100])
    one_d = train_run(root / "one-d", explore_data_dir, "book-vae", latent_dim=1, arch="mlp")
    return {"corrupt": corrupt, "one-d": one_d, **explore_runs}


@pytest.mark.parametrize("args, message", [
    (["missing-run", "--html", "OUT/page.html"], "vaelab: error: missing-run: no such run folder"),
    (["corrupt", "--html", "OUT/page.html"], "checkpoint.safetensors"),
    (["one-d", "--html", "OUT/page.html"], "latent_dim >= 2 (this run has 1)"),
    (["vae", "--html", "OUT/page.html", "--codes", "0"], "vaelab: error: --codes must be at least 1, got 0"),
    (["vae", "--html", "OUT/no-such-folder/page.html"], "does not exist: make it first"),
    (["vae", "--html", "OUT"], "is a folder; name the .html file to write"),
    (["vae", "ae", "--onnx", "OUT/onnx"], "vaelab: error: --onnx exports one run, got 2; --html puts several"),
])
def test_bad_input_is_one_line_and_leaves_nothing(bad_runs, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    args = [str(bad_runs[a]) if a in bad_runs else a.replace("OUT", str(out)) for a in args]
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("vaelab: error: ") and err.count("\n") == 1, err
    assert list(out.iterdir()) == []
