"""The explorer shared beyond loopback: token, Host header, per-client work cap, and a fuzz of hostile requests
against the real server (no 5xx, no hang, still answering afterwards)."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
import warnings

import httpx
import pytest
import uvicorn

from vaelab.explore.server import (
    LOOPBACK_NAMES,
    MAX_BODY_BYTES,
    MAX_WORK_PER_CLIENT,
    allowed_hosts,
    bind,
    create_app,
    host_name,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TOKEN = "correct-horse-battery"


@pytest.fixture(scope="module")
def guarded(explore_runs, find_classifier):
    return create_app([explore_runs["vae"]], find_classifier, token=TOKEN, hosts=LOOPBACK_NAMES)


def test_requests_without_the_token_get_401(guarded):
    client = TestClient(guarded, base_url="http://127.0.0.1:8765")
    for path in ("/", "/api/runs", "/static/explore.js", "/api/runs/vae/codes", "/docs"):
        response = client.get(path)
        assert response.status_code == 401 and "needs its token" in response.json()["detail"], path
    assert client.get("/api/runs", headers={"X-Vaelab-Token": TOKEN + "x"}).status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/runs", headers={"X-Vaelab-Token": TOKEN}).status_code == 200
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get(f"/api/runs?token={TOKEN}").status_code == 200


def test_the_page_opened_with_the_token_carries_it(guarded):
    """The printed URL sets an HttpOnly cookie, so the page's own requests (script, API) carry the token."""
    client = TestClient(guarded, base_url="http://localhost:8765")
    page = client.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "httponly" in page.headers["set-cookie"].lower() and "samesite=strict" in page.headers["set-cookie"].lower()
    assert client.get("/static/explore.js").status_code == 200
    assert client.post("/api/runs/vae/decode", json={"z": [[0, 0]], "format": "raw"}).status_code == 200


def test_the_host_header_must_name_this_server(guarded):
    """A DNS-rebinding page reaches the server under its own name: refused even with the token."""
    headers = {"X-Vaelab-Token": TOKEN}
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", "", "localhost@evil.example"):
        response = TestClient(guarded, base_url="http://127.0.0.1:8765").get("/api/runs",
                                                                               headers={**headers, "Host": host})
        assert response.status_code == 403, host
    for host in ("127.0.0.1:8765", "localhost", "LOCALHOST.:8765", "[::1]:8765"):
        response = TestClient(guarded, base_url="http://127.0.0.1:8765").get("/api/runs",
                                                                               headers={**headers, "Host": host})
        assert response.status_code == 200, host


def test_allowed_host_names():
    assert allowed_hosts("127.0.0.1", "127.0.0.1") == LOOPBACK_NAMES
    assert allowed_hosts("0.0.0.0", "0.0.0.0") is None  # any name; the token is required there
    assert allowed_hosts("lab-box", "10.1.2.3") == LOOPBACK_NAMES | {"lab-box", "10.1.2.3"}
    assert host_name("[::1]:80") == "::1" and host_name("Lab-Box.:8765") == "lab-box" and host_name("::1") == "::1"


