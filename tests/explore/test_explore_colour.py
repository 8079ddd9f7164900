"""The explorer's API on a colour model trained on unlabelled images: RGB decoding, a dropped colour image,
and no classifier overlay (it says why)."""

import base64
import io
import warnings

import numpy as np
import pytest
from PIL import Image

import vaelab
from vaelab.explore.server import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colour")
    images = (np.random.default_rng(1).random((120, 16, 16, 3)) * 255).astype(np.uint8)  # NHWC, no labels
    np.save(folder / "images.npy", images)
    config = vaelab.preset("book-vae").replace(data={"dataset": str(folder / "images.npy")}, model={"arch": "mlp"},
                                               train={"epochs": 1, "batch_size": 64, "device": "cpu"})
    run = vaelab.train(config, folder / "vae", show_progress=False)
    return TestClient(create_app([run]))


def test_an_rgb_run_decodes_in_colour(client):
    run = client.get("/api/runs").json()["runs"][0]
    assert run["image_shape"] == [3, 16, 16] and run["classifier"] is None and "no labels" in run["classifier_reason"]
    raw = client.post(f"/api/runs/{run['id']}/decode", json={"z": [[0, 0], [1, -1]], "format": "raw"})
    assert raw.headers["x-image-shape"] == "2,3,16,16" and len(raw.content) == 2 * 3 * 16 * 16
    png = Image.open(io.BytesIO(client.post(f"/api/runs/{run['id']}/decode", json={"z": [[0, 0], [1, -1]]}).content))
    assert png.mode == "RGB" and png.size == (32, 16)
    assert client.post(f"/api/runs/{run['id']}/classify", json={"z": [[0, 0]]}).status_code == 409


def test_a_dropped_colour_image_and_a_test_image_have_no_label(client):
    run = client.get("/api/runs").json()["runs"][0]
    pixels = np.random.default_rng(2).random(3 * 16 * 16).tolist()  # what the page sends for a dropped RGB file
    body = client.post(f"/api/runs/{run['id']}/reconstruct", json={"pixels": pixels}).json()
    assert body["label"] is None and len(body["code"]) == 2
    assert Image.open(io.BytesIO(base64.b64decode(body["reconstruction"].split(",")[1]))).mode == "RGB"
    assert client.post(f"/api/runs/{run['id']}/reconstruct", json={"index": 3}).json()["label"] is None
