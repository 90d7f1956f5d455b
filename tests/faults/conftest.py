"""Real faults for the fault tests: a PostgreSQL cluster and a redis-server each test run starts
(and stops, and restarts) itself, and `corrigo worker` as a real subprocess."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
import redis

PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, poll: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a free port, run as the `postgres` user."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="corrigo-pg-")
        self.data = os.path.join(self.dir, "data")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        else:
            self._as = []
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        """Run one of PostgreSQL's own tools against this cluster."""
        subprocess.run(
            [*self._as, f"{PG_BIN}/{tool}", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = os.path.join(self.dir, "log")
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """Stop the server at once (fast mode: every session is cut off)."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Restart the server (what a minor upgrade or a failover does to the app)."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "restart")

    def destroy(self) -> None:
        """Stop the server if it runs and remove its files."""
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _close_redis(request):
    """Close the test app's Redis connections (a long fault test leaves garbage behind)."""
    app = request.getfixturevalue("app") if "app" in request.fixturenames else None
    yield
    conn = app.extensions.get("redis") if app is not None else None
    if conn is not None:
        conn.connection_pool.disconnect()


@pytest.fixture(scope="session")
def pg_cluster(instance_dir):
    """A migrated PostgreSQL cluster of the test session's own (its server can be restarted)."""
    if not os.path.exists(f"{PG_BIN}/pg_ctl"):
        pytest.skip(f"PostgreSQL's server binaries are not installed in {PG_BIN}")
    from tests.conftest import _upgrade

    cluster = PostgresCluster()
    cluster.start()
    _upgrade(cluster.url, str(instance_dir))
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster):
    """The cluster's database, emptied for this test (and its server running)."""
    from sqlalchemy import create_engine

    from webapp.extensions import db

    if subprocess.run(
        [f"{PG_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(pg_cluster.port)],
        stdout=subprocess.DEVNULL,
    ).returncode:
        pg_cluster.start()
    engine = create_engine(pg_cluster.url)
    with engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
    return pg_cluster.url


@pytest.fixture
def pg_app(pg_url, redis_url):
    """The app on the test session's own PostgreSQL cluster (whose server tests restart)."""
    from webapp import create_app
    from webapp.extensions import db

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": pg_url,
            "REDIS_URL": redis_url,
            "RQ_QUEUE": "corrigo-test-pg",
        }
    )
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
        conn = app.extensions.get("redis")
        if conn is not None:
            conn.connection_pool.disconnect()


class RedisServer:
    """A redis-server of the test's own on a free port, which the test can stop and start."""

    def __init__(self, directory: str):
        self.port = free_port()
        self.dir = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server (its data kept on disk across a stop) and wait until it answers."""
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        conn = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(lambda: _pings(conn), 10, what="redis-server to start")
        conn.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM: it writes its append-only file and exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def _pings(conn: redis.Redis) -> bool:
    try:
        return bool(conn.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_server(tmp_path):
    """A running redis-server for this test only."""
    server = RedisServer(str(tmp_path))
    server.start()
    yield server
    server.stop()


def fault_env(app, **settings: str) -> dict:
    """The environment of a `corrigo` subprocess: the test app's stores, short fault timings."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        CORRIGO_QUEUE=app.config["RQ_QUEUE"],
        CORRIGO_INSTANCE=app.instance_path,
        SECRET_KEY="test",
        OMP_NUM_THREADS="1",
        CORRIGO_SWEEP_SECONDS="1",
        CORRIGO_HEARTBEAT_SECONDS="1",
        CORRIGO_HEARTBEAT_GRACE="2",
        CORRIGO_REDIS_RETRY_MAX="1",
    )
    env.update(settings)
    return env


class Workers:
    """`corrigo worker` subprocesses, each in its own process group (as a service manager runs
    it); every one left is stopped after the test."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, env: dict, *args: str) -> subprocess.Popen:
        """Start one worker; its output goes to a file the test can show on failure."""
        out = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "webapp", "worker", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.out = out
        self.procs.append(proc)
        return proc

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        """What the worker printed so far."""
        proc.out.seek(0)
        return proc.out.read()

    @staticmethod
    def horse(proc: subprocess.Popen, timeout: float = 60) -> psutil.Process:
        """The work horse the worker forked for its current job."""
        parent = psutil.Process(proc.pid)
        return wait_until(lambda: next(iter(parent.children()), None), timeout, what="a work horse")

    def stop_all(self) -> None:
        """Kill every worker and its horses (the test is over)."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    for child in psutil.Process(proc.pid).children(recursive=True):
                        child.kill()
                except psutil.NoSuchProcess:
                    pass
                proc.kill()
            proc.wait(timeout=30)
            proc.out.close()


@pytest.fixture
def workers():
    """Start `corrigo worker` subprocesses; all are gone after the test."""
    started = Workers()
    yield started
    started.stop_all()
