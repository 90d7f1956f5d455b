"""The demo: `build_demo` on the real BBC data, and `corrigo demo` started and stopped."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter

import psutil
import pytest
from sqlalchemy import func, select

from tests.cli.conftest import corrigo_command
from webapp import demo
from webapp.extensions import db
from webapp.models import (
    Annotation,
    ApiKey,
    Feedback,
    Item,
    ModelVersion,
    Prediction,
    Project,
    RetrainRun,
    Skip,
    User,
)

BBC_ITEMS = 2127


@pytest.fixture(scope="module")
def articles():
    """The BBC articles, read once for the module."""
    return demo.load_bbc()


def test_seed_sample_is_stratified_exact_and_deterministic(articles):
    seed = demo.seed_sample(articles, 300)
    assert len(seed) == 300 == len({a.external_id for a in seed})
    everyone = Counter(a.label for a in articles)
    for label, count in Counter(a.label for a in seed).items():
        assert abs(count - 300 * everyone[label] / len(articles)) < 1
    shuffled = list(articles)
    random.Random(7).shuffle(shuffled)
    assert {a.external_id for a in demo.seed_sample(shuffled, 300)} == {a.external_id for a in seed}


def bearer(key: str) -> dict:
    """The Authorization header for an API key."""
    return {"Authorization": f"Bearer {key}"}


def test_build_demo_makes_the_project_logins_and_key_and_is_idempotent(app, client):
    first = demo.build_demo()
    assert (first.items, first.new_items, first.seed_labels, first.labeled) == (
        BBC_ITEMS,
        BBC_ITEMS,
        300,
        300,
    )
    project = db.session.scalar(select(Project))
    assert (project.slug, project.kind, project.template) == ("bbc-news", "text", "text-logreg")
    assert project.labels == demo.BBC_LABELS
    # Seed labels are the articles' true labels (the folder in the external id); no other
    # item carries a label: the expert labels the rest.
    seeded = db.session.execute(
        select(Item.external_id, Item.label).where(Item.label.is_not(None))
    ).all()
    assert len(seeded) == 300
    assert all(ext.split("/")[1] == label for ext, label in seeded)
    annotators = db.session.scalars(select(Annotation.annotator).distinct()).all()
    assert annotators == ["seed:bbc"]
    # The first retrain is queued.
    run = db.session.get(RetrainRun, first.run_id)
    assert run.status == "queued" and run.job_id
    for login in first.logins:
        user = db.session.scalar(select(User).where(User.email == login.email))
        assert user.role == login.role and user.check_password(login.password)
    assert [(login.email, login.role) for login in first.logins] == [
        ("expert@corrigo.local", "annotator"),
        ("engineer@corrigo.local", "engineer"),
    ]
    resp = client.get("/api/v1/projects/bbc-news/queue/next", headers=bearer(first.api_key))
    assert resp.status_code == 200 and resp.get_json()["reason"] == "cold-start"

    second = demo.build_demo()
    assert (second.items, second.new_items, second.seed_labels, second.labeled) == (
        BBC_ITEMS,
        0,
        300,
        300,
    )
    assert second.run_id == first.run_id
    assert db.session.scalar(select(func.count(Item.id))) == BBC_ITEMS
    assert db.session.scalar(select(func.count(Annotation.id))) == 300
    assert db.session.scalar(select(func.count(RetrainRun.id))) == 1
    assert db.session.scalar(select(func.count(User.id))) == 2
    # Passwords and the key are replaced on every build (they are only ever shown once).
    for old, new in zip(first.logins, second.logins, strict=True):
        user = db.session.scalar(select(User).where(User.email == new.email))
        assert user.check_password(new.password) and not user.check_password(old.password)
    live = db.session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None))).all()
    assert len(live) == 1
    url = "/api/v1/projects/bbc-news/models"
    assert client.get(url, headers=bearer(first.api_key)).status_code == 401
    assert client.get(url, headers=bearer(second.api_key)).status_code == 200


def test_reset_rebuilds_from_scratch(app, run_jobs):
    first = demo.build_demo(seed_labels=40)
    run_jobs()  # leaves a run and a (rejected: too few held-out items) model version
    item = db.session.scalar(select(Item).where(Item.label.is_(None)).limit(1))
    prediction = Prediction(project_id=first.project_id, item_id=item.id, label="tech")
    db.session.add(prediction)
    db.session.flush()
    db.session.add(
        Feedback(project_id=first.project_id, prediction_id=prediction.id, correct=False)
    )
    db.session.add(Skip(item_id=item.id, annotator="user:1"))
    db.session.commit()
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 1

    again = demo.build_demo(seed_labels=40, reset=True)
    assert (again.items, again.new_items, again.seed_labels, again.champion) == (
        BBC_ITEMS,
        BBC_ITEMS,
        40,
        None,
    )
    assert db.session.scalar(select(func.count(Project.id))) == 1
    assert db.session.scalar(select(func.count(Item.id))) == BBC_ITEMS
    assert db.session.scalar(select(func.count(Prediction.id))) == 0
    assert db.session.scalar(select(func.count(Feedback.id))) == 0
    assert db.session.scalar(select(func.count(Skip.item_id))) == 0
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0
    assert db.session.scalar(select(RetrainRun.status)) == "queued"


def test_a_foreign_project_under_the_demo_slug_is_not_touched(app, make, corrigo):
    make.make_project("bbc-news", labels=["sport", "politics", "tech"])
    with pytest.raises(demo.DemoError, match="--reset"):
        demo.build_demo()
    result = corrigo("demo", "--port", str(free_port()))
    assert result.exit_code == 2
    assert "is not the demo's; rebuild it with `corrigo demo --reset`" in result.stderr
    assert db.session.scalar(select(func.count(Item.id))) == 0


def test_demo_refuses_a_port_in_use(corrigo):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = corrigo("demo", "--port", str(port))
    assert result.exit_code == 2
    assert "'--port'" in result.stderr and "cannot listen on 127.0.0.1" in result.stderr
    assert db.session.scalar(select(func.count(Project.id))) == 0


# ---------------------------------------------------------------------------------------------
# The real thing: `corrigo demo` with gunicorn, a worker and the embedded Redis


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(proc: psutil.Process) -> bool:
    """Whether a process still runs (a zombie waiting to be reaped does not count)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(read, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    """Wait until the output matches `pattern`; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, read())
        if found:
            return found
        assert proc.poll() is None, read()
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {timeout} s:\n{read()}")


def redis_servers_in(instance: str) -> list[psutil.Process]:
    """The redis-server processes working in the instance folder (the embedded one)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if "redis-server" in (proc.info["name"] or "") and proc.cwd() == instance:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_demo_serves_the_loop_and_stops_cleanly(tmp_path):
    instance = str(tmp_path / "instance")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "CORRIGO_QUEUE", "SECRET_KEY", "PORT")
    }
    env["CORRIGO_INSTANCE"] = instance
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            corrigo_command("demo", "--port", str(port)),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def read() -> str:
        """Everything the demo printed so far."""
        return log.read_text()

    try:
        key = wait_for(read, r"KEY=(cg_\S+)", proc, timeout=300).group(1)
        assert "Press Ctrl-C to stop" in read()
        assert re.search(r"expert@corrigo\.local\s+password \S+", read())
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/login", timeout=10) as resp:
            assert resp.status == 200
        wait_for(read, r"Retrain run \d+ \(\w+\): promoted model v1", proc, timeout=300)
        request = urllib.request.Request(
            f"{base}/api/v1/projects/bbc-news/predict",
            data=json.dumps({"data": {"text": "The minister lost the vote."}}).encode(),
            headers={**bearer(key), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.load(resp)
        assert answer["model_version"] == 1 and answer["label"] in demo.BBC_LABELS
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # worker, gunicorn master and its workers
        servers = redis_servers_in(instance)
        assert len(servers) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=150)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, read()
    assert read().rstrip().endswith("Stopped.")
    deadline = time.monotonic() + 15
    while any(alive(p) for p in [*children, *servers]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in [*children, *servers] if alive(p)]
