"""The explorer's JSON API through FastAPI's test client: every endpoint, every kind of bad input."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import shutil
import threading
import warnings

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from vaelab.data import ImageData, fixed_test_pixels, load_dataset
from vaelab.explore.served import ServedRun, run_id
from vaelab.explore.server import LATENT_BOUND, MAX_BODY_BYTES, MAX_POINTS, create_app
from vaelab.metrics.manifold import knn_radii, manifold_precision
from vaelab.models.priors import BoxPrior

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")  # it prefers httpx2; httpx works
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def app(explore_runs, find_classifier):
    return create_app([explore_runs["vae"], explore_runs["ae"], explore_runs["vae3"]], find_classifier)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def data_url_pixels(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return png_pixels(base64.b64decode(url.split(",", 1)[1]))


def expected_images(run_dir, z) -> np.ndarray:
    """What decoding should give: the run's own model, outside the server."""
    with torch.no_grad():
        images = vaelab.load(run_dir).decode(torch.tensor(z, dtype=torch.float32))
    return images.mul(255).round().clamp(0, 255).to(torch.uint8).numpy()


def test_lists_the_served_runs_and_limits(client):
    body = client.get("/api/runs").json()
    assert [r["id"] for r in body["runs"]] == ["vae", "ae", "vae3"]
    vae = body["runs"][0]
    assert (vae["model"], vae["arch"], vae["latent_dim"], vae["image_shape"]) == ("vae", "conv", 2, [1, 28, 28])
    assert (vae["dataset"], vae["n_test"], vae["classes"]) == ("mnist", 100, [str(d) for d in range(10)])
    assert vae["classifier"] == {"dataset": "mnist", "test_accuracy": 0.1}
    assert "path" not in json.dumps(body)  # folders are named, never located
    assert body["limits"] == {"max_points": MAX_POINTS, "latent_bound": LATENT_BOUND, "max_body_bytes": MAX_BODY_BYTES}


