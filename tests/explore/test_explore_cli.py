"""`vaelab explore` on the command line: it serves until Ctrl-C, warns off loopback, fails in one line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest
import uvicorn

from vaelab.cli import main


def test_serves_the_named_runs_until_ctrl_c(explore_runs, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    server = subprocess.Popen([sys.executable, "-m", "vaelab", "explore", str(explore_runs["vae"]),
                               str(explore_runs["ae"]), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line + server.stderr.read()
        runs = httpx.get(f"{url.group()}/api/runs", timeout=10).json()["runs"]
        assert [run["id"] for run in runs] == ["vae", "ae"]
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=20) == 0
        assert "warning" not in server.stderr.read()
    finally:
        server.kill()


@pytest.fixture
def no_serving(monkeypatch):
    """Everything up to the point where uvicorn would start serving."""
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: sockets[0].close())


def test_a_non_loopback_host_gets_a_token_and_a_warning(explore_runs, no_serving, capsys):
    """Off loopback a token is made up and printed in the URL (the only way in); a given one is used."""
    assert main(["explore", str(explore_runs["vae"]), "--host", "0.0.0.0", "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"serving 1 run\(s\) at http://0\.0\.0\.0:\d+/\?token=[\w-]{24} ", out)
    assert "warning: 0.0.0.0 is not a loopback address" in err
    assert main(["explore", str(explore_runs["vae"]), "--host", "0.0.0.0", "--port", "0", "--token", "my-secret"]) == 0
    assert "/?token=my-secret " in capsys.readouterr().out
    assert main(["explore", str(explore_runs["vae"]), "--port", "0", "--token", "short"]) == 2
    assert capsys.readouterr().err == "vaelab: error: --token must be at least 8 printable characters without spaces\n"


def test_loopback_is_served_without_a_warning(explore_runs, no_serving, capsys):
    assert main(["explore", str(explore_runs["vae"]), "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert "http://127.0.0.1:" in out and "warning" not in err


def test_a_busy_port_is_a_one_line_error(explore_runs, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["explore", str(explore_runs["vae"]), "--port", str(port)]) == 2
    assert re.fullmatch(rf"vaelab: error: cannot listen on 127\.0\.0\.1:{port} \(.+\); choose another --port\n",
                        capsys.readouterr().err)


@pytest.mark.parametrize("args, message", [
    (["missing-run"], "vaelab: error: missing-run: no such run folder\n"),
    (["RUN", "--port", "70000"], "vaelab: error: --port must be between 0 and 65535, got 70000\n"),
    (["RUN", "--host", "no-such-host.invalid"], "vaelab: error: --host no-such-host.invalid: cannot resolve"),
])
def test_bad_arguments_are_one_line_errors(explore_runs, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    args = [str(explore_runs["vae"]) if a == "RUN" else a for a in args]
    assert main(["explore", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
