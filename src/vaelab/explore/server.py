"""The explorer's ASGI app: a small JSON API over the served runs, plus one static page.

Requests are validated at the edge (pydantic models, a body-size cap, the run's
latent size) and answered with 4xx `{"detail": "..."}` errors; model work runs
in worker threads so a large request never blocks the event loop, at most
MAX_WORK_PER_CLIENT at a time per client so one client cannot starve the others.
Runs are addressed by id only: no request names a file. The Host header must
name this server (a DNS-rebinding page cannot reach the API), and off loopback
every request needs the token that `serve` prints in its URL.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from vaelab import __version__
from vaelab.errors import VaelabError
from vaelab.explore.served import LATENT_BOUND, ServedRun, cached_classifier, load_runs

STATIC = Path(__file__).parent / "static"
MAX_POINTS = 1024  # latent points per decode / classify request (a 32 x 32 overlay grid)
MAX_BODY_BYTES = 1 << 20  # 1 MiB: 1024 points of latent size 32 written out in full fit easily
MAX_WORK_PER_CLIENT = 2  # model calls one client address may have running at once; more wait their turn
MAX_QUEUED_PER_CLIENT = 64  # beyond this many waiting requests a client gets 429
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
TOKEN_COOKIE = "vaelab_token"

Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-LATENT_BOUND, le=LATENT_BOUND)]


class Points(BaseModel):
    model_config = ConfigDict(extra="forbid")
    z: list[list[Coordinate]] = Field(min_length=1, max_length=MAX_POINTS,
                                      description="latent points, each with latent_dim coordinates")


class DecodeRequest(Points):
    format: Literal["png", "raw"] = Field("png", description="png: one image strip; raw: uint8 bytes [N, C, H, W]")
    label: int | None = Field(None, ge=0, description="a conditional run's class to decode every point with "
                                                        "(its info says 'conditional'); none: no label")


class ReconstructRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int | None = Field(None, ge=0, description="a test-set image, by position")
    pixels: list[Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]] | None = Field(
        None, description="or an image of the run's shape, C*H*W grey levels in [0, 1], row-major")

    @model_validator(mode="after")
    def one_source(self) -> ReconstructRequest:
        if (self.index is None) == (self.pixels is None):
            raise ValueError("give exactly one of 'index' and 'pixels'")
        return self


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether announced or streamed (ASGI middleware)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = JSONResponse({"detail": f"request body larger than {self.max_bytes} bytes"}, status_code=413)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit():
            return await JSONResponse({"detail": "invalid Content-Length header"}, 400)(scope, receive, send)
        if int(declared) > self.max_bytes:
            return await too_large(scope, receive, send)
        body, more = bytearray(), True
        while more:  # buffer the (small) body so its true size is known before the app sees it
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def host_name(header: str) -> str:
    """The name in a Host header, without port or brackets: '[::1]:8765' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0].rstrip(".") if header.count(":") == 1 else header.rstrip(".")


class Guard:
    """Refuse requests whose Host header names another server (403) and, when a token is set, requests that do
    not carry it as a cookie, `Authorization: Bearer`, `X-Vaelab-Token` or `?token=` (401) (ASGI middleware)."""

    def __init__(self, app, token: str | None, hosts: frozenset[str] | None):
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        if self.hosts is not None and host_name(request.headers.get("host", "")) not in self.hosts:
            return await JSONResponse({"detail": "this explorer does not serve that Host name"}, 403)(
                scope, receive, send)
        if self.token is not None:
            authorization = request.headers.get("authorization", "")
            given = (request.cookies.get(TOKEN_COOKIE) or request.headers.get("x-vaelab-token")
                     or (authorization[7:] if authorization.lower().startswith("bearer ") else None)
                     or request.query_params.get("token") or "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return await JSONResponse({"detail": "this explorer needs its token: open the URL it printed "
                                                     "(ending in ?token=...)"}, 401)(scope, receive, send)
        await self.app(scope, receive, send)


@dataclass
class ClientQueue:
    """One client address's model calls: how many may run at once, and how many wait."""

    running: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_WORK_PER_CLIENT))
    waiting: int = 0


