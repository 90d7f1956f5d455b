"""The totals across real processes: the Procfile's gunicorn (2 workers) and `corrigo worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.conftest import wait_until
from tests.ops.conftest import scrape
from tests.security.test_slow_clients import free_port, procfile_web
from webapp import jobs
from webapp.demo import _gunicorn_flags

ROOT = Path(__file__).resolve().parents[2]
HEALTHZ = ("corrigo_http_requests_total", (("method", "GET"), ("route", "/healthz")))


@pytest.fixture
def child_env(app, tmp_path):
    """The environment of a child process on the test app's database, Redis and queue."""
    return dict(
        os.environ,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        CORRIGO_QUEUE=app.config["RQ_QUEUE"],
        CORRIGO_INSTANCE=str(tmp_path),
        SECRET_KEY="test",
        OMP_NUM_THREADS="1",
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    )


def get(url: str) -> str:
    """GET `url` on a new connection (urllib closes it) and return the body; 200 expected."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def healthz_count(text: str) -> float:
    """How many GET /healthz answered 200 a scrape's text says there were."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == HEALTHZ[0] and sample.labels == {
                "method": "GET",
                "route": "/healthz",
                "status": "200",
            }:
                return sample.value
    return 0.0


@pytest.fixture
def gunicorn(child_env, tmp_path):
    """The Procfile's web command on a free port, logging each request's worker pid."""
    port = free_port()
    access = tmp_path / "access.log"
    command = f"{procfile_web()} --access-logfile {access} --access-logformat '%(p)s %(U)s'"
    assert "--workers 2" in command
    if "--no-control-socket" in _gunicorn_flags():
        command += " --no-control-socket"
    log = open(tmp_path / "gunicorn.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        env=dict(child_env, PORT=str(port)),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    master = psutil.Process(proc.pid)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"gunicorn exited:\n{log.read()}")
        try:
            return len(master.children()) == 2 and get(base + "/readyz") is not None
        except OSError:
            return False

    wait_until(up, 60, 0.2, what="gunicorn and its 2 workers")
    try:
        yield base, master.children(), access
    finally:
        for worker in master.children():
            worker.resume()  # a stopped worker would ignore the SIGTERM below
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_scrape_on_either_gunicorn_worker_sees_the_totals_of_both(gunicorn):
    base, (first, second), access = gunicorn

    def only(worker: psutil.Process, healthz: int, total: float) -> None:
        """With the other worker stopped (SIGSTOP: it cannot accept), let `worker` answer
        `healthz` requests, then see its scrapes reach the total of both."""
        other = second if worker is first else first
        other.send_signal(signal.SIGSTOP)
        try:
            for _ in range(healthz):
                get(base + "/healthz")
            # Each request is recorded as its response closes, a moment after the client has it.
            wait_until(lambda: healthz_count(get(base + "/metrics")) >= total, 10, what="totals")
            assert healthz_count(get(base + "/metrics")) == total
        finally:
            other.send_signal(signal.SIGCONT)

    only(first, 3, 3)
    only(second, 5, 8)  # the second worker sees the first one's 3
    only(first, 0, 8)  # and the first the second one's 5

    def served_by() -> dict[int, set[str]]:
        pids: dict[int, set[str]] = {}
        for line in access.read_text().splitlines():
            pid, path = line.split(" ", 1)
            pids.setdefault(int(pid.strip("<>")), set()).add(path)
        return pids

    # gunicorn's own log agrees: both workers answered /healthz and /metrics.
    def both_served() -> bool:
        pids = served_by()
        return all({"/healthz", "/metrics"} <= pids.get(w.pid, set()) for w in (first, second))

    wait_until(both_served, 10, what="the access log")


def test_a_job_run_by_a_corrigo_worker_process_shows_in_the_scrape(app, client, child_env):
    jobs.enqueue("worker.jobs.rescore", 2**31 - 1)
    started = time.monotonic()
    # The real command, with RQ's forking worker: the job runs in a work horse.
    done = subprocess.run(
        [sys.executable, "-m", "webapp", "worker", "--burst"],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    seen = scrape(client)
    rescore = {"function": "worker.jobs.rescore"}
    assert seen.value("corrigo_job_duration_seconds_count", **rescore) == 1
    assert 0 < seen.value("corrigo_job_duration_seconds_sum", **rescore) < elapsed
    assert seen.value("corrigo_job_failures_total", **rescore) == 0
    assert seen.value("corrigo_queue_depth", queue=app.config["RQ_QUEUE"]) == 0


EMBEDDED = """
from webapp import create_app, jobs
app = create_app({"TESTING": True, "SECRET_KEY": "t", "REDIS_URL": ""})
client = app.test_client()
for path in ("/healthz", "/readyz", "/metrics"):
    with client.get(path) as response:
        assert response.status_code == 200, (path, response.data)
with app.app_context():
    print(jobs.get_redis().pid)
"""


def test_the_embedded_redis_still_stops_with_the_process(child_env, tmp_path):
    # Metrics and probes hold connections of their own to the embedded server; they must not
    # keep it running after the process that started it exits.
    env = {k: v for k, v in child_env.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    server = int(done.stdout.split()[-1])
    wait_until(lambda: not psutil.pid_exists(server), 10, what="the embedded Redis to stop")