def test_one_client_cannot_take_every_worker(explore_runs, find_classifier):
    """Six slow decodes from one address run at most MAX_WORK_PER_CLIENT at a time; another client still gets in."""
    app = create_app([explore_runs["vae"]], find_classifier)
    run = app.state.runs["vae"]
    gate, lock, running = threading.Event(), threading.Lock(), {"now": 0, "max": 0}

    def slow_decode(z, fmt, label=None):
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        gate.wait(20)
        with lock:
            running["now"] -= 1
        return b"\x00" * 784

    run.decode = slow_decode

    async def until(condition, seconds: float = 15):
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def scenario():
        def client(address):
            return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(address, 1234)),
                                     base_url="http://127.0.0.1", timeout=30)

        async with client("10.0.0.1") as greedy, client("10.0.0.2") as other:
            flood = [asyncio.create_task(greedy.post("/api/runs/vae/decode", json={"z": [[i, 0]], "format": "raw"}))
                     for i in range(6)]
            await until(lambda: running["now"] == MAX_WORK_PER_CLIENT)
            await asyncio.sleep(0.3)  # time for a third decode of the flood to start, if it could
            assert running["now"] == MAX_WORK_PER_CLIENT
            polite = asyncio.create_task(other.post("/api/runs/vae/decode", json={"z": [[0, 1]], "format": "raw"}))
            await until(lambda: running["now"] == MAX_WORK_PER_CLIENT + 1)
            assert running["now"] == MAX_WORK_PER_CLIENT + 1, "the second client waited behind the first"
            gate.set()
            responses = await asyncio.gather(*flood, polite)
        assert [r.status_code for r in responses] == [200] * 7
        assert running["max"] == MAX_WORK_PER_CLIENT + 1

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def live(explore_runs, find_classifier):
    """The explorer served by uvicorn on a free loopback port, in a thread."""
    app = create_app([explore_runs["vae"], explore_runs["ae"]], find_classifier, hosts=LOOPBACK_NAMES)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield "127.0.0.1", sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)