def test_without_a_cached_classifier_the_overlay_is_off_and_says_why(explore_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    client = TestClient(create_app([explore_runs["vae"]]))
    run = client.get("/api/runs").json()["runs"][0]
    assert run["classifier"] is None
    assert "no reference classifier cached for mnist" in run["classifier_reason"]
    response = client.post("/api/runs/vae/classify", json={"z": [[0, 0]]})
    assert response.status_code == 409
    assert response.json()["detail"] == run["classifier_reason"]


def test_codes_are_the_test_sets_posterior_means(client, explore_runs, explore_data_dir):
    body = client.get("/api/runs/vae3/codes").json()
    data = load_dataset("mnist", explore_data_dir)
    with torch.no_grad():
        codes = vaelab.load(explore_runs["vae3"]).encode(fixed_test_pixels(data.test_images, "continuous"))
    assert np.allclose(body["codes"], codes.numpy(), atol=1e-4)
    assert body["labels"] == data.test_labels.tolist()
    assert body["latent_dim"] == 3 and body["classes"] == list(data.classes)
    assert np.allclose(body["low"], codes.min(0).values) and np.allclose(body["high"], codes.max(0).values)
    axes = np.array(body["pca"]["axes"])
    assert axes.shape == (2, 3) and np.allclose(axes @ axes.T, np.eye(2), atol=1e-5)
    assert np.allclose(body["pca"]["mean"], codes.mean(0), atol=1e-6)


def test_decode_raw_and_png_give_the_models_images(client, explore_runs):
    z = [[0.0, 0.0], [1.5, -0.5], [-2.0, 3.0]]
    expected = expected_images(explore_runs["vae"], z)
    raw = client.post("/api/runs/vae/decode", json={"z": z, "format": "raw"})
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["x-image-shape"] == "3,1,28,28"
    assert np.array_equal(np.frombuffer(raw.content, np.uint8).reshape(3, 1, 28, 28), expected)
    png = client.post("/api/runs/vae/decode", json={"z": z})
    assert png.headers["content-type"] == "image/png"
    assert np.array_equal(png_pixels(png.content), np.concatenate(list(expected[:, 0]), axis=1))  # a 28 x 84 strip


def test_identical_decode_requests_are_answered_from_the_cache(client, app):
    run = app.state.runs["ae"]
    body = {"z": [[0.25, 0.75]], "format": "raw"}
    first = client.post("/api/runs/ae/decode", json=body).content
    hits = run.decode.cache_info().hits
    assert client.post("/api/runs/ae/decode", json=body).content == first
    assert run.decode.cache_info().hits == hits + 1


def test_classify_gives_a_guess_confidence_and_hole_per_point(client, app):
    z = [[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [50.0, -50.0, 50.0]]
    body = client.post("/api/runs/vae3/classify", json={"z": z}).json()
    run = app.state.runs["vae3"]
    with torch.no_grad():
        features, probs = run.classifier.outputs(run.model.decode(torch.tensor(z)))
        reference, _ = run.classifier.outputs(run.model.decode(run.model.encode(run.test_x)))
    assert body["labels"] == probs.argmax(1).tolist()
    assert body["confidence"] == pytest.approx(probs.max(1).values.tolist(), abs=1e-4)
    ratio = (torch.cdist(features.double(), reference.double()) / knn_radii(reference)).min(1).values
    assert body["ball_ratio"] == pytest.approx(ratio.tolist(), rel=1e-3)
    assert body["hole"] == (ratio > 1).tolist() and body["hole"][2]  # far outside the codes: a hole


@pytest.mark.parametrize("run_name", ["ae", "vae"])
def test_holes_are_flaw_1s_measure_point_by_point(client, app, run_name):
    """The share of random samples that are not holes is the flaw-1 headline: precision against the model's
    reconstructions."""
    run = app.state.runs[run_name]
    z = run.model.prior.sample(200, torch.Generator().manual_seed(0))
    body = client.post(f"/api/runs/{run_name}/classify", json={"z": z.tolist()}).json()
    with torch.no_grad():
        samples, _ = run.classifier.outputs(run.model.decode(torch.tensor(z.tolist())))
        reconstructions, _ = run.classifier.outputs(run.model.decode(run.model.encode(run.test_x)))
    expected = manifold_precision(samples, reconstructions)
    assert 0 < expected < 1  # both kinds of point are there to be told apart
    assert 1 - np.mean(body["hole"]) == pytest.approx(expected, abs=0.011)  # float32 rounding may move a point


class BumpAE(torch.nn.Module):
    """A synthetic AE: the code (u, v) is the position of a bright round bump, at pixel (4 + 20u, 4 + 20v)."""

    config = type("Config", (), {"latent_dim": 2, "image_shape": (1, 28, 28)})
    pixel = torch.arange(28.0)
    device = torch.device("cpu")
    prior = BoxPrior(torch.zeros(2), torch.ones(2))  # the panel's samples and grid

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x, y = 4 + 20 * z[:, 0, None, None], 4 + 20 * z[:, 1, None, None]
        return torch.exp(-((self.pixel[None, None, :] - x) ** 2 + (self.pixel[None, :, None] - y) ** 2) / 4.5)[:, None]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        ink = images[:, 0] / images[:, 0].sum((1, 2), keepdim=True)
        return torch.stack([(ink.sum(1) * self.pixel).sum(1), (ink.sum(2) * self.pixel).sum(1)], 1).sub(4).div(20)


def test_the_holes_of_an_ae_are_the_empty_space_away_from_its_codes(find_classifier, tmp_path):
    """Codes fill the square [0.1, 0.4]^2 only: the plane far from it is a hole, the square is not."""
    model = BumpAE()
    side = (torch.arange(20) + 0.5) / 20
    codes = torch.cartesian_prod(side, side) * 0.3 + 0.1  # evenly filled, so no gaps inside the square
    images = model.decode(codes).mul(255).round().to(torch.uint8)
    labels = torch.zeros(len(codes), dtype=torch.int64)
    data = ImageData("bumps", images, labels, images, labels, tuple("0123456789"), "synthetic")
    run = ServedRun("bumps", tmp_path, model, data, "continuous", *find_classifier(data))
    assert torch.allclose(run.codes, codes, atol=0.01)  # the encoder finds the bumps
    axis = (torch.arange(10) + 0.5) / 10  # a 10 x 10 grid of cells over [0, 1]^2
    cells = torch.cartesian_prod(axis, axis)
    _, _, hole, ratio = run.classify(tuple(map(tuple, cells.tolist())))
    hole = torch.tensor(hole)
    on_codes = ((cells >= 0.15) & (cells <= 0.35)).all(1)
    far = (cells >= 0.65).any(1)
    assert on_codes.sum() == 9 and not hole[on_codes].any()
    assert far.sum() == 64 and hole[far].all()


def test_reconstruct_a_test_image_by_index_or_by_pixels(client, app):
    codes = client.get("/api/runs/vae/codes").json()
    by_index = client.post("/api/runs/vae/reconstruct", json={"index": 5}).json()
    assert by_index["label"] == codes["labels"][5]
    assert by_index["code"] == pytest.approx(codes["codes"][5], abs=1e-4)
    decoded = client.post("/api/runs/vae/decode", json={"z": [by_index["code"]], "format": "raw"}).content
    assert np.array_equal(data_url_pixels(by_index["reconstruction"]), np.frombuffer(decoded, np.uint8).reshape(28, 28))
    pixels = app.state.runs["vae"].test_x[5].flatten().tolist()
    by_pixels = client.post("/api/runs/vae/reconstruct", json={"pixels": pixels}).json()
    assert by_pixels["label"] is None
    assert by_pixels["code"] == pytest.approx(by_index["code"], abs=1e-5)
    assert np.array_equal(data_url_pixels(by_pixels["input"]), data_url_pixels(by_index["input"]))


def test_the_page_its_assets_and_the_openapi_schema_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/explore.js">' in page.text
    for asset in ("/static/explore.js", "/static/explore.css"):
        assert client.get(asset).status_code == 200
        assert not re.search(r"https?://", client.get(asset).text)  # works offline: nothing from elsewhere
    assert not re.search(r"https?://", page.text)
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/api/runs", "/api/runs/{run_id}/codes", "/api/runs/{run_id}/decode",
                          "/api/runs/{run_id}/classify", "/api/runs/{run_id}/reconstruct"}


def test_run_ids_are_url_safe_and_unique():
    taken = {}
    for name, expected in (("vae", "vae"), ("vae", "vae-2"), ("My Run (old)", "my-run-old"), ("...", "run")):
        taken[run_id(name, taken)] = None
        assert list(taken)[-1] == expected


def test_runs_with_a_one_dimensional_latent_are_refused(explore_runs, tmp_path):
    folder = tmp_path / "line"
    shutil.copytree(explore_runs["vae"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["latent_dim"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(vaelab.VaelabError, match="latent_dim >= 2"):
        create_app([folder])


# --- bad input: a 4xx JSON error with a message, and the server keeps serving ---------------------------

BAD_POINTS = [
    ({"z": [[0.0, 0.0, 0.0]]}, 422, "z.0: has 3 coordinates, run 'vae' has latent_dim 2"),
    ({"z": [[0.0]]}, 422, "z.0: has 1 coordinates"),
    ({"z": [[0.0, 0.0], [1.0]]}, 422, "z.1: has 1 coordinates"),
    ({"z": [[1e9, 0.0]]}, 422, "z.0.0: Input should be less than or equal to 1000"),
    ({"z": [[0.0, -1001]]}, 422, "z.0.1: Input should be greater than or equal to -1000"),
    ({"z": []}, 422, "z: List should have at least 1 item"),
    ({"z": [[0.0, 0.0]] * (MAX_POINTS + 1)}, 422, f"z: List should have at most {MAX_POINTS} items"),
    ({"z": [[0.0, "a"]]}, 422, "z.0.1: Input should be a valid number"),
    ({"z": "0,0"}, 422, "z: Input should be a valid list"),
    ({"points": [[0.0, 0.0]]}, 422, "z: Field required"),
    ({"z": [[0.0, 0.0]], "path": "/etc/passwd"}, 422, "path: Extra inputs are not permitted"),
]


@pytest.mark.parametrize("endpoint", ["decode", "classify"])
@pytest.mark.parametrize("body, status, message", BAD_POINTS)
def test_bad_latent_points_are_refused(client, endpoint, body, status, message):
    response = client.post(f"/api/runs/vae/{endpoint}", json=body)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert client.post(f"/api/runs/vae/{endpoint}", json={"z": [[0.0, 0.0]]}).status_code == 200


@pytest.mark.parametrize("text, message", [
    ('{"z": [[NaN, 0]]}', "z.0.0: Input should be a finite number"),
    ('{"z": [[0, Infinity]]}', "z.0.1: Input should be a finite number"),
    ('{"z": [[-Infinity, 0]]}', "z.0.0: Input should be a finite number"),
    ('{"z": [[0, 0]', "malformed JSON body"),
    ('not json at all', "malformed JSON body"),
    ('[[0, 0]]', "Input should be a valid dictionary"),
])
def test_non_finite_and_malformed_bodies_are_refused(client, text, message):
    response = client.post("/api/runs/vae/decode", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_a_wrong_format_is_refused(client):
    response = client.post("/api/runs/vae/decode", json={"z": [[0, 0]], "format": "jpeg"})
    assert response.status_code == 422 and "format: Input should be 'png' or 'raw'" in response.json()["detail"]


def test_oversized_bodies_are_refused_whether_announced_or_streamed(client):
    big = b'{"z": [' + b"[0.0, 0.0]," * (MAX_BODY_BYTES // 10) + b"[0.0, 0.0]]}"
    announced = client.post("/api/runs/vae/decode", content=big, headers={"content-type": "application/json"})
    assert announced.status_code == 413
    assert announced.json()["detail"] == f"request body larger than {MAX_BODY_BYTES} bytes"
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))  # no Content-Length: chunked
    streamed = client.post("/api/runs/vae/decode", content=chunks, headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    bogus = client.post("/api/runs/vae/decode", content=b"{}", headers={"content-length": "lots"})
    assert bogus.status_code == 400
    assert client.post("/api/runs/vae/decode", json={"z": [[0.0, 0.0]]}).status_code == 200


@pytest.mark.parametrize("method, endpoint, body", [("get", "codes", None), ("post", "decode", {"z": [[0, 0]]}),
                                                  ("post", "classify", {"z": [[0, 0]]}),
                                                  ("post", "reconstruct", {"index": 0})])
def test_unknown_runs_are_404(client, method, endpoint, body):
    response = client.request(method, f"/api/runs/nope/{endpoint}", json=body)
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown run 'nope'; served runs: vae, ae, vae3"


@pytest.mark.parametrize("body, message", [
    ({"index": 100}, "index: 100 is past the last test image (99)"),
    ({"index": -1}, "index: Input should be greater than or equal to 0"),
    ({"pixels": [0.5] * 783}, "pixels: has 783 values, run 'vae' takes 1x28x28 = 784"),
    ({"pixels": [1.5] * 784}, "pixels.0: Input should be less than or equal to 1"),
    ({}, "give exactly one of 'index' and 'pixels'"),
    ({"index": 0, "pixels": [0.0] * 784}, "give exactly one of 'index' and 'pixels'"),
])
def test_bad_reconstruct_requests_are_refused(client, body, message):
    response = client.post("/api/runs/vae/reconstruct", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_no_request_can_name_a_file(client):
    for path in ("/static/../served.py", "/static/%2e%2e/served.py", "/api/runs/..%2f..%2fetc/codes"):
        assert client.get(path).status_code == 404


def test_a_slow_decode_does_not_stall_other_requests(app):
    """Decoding runs in worker threads: while one request is stuck in the model, others are answered."""
    run = app.state.runs["vae"]
    entered, release = threading.Event(), threading.Event()
    decode = run.decode

    def slow_for_one_point(z, fmt, label=None):
        if z == ((9.0, 9.0),):
            entered.set()
            release.wait(10)
        return decode(z, fmt, label)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            slow = asyncio.create_task(http.post("/api/runs/vae/decode", json={"z": [[9.0, 9.0]]}))
            while not entered.is_set():
                await asyncio.sleep(0.01)
            fast = await asyncio.wait_for(http.post("/api/runs/vae/decode", json={"z": [[1.0, 1.0]]}), 10)
            assert fast.status_code == 200 and not slow.done()
            release.set()
            assert (await slow).status_code == 200

    run.decode = slow_for_one_point
    try:
        asyncio.run(scenario())
    finally:
        run.decode = decode
        release.set()


def test_a_conditional_run_decodes_the_chosen_class(explore_runs, find_classifier):
    client = TestClient(create_app([explore_runs["cvae"], explore_runs["vae"]], find_classifier))
    runs = {run["id"]: run for run in client.get("/api/runs").json()["runs"]}
    assert runs["cvae"]["conditional"] is True and runs["vae"]["conditional"] is False
    z = [[0.5, -0.5], [1.0, 1.0]]
    images = {}
    for label in (None, 3, 7):
        response = client.post("/api/runs/cvae/decode", json={"z": z, "format": "raw", "label": label})
        assert response.status_code == 200
        images[label] = np.frombuffer(response.content, np.uint8).reshape(2, 1, 28, 28)
        with torch.no_grad():
            labels = None if label is None else torch.full((2,), label)
            expected = vaelab.load(explore_runs["cvae"]).decode(torch.tensor(z), labels)
        assert np.array_equal(images[label], expected.mul(255).round().clamp(0, 255).to(torch.uint8).numpy())
    assert not np.array_equal(images[3], images[7]) and not np.array_equal(images[None], images[3])
    for run, label, message in (("cvae", 10, "classes 0-9"), ("vae", 3, "does not condition on labels")):
        response = client.post(f"/api/runs/{run}/decode", json={"z": z, "label": label})
        assert response.status_code == 422 and message in response.json()["detail"]
    assert client.post("/api/runs/cvae/decode", json={"z": z, "label": -1}).status_code == 422
