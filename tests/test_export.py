"""`vaelab export RUN --onnx OUT`: the ONNX graphs compute what the PyTorch model computes, at any batch size."""

import json

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli import main

ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'vaelab[export]'")
pytest.importorskip("onnx", reason="the ONNX export needs onnx: pip install 'vaelab[export]'")

MAX_ABS_DIFF = 1e-5  # float32 ONNX Runtime vs PyTorch on CPU, in [0, 1] pixel units and code units (docs/export.md)


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_matches_pytorch(run, out, images):
    model = vaelab.load(run)
    encoder, decoder = session(out / "encoder.onnx"), session(out / "decoder.onnx")
    x = images[:7].float().div(255)  # a batch size the export never saw (it traced 2)
    outputs = encoder.run(None, {"images": x.numpy()})
    with torch.no_grad():
        posterior = model.posterior(x)
        expected = [posterior.mean] + ([] if posterior.logvar is None else [posterior.logvar])
        z = torch.randn(5, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
        decoded = model.decode(z)
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        assert got.shape == tuple(want.shape) and np.abs(got - want.numpy()).max() < MAX_ABS_DIFF
    (pixels,) = decoder.run(None, {"code": z.numpy()})
    assert pixels.shape == tuple(decoded.shape) and np.abs(pixels - decoded.numpy()).max() < MAX_ABS_DIFF
    return json.loads((out / "model.json").read_text())


def test_book_vae_on_grey_digits(tiny_data_dir, mnist_sample, tmp_path, capsys):
    run = vaelab.train(vaelab.preset("book-vae").replace(
        data={"dataset": "mnist", "data_dir": str(tiny_data_dir)}, train={"epochs": 1, "device": "cpu"}),
        tmp_path / "run", show_progress=False)
    assert main(["export", str(run), "--onnx", str(tmp_path / "onnx")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "onnx")
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["decoder.onnx", "encoder.onnx", "model.json"]
    info = assert_matches_pytorch(run, tmp_path / "onnx", mnist_sample.test_images)
    assert info["image_shape"] == [1, 28, 28] and list(info["encoder"]["outputs"]) == ["mean", "logvar"]


def test_the_studys_layer_norm_mlp_exports(tiny_data_dir, mnist_sample, tmp_path):
    """The fast study's network (LayerNorm before each hidden ReLU) becomes ONNX LayerNormalization nodes."""
    import onnx

    run = vaelab.train(vaelab.preset("book-ae").replace(
        data={"dataset": "mnist", "data_dir": str(tiny_data_dir)}, model={"arch": "mlp-ln"},
        train={"epochs": 1, "device": "cpu"}), tmp_path / "run", show_progress=False)
    vaelab.export_onnx(run, tmp_path / "onnx")
    assert_matches_pytorch(run, tmp_path / "onnx", mnist_sample.test_images)
    for graph in ("encoder", "decoder"):
        nodes = [n.op_type for n in onnx.load(str(tmp_path / "onnx" / f"{graph}.onnx")).graph.node]
        assert nodes.count("LayerNormalization") == 2


def test_faces_ae_on_colour_images_uses_batchnorm_statistics(rgb_data, tmp_path):
    run = vaelab.train(vaelab.preset("book-faces-vae").replace(
        model={"model": "ae", "latent_dim": 4}, train={"epochs": 1, "device": "cpu"}), tmp_path / "run",
        show_progress=False)
    out = vaelab.export_onnx(run, tmp_path / "onnx")
    info = assert_matches_pytorch(run, out, rgb_data.test_images)
    assert info["image_shape"] == [3, 16, 16] and list(info["encoder"]["outputs"]) == ["mean"]


def test_a_conditional_model_takes_its_labels_in_both_graphs_at_any_batch_size(tiny_data_dir, mnist_sample,
                                                                               tmp_path):
    """The CVAE's graphs have a labels input (int64, -1: no label) and decode each row as the class asked for,
    at batch sizes the export never traced (it traced 2)."""
    import onnx

    run = vaelab.train(vaelab.preset("book-vae").replace(
        data={"dataset": "mnist", "data_dir": str(tiny_data_dir)}, model={"model": "cvae", "arch": "mlp"},
        train={"epochs": 1, "device": "cpu"}), tmp_path / "run", show_progress=False)
    out = vaelab.export_onnx(run, tmp_path / "onnx")
    for graph, first in (("encoder", "images"), ("decoder", "code")):
        inputs = [i.name for i in onnx.load(str(out / f"{graph}.onnx")).graph.input]
        assert inputs == [first, "labels"], inputs
    info = json.loads((out / "model.json").read_text())
    assert info["decoder"]["input"]["labels"] == ["batch"] and "-1 for no label" in info["labels"]
    model = vaelab.load(run)
    encoder, decoder = session(out / "encoder.onnx"), session(out / "decoder.onnx")
    generator = torch.Generator().manual_seed(0)
    for n in (1, 5, 64):
        labels = torch.randint(-1, 10, (n,), generator=generator)
        x = mnist_sample.test_images[:n].float().div(255)
        z = torch.randn(n, model.config.latent_dim, generator=generator)
        with torch.no_grad():
            posterior, decoded = model.posterior(x, labels), model.decode(z, labels)
        mean, logvar = encoder.run(None, {"images": x.numpy(), "labels": labels.numpy()})
        (pixels,) = decoder.run(None, {"code": z.numpy(), "labels": labels.numpy()})
        assert np.abs(mean - posterior.mean.numpy()).max() < MAX_ABS_DIFF
        assert np.abs(logvar - posterior.logvar.numpy()).max() < MAX_ABS_DIFF
        assert pixels.shape == tuple(decoded.shape) and np.abs(pixels - decoded.numpy()).max() < MAX_ABS_DIFF
    # the label moves the picture far beyond the tolerance, so the matches above are not a traced constant's
    one = torch.zeros(1, model.config.latent_dim)
    seven, three = (decoder.run(None, {"code": one.numpy(), "labels": np.array([k])})[0] for k in (7, 3))
    assert np.abs(seven - three).max() > 100 * MAX_ABS_DIFF


def test_refuses_a_non_run_and_a_taken_folder(tiny_data_dir, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert main(["export", str(tmp_path / "taken"), "--onnx", str(tmp_path / "out")]) == 2
    assert "is not a vaelab run folder" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["export", str(tmp_path / "no-run"), "--onnx", str(tmp_path / "taken")]) == 2
    assert "taken already exists and is not empty; choose a new folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no staging folder left behind


def test_a_failed_export_leaves_nothing(tiny_data_dir, tmp_path, monkeypatch):
    run = vaelab.train(vaelab.preset("book-ae").replace(
        data={"dataset": "mnist", "data_dir": str(tiny_data_dir)}, model={"arch": "mlp"},
        train={"epochs": 1, "device": "cpu"}), tmp_path / "run", show_progress=False)
    from vaelab import export

    def fail(module, example, path, *names):
        if path.name == "decoder.onnx":
            raise RuntimeError("disk full")
        path.write_bytes(b"half")

    monkeypatch.setattr(export, "export_graph", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        vaelab.export_onnx(run, tmp_path / "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