def hostile_requests(seed: int = 11) -> list[tuple[str, str, dict]]:
    """(method, path, httpx keyword arguments): malformed, hostile or absurd, each a request a browser or a
    script could send."""
    decode, reconstruct, classify = "/api/runs/vae/decode", "/api/runs/vae/reconstruct", "/api/runs/vae/classify"
    raw_json = {"headers": {"Content-Type": "application/json"}}
    odd_values = ["NaN", "Infinity", "-Infinity", "1e309", "-1e400", "true", "null", '"0"', '"NaN"', "{}", "[]",
                  "1e3000", "0x10", "01", "1.0.0", '"\\u0000"', "[[]]", '{"z": 1}', "9" * 5000]
    requests: list[tuple[str, str, dict]] = []
    for value in odd_values:
        requests.append(("POST", decode, {**raw_json, "content": f'{{"z": [[{value}, 0]]}}'}))
        requests.append(("POST", decode, {**raw_json, "content": f'{{"z": {value}}}'}))
        requests.append(("POST", reconstruct, {**raw_json, "content": f'{{"index": {value}}}'}))
        requests.append(("POST", reconstruct, {**raw_json, "content": f'{{"pixels": [{value}]}}'}))
        requests.append(("POST", classify, {**raw_json, "content": f'{{"z": [[0, {value}]]}}'}))
    for depth in (100, 1000, 100_000):
        requests.append(("POST", decode, {**raw_json, "content": '{"z": ' + "[" * depth + "]" * depth + "}"}))
        requests.append(("POST", reconstruct, {**raw_json, "content": "[" * depth}))
    requests += [
        ("POST", decode, {"json": {"z": [[0, 0]] * 1025}}),
        ("POST", decode, {"json": {"z": [[0.5] * 3]}}),
        ("POST", decode, {"json": {"z": [[1e4, 0]]}}),
        ("POST", decode, {"json": {"z": [[0, 0]], "format": "gif"}}),
        ("POST", decode, {"json": {"z": [[0, 0]], "extra": 1}}),
        ("POST", decode, {"json": {"z": []}}),
        ("POST", decode, {"content": b"\xff\xfe\x00garbage", **raw_json}),
        ("POST", decode, {"content": b"x" * (MAX_BODY_BYTES + 1), **raw_json}),
        ("POST", decode, {"content": json.dumps({"z": [[0, 0]] * 60_000}), **raw_json}),
        ("POST", decode, {"content": "{}", "headers": {"Content-Type": "text/plain"}}),
        ("POST", reconstruct, {"json": {"index": -1}}),
        ("POST", reconstruct, {"json": {"index": 10**30}}),
        ("POST", reconstruct, {"json": {"index": 1.5}}),
        ("POST", reconstruct, {"json": {"index": 0, "pixels": [0.0] * 784}}),
        ("POST", reconstruct, {"json": {}}),
        ("POST", reconstruct, {"json": {"pixels": [0.5] * 783}}),
        ("POST", reconstruct, {"json": {"pixels": [2.0] * 784}}),
        ("GET", decode, {}),
        ("PUT", "/api/runs", {}),
        ("DELETE", "/api/runs/vae", {}),
        ("OPTIONS", decode, {}),
        ("PATCH", "/", {}),
        ("GET", "/api/runs/vae/codes", {"headers": {"Host": "evil.example"}}),
    ]
    for path in ["/api/runs/nope/codes", "/api/runs/../codes", "/api/runs/%2e%2e/codes", "/api/runs/vae%2f..%2f/codes",
                 "/api/runs/%00/decode", "/api/runs/" + "a" * 5000 + "/codes", "/static/../server.py",
                 "/static/%2e%2e/server.py", "/static/..%2fserver.py", "/static/%2e%2e%2f%2e%2e%2f__init__.py",
                 "/static/....//....//etc/passwd", "/static/%252e%252e/server.py", "/static/explore.js%00.png",
                 "/static/", "/static", "//etc/passwd", "/static/%5c..%5cserver.py", "/static/..\\server.py",
                 "/api/runs/vae/codes/../../../etc/passwd", "/docs/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                 "/api/" + "%" * 100, "/api/runs/vae/decode?format=" + "x" * 10_000]:
        requests.append(("GET", path, {}))
        requests.append(("POST", path, {"json": {"z": [[0, 0]]}}))
    rng = random.Random(seed)
    atoms = [0, -1, 1.5, 1e300, "a", "", None, True, [], {}, [0, 0], {"z": 0}, "\u202e", "💥"]
    for _ in range(60):  # random JSON shaped almost like the real requests
        body = {rng.choice(["z", "index", "pixels", "format", "Z", ""]): rng.choice(
            atoms + [[rng.choice(atoms) for _ in range(rng.randint(0, 4))] for _ in range(rng.randint(0, 3))])}
        requests.append(("POST", rng.choice([decode, reconstruct, classify, "/api/runs/ae/decode"]), {"json": body}))
    return requests


def raw_exchange(address, data: bytes) -> bytes:
    """Send raw bytes over a fresh connection; the server's answer (empty if it just closed)."""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


RAW = [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
       b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n",
       b"POST /api/runs/vae/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
       b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
       b"POST /api/runs/vae/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"z\":",
       b"GET /api/runs HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
       b"POST /api/runs/vae/decode HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n{}",
       b"POST /api/runs/vae/decode HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\n{}"]


def test_hostile_requests_get_no_5xx_and_the_server_keeps_answering(live):
    host, port = live
    requests = hostile_requests()
    assert len(requests) + len(RAW) >= 200
    statuses = []
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=15) as client:
        for method, path, kwargs in requests:
            started = time.perf_counter()
            response = client.request(method, path, **kwargs)
            assert response.status_code < 500, (method, path[:80], response.status_code, response.text[:200])
            assert time.perf_counter() - started < 10, (method, path[:80])
            assert b"def " not in response.content and b"root:" not in response.content, path  # no file leaked
            statuses.append(response.status_code)
    for data in RAW:
        answer = raw_exchange((host, port), data)
        assert not answer.startswith(b"HTTP/1.1 5"), (data[:40], answer[:200])
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=15) as client:
        assert client.get("/api/runs").status_code == 200
        assert client.post("/api/runs/vae/decode", json={"z": [[0, 0]], "format": "raw"}).status_code == 200
    print(f"{len(requests) + len(RAW)} hostile requests; statuses: "
          f"{dict(sorted((s, statuses.count(s)) for s in set(statuses)))}")
