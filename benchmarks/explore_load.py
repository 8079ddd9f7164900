"""Load on `vaelab explore`: concurrent loopback clients decoding latent points, as mouse moves do.

    python benchmarks/explore_load.py                      # trains a 1-epoch book VAE on mnist-sample first
    python benchmarks/explore_load.py --run runs/vae --clients 8 --requests 500 --json explore_load.json

The server is started as a user starts it (`python -m vaelab explore RUN --port 0`) in its own process.
Each client is a thread with one keep-alive connection that sends its requests back to back, each a
different random point (so none is answered from the decode cache). Prints a table, writes JSON, and
never asserts on time: the goal (p99 < 25 ms on 2 cores, zero errors) is read from the report.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import vaelab

GOAL_P99_MS = 25.0
DEFAULT_JSON = Path(__file__).parent / "results" / "explore_load.json"


def book_run(folder: Path) -> Path:
    """The book's VAE (conv net, 2-D latent), one epoch on the built-in MNIST sample: the decoder's cost
    does not depend on how long it trained."""
    config = vaelab.preset("book-vae").replace(train={"epochs": 1}, data={"dataset": "mnist-sample"})
    vaelab.train(config, folder, show_progress=False)
    return folder


def start_server(run: Path) -> tuple[subprocess.Popen, str, int]:
    server = subprocess.Popen([sys.executable, "-m", "vaelab", "-q", "explore", str(run), "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    found = re.search(r"http://([\d.]+):(\d+)", line)
    if not found:
        server.kill()
        sys.exit(f"the explorer did not start: {line!r}")
    return server, found.group(1), int(found.group(2))


def connect(host: str, port: int) -> http.client.HTTPConnection:
    """A keep-alive connection without Nagle's algorithm, as browsers open them: http.client sends a POST's
    headers and body in two writes, and Nagle + delayed ACKs would add ~40 ms to every request."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def http_get(host: str, port: int, path: str) -> bytes:
    connection = connect(host, port)
    connection.request("GET", path)
    body = connection.getresponse().read()
    connection.close()
    return body


def client(host: str, port: int, path: str, bodies: list[bytes], latencies: list[float], errors: list[str]) -> None:
    connection = connect(host, port)
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        started = time.perf_counter()
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            connection.close()
            connection = connect(host, port)
        latencies.append(time.perf_counter() - started)
    connection.close()


def bodies_for(rng: random.Random, n: int, latent_dim: int, fmt: str) -> list[bytes]:
    return [json.dumps({"z": [[rng.uniform(-3, 3) for _ in range(latent_dim)]], "format": fmt}).encode()
            for _ in range(n)]


def run_load(host: str, port: int, path: str, latent_dim: int, clients: int, requests: int, fmt: str,
             seed: int) -> dict:
    rng = random.Random(seed)
    work = [bodies_for(rng, requests, latent_dim, fmt) for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    threads = [threading.Thread(target=client, args=(host, port, path, work[i], latencies[i], errors))
               for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ms = np.array([t for per_client in latencies for t in per_client]) * 1000
    return {"clients": clients, "requests_per_client": requests, "requests": int(ms.size), "format": fmt,
            "errors": len(errors), "error_examples": sorted(set(errors))[:5], "seconds": round(seconds, 3),
            "requests_per_s": round(ms.size / seconds, 1),
            **{f"{name}_ms": round(float(np.percentile(ms, q)), 2)
               for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="run folder to serve (default: train the book VAE for 1 epoch)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="decode requests per client")
    parser.add_argument("--format", choices=("raw", "png"), default="raw", help="raw is what the page asks for")
    parser.add_argument("--warmup", type=int, default=100, help="requests before timing starts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default: {DEFAULT_JSON})")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or book_run(Path(tmp) / "book-vae")
        latent_dim = vaelab.load(run).config.latent_dim
        server, host, port = start_server(run)
        try:
            path = f"/api/runs/{json.loads(http_get(host, port, '/api/runs'))['runs'][0]['id']}/decode"
            run_load(host, port, path, latent_dim, 1, args.warmup, args.format, args.seed + 1)
            result = run_load(host, port, path, latent_dim, args.clients, args.requests, args.format, args.seed)
        finally:
            server.terminate()
            server.wait(30)

    result.update({"run": str(args.run or "book-vae, 1 epoch on mnist-sample"), "latent_dim": latent_dim,
                   "goal_p99_ms": GOAL_P99_MS, "cpu_count": os.cpu_count(),
                   "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
                   "python": platform.python_version(), "torch": torch.__version__, "vaelab": vaelab.__version__})
    print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'req/s':>7}")
    print(f"{result['clients']:>7} {result['requests']:>8} {result['errors']:>6} {result['p50_ms']:>7.2f} "
          f"{result['p90_ms']:>7.2f} {result['p99_ms']:>7.2f} {result['max_ms']:>7.2f} "
          f"{result['requests_per_s']:>7.1f}")
    print(f"goal p99 < {GOAL_P99_MS:g} ms with zero errors: "
          f"{'met' if result['p99_ms'] < GOAL_P99_MS and not result['errors'] else 'not met'} "
          f"({result['cpu_count']} CPUs; 1-min load average {load_before:.1f} before the run, "
          f"{result['load_average_1min']['after']:.1f} after)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
