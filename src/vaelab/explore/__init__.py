"""`vaelab explore`: a local web app to move through latent spaces and watch the decoders.

    vaelab.explore(["runs/ae", "runs/vae"])    # serves http://127.0.0.1:8765 until Ctrl-C

`vaelab.explore.server.create_app(run_dirs)` builds the ASGI app itself (for a
test client or another server). The JSON API is documented in docs/explore.md
and, live, at /docs (OpenAPI).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def explore(runs: list[str | Path], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
            token: str | None = None) -> None:
    """Serve the explorer for these run folders on http://host:port until Ctrl-C (port 0: any free port).
    Off loopback every request needs `token` (one is made up and printed in the URL when none is given)."""
    from vaelab.explore.server import serve  # FastAPI and uvicorn load only when exploring

    serve(runs, host, port, token)