async def one_line_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's list of errors as one sentence: where, what, and how many more."""
    errors = exc.errors()
    first = errors[0]
    what = str(first.get("ctx", {}).get("error", first["msg"]))  # without pydantic's "Value error, " prefix
    if first["type"] == "json_invalid":
        message = f"malformed JSON body: {what}"
    else:
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        message = f"{where}: {what}" if where else what
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return JSONResponse({"detail": message}, status_code=422)


def create_app(run_dirs: list[str | Path], find_classifier=cached_classifier, *, token: str | None = None,
               hosts: frozenset[str] | None = None) -> FastAPI:
    """The explorer for these run folders, loaded now (a bad folder raises VaelabError here).

    `find_classifier(data) -> (classifier or None, reason)` supplies the overlay's reference classifier;
    `token`, when given, is required of every request; `hosts`, when given, are the only Host names served
    (`serve` always passes them)."""
    runs = load_runs(run_dirs, find_classifier)
    queues: dict[str, ClientQueue] = {}
    app = FastAPI(title="vaelab explore", version=__version__,
                  description="Move through the latent spaces of trained vaelab runs. See docs/explore.md.")
    app.state.runs = runs
    app.add_exception_handler(RequestValidationError, one_line_validation_error)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(Guard, token=token, hosts=hosts)  # added last, so it runs first
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def get_run(run_id: str) -> ServedRun:
        if run_id not in runs:
            raise HTTPException(404, f"unknown run {run_id!r}; served runs: {', '.join(runs)}")
        return runs[run_id]

    def checked_points(run: ServedRun, z: list[list[float]]) -> tuple[tuple[float, ...], ...]:
        for i, point in enumerate(z):
            if len(point) != run.latent_dim:
                raise HTTPException(422, f"z.{i}: has {len(point)} coordinates, run {run.id!r} has "
                                         f"latent_dim {run.latent_dim}")
        return tuple(map(tuple, z))

    async def model_work(request: Request, work, *args):
        """Run `work` in a worker thread, at most MAX_WORK_PER_CLIENT at a time for the client's address."""
        client = request.client.host if request.client else ""
        queue = queues.setdefault(client, ClientQueue())
        if queue.waiting >= MAX_QUEUED_PER_CLIENT:
            raise HTTPException(429, f"more than {MAX_QUEUED_PER_CLIENT} requests of yours are waiting; "
                                     f"wait for their answers")
        queue.waiting += 1
        try:
            async with queue.running:
                return await run_in_threadpool(work, *args)
        finally:
            queue.waiting -= 1
            if not queue.waiting:
                queues.pop(client, None)

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> FileResponse:
        response = FileResponse(STATIC / "index.html")
        if token is not None and request.query_params.get("token") == token:  # the page's requests carry it
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/api/runs", summary="The served runs and the request limits")
    def list_runs() -> dict:
        return {"runs": [run.info() for run in runs.values()],
                "limits": {"max_points": MAX_POINTS, "latent_bound": LATENT_BOUND, "max_body_bytes": MAX_BODY_BYTES}}

    @app.get("/api/runs/{run_id}/codes", summary="Test-set codes (posterior means), labels, ranges and PCA axes")
    def codes(run_id: str) -> Response:
        return Response(get_run(run_id).codes_json, media_type="application/json")

    @app.post("/api/runs/{run_id}/decode", summary="Decode latent points to images (PNG strip or raw bytes)",
              responses={200: {"content": {"image/png": {}, "application/octet-stream": {}}}})
    async def decode(run_id: str, request: DecodeRequest, http: Request) -> Response:
        run = get_run(run_id)
        if request.label is not None and not (run.conditional and request.label < len(run.data.classes)):
            raise HTTPException(422, f"label: run {run_id!r} " + (
                f"has classes 0-{len(run.data.classes) - 1}" if run.conditional else "does not condition on labels"))
        data = await model_work(http, run.decode, checked_points(run, request.z), request.format, request.label)
        shape = ",".join(map(str, (len(request.z), *run.image_shape)))
        media = "image/png" if request.format == "png" else "application/octet-stream"
        return Response(data, media_type=media, headers={"X-Image-Shape": shape})

    @app.post("/api/runs/{run_id}/classify",
              summary="The reference classifier's guess for decoded latent points, and which points are holes")
    async def classify(run_id: str, request: Points, http: Request) -> dict:
        run = get_run(run_id)
        if run.classifier is None:
            raise HTTPException(409, run.classifier_reason)
        labels, confidence, hole, ratio = await model_work(http, run.classify, checked_points(run, request.z))
        return {"labels": labels, "confidence": confidence, "hole": hole, "ball_ratio": ratio}

    @app.post("/api/runs/{run_id}/reconstruct", summary="Code and reconstruction of a test image or given pixels")
    async def reconstruct(run_id: str, request: ReconstructRequest, http: Request) -> dict:
        run = get_run(run_id)
        if request.index is not None:
            if request.index >= len(run.test_x):
                raise HTTPException(422, f"index: {request.index} is past the last test image "
                                         f"({len(run.test_x) - 1})")
            x = run.test_x[request.index]
            label = int(run.data.test_labels[request.index]) if run.data.classes else None  # None: unlabelled
        else:
            expected = torch.Size(run.image_shape).numel()
            if len(request.pixels) != expected:
                raise HTTPException(422, f"pixels: has {len(request.pixels)} values, run {run.id!r} takes "
                                         f"{'x'.join(map(str, run.image_shape))} = {expected}")
            x, label = torch.tensor(request.pixels, dtype=torch.float32).view(run.image_shape), None
        return {"label": label, **await model_work(http, run.reconstruct, x)}

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a busy port or unknown host is a one-line error before serving starts."""
    if not 0 <= port <= 65535:
        raise VaelabError(f"--port must be between 0 and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise VaelabError(f"--host {host}: cannot resolve ({exc.strerror})") from None
    # proto must say TCP: asyncio switches Nagle's algorithm off (TCP_NODELAY) only on sockets that do,
    # and with it on, a keep-alive client waits ~40 ms for every response written in two parts
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)  # connections wait in the backlog from now on, even before uvicorn accepts them
    except OSError as exc:
        sock.close()
        raise VaelabError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    return sock


def allowed_hosts(host: str, address: str) -> frozenset[str] | None:
    """The Host names to serve: loopback names, plus the --host name off loopback; any name on a wildcard
    address (0.0.0.0, ::), whose names cannot be known - the token guards those."""
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return None
    return LOOPBACK_NAMES if ip.is_loopback else LOOPBACK_NAMES | {host_name(host), address}


def serve(run_dirs: list[str | Path], host: str, port: int, token: str | None = None) -> None:
    """Load the runs, bind, print the URL and serve until Ctrl-C. Off loopback a token is required (one is
    made up when none is given) and the printed URL carries it."""
    if token is not None and (len(token) < 8 or not token.isprintable() or " " in token):
        raise VaelabError("--token must be at least 8 printable characters without spaces")
    try:
        resolved = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0].split("%")[0]
    except socket.gaierror as exc:
        raise VaelabError(f"--host {host}: cannot resolve ({exc.strerror})") from None
    if not ipaddress.ip_address(resolved).is_loopback and token is None:
        token = secrets.token_urlsafe(18)
    app = create_app(run_dirs, token=token, hosts=allowed_hosts(host, resolved))
    sock = bind(host, port)
    address, bound_port = sock.getsockname()[:2]
    if not ipaddress.ip_address(address).is_loopback:
        print(f"vaelab: warning: {host} is not a loopback address: anyone on the network who has the URL below "
              f"(with its token) can use the explorer", file=sys.stderr)
    shown = f"[{address}]" if ":" in address else address
    query = f"/?token={token}" if token is not None else ""
    print(f"vaelab explore: serving {len(run_dirs)} run(s) at http://{shown}:{bound_port}{query} (Ctrl-C to stop)",
          flush=True)
    # Requests are small and many: one core per request (in parallel threads) beats splitting
    # each tiny forward pass over all cores, which only adds synchronisation.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then re-raises Ctrl-C: the normal way to stop
        pass
    finally:
        torch.set_num_threads(threads)
