"""Two clients trickling a body must not stall the service: the Procfile's web server, for real."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from webapp.demo import _gunicorn_flags

ROOT = Path(__file__).resolve().parents[2]
# Generous: a prompt answer takes milliseconds; a stalled server never answers at all.
ANSWER_WITHIN = 5.0


def procfile_web() -> str:
    """The Procfile's `web` command, as written."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web":
            return command.strip()
    raise AssertionError("the Procfile has no web line")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float) -> int:
    """GET url and return the status."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status


@pytest.fixture
def web_server(child_env, tmp_path):
    """Start the Procfile's web command on a free port; stop it after the test."""
    port = free_port()
    env = dict(child_env, PORT=str(port))
    log = open(tmp_path / "gunicorn.log", "w+")  # noqa: SIM115 - closed below
    command = procfile_web()
    if "--no-control-socket" in _gunicorn_flags():
        # Newer gunicorns open a control socket at one path per user; do not clash with a demo.
        command += " --no-control-socket"
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if get(base + "/login", 2) == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"gunicorn did not start:\n{log.read()}")
        time.sleep(0.2)
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def trickle(port: int, stop: threading.Event) -> None:
    """Start a POST announcing a large body, then send it one byte at a time until told to stop."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        while not stop.wait(0.2):
            try:
                sock.sendall(b"a")
            except OSError:
                return


def test_two_slow_clients_do_not_stall_a_normal_request(web_server):
    assert re.search(r"\bgunicorn\b", procfile_web())
    stop = threading.Event()
    slow = [threading.Thread(target=trickle, args=(web_server, stop)) for _ in range(2)]
    for thread in slow:
        thread.start()
    try:
        time.sleep(1.5)  # both slow requests are in the server, each mid-body
        started = time.monotonic()
        status = get(f"http://127.0.0.1:{web_server}/login", ANSWER_WITHIN)
        waited = time.monotonic() - started
    finally:
        stop.set()
        for thread in slow:
            thread.join(timeout=10)
    assert status == 200
    assert waited < ANSWER_WITHIN
