"""The authorization matrix of the web side: every operation x 16 credentials.

Credentials: nobody; each role as a member of `news` and as a member of no project; a disabled
member; and cookies that must be worth nothing (copied before a logout, from before a password
change, a remember-me cookie from before a logout, one signed with another key, one in the old
id-only form, one with a wrong session token). A denied request answers the login redirect,
403 or 404 (never the page), and changes nothing; an allowed one is served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import func, select, update

from tests.factories import make_items, make_version, queue_retrain
from tests.security.conftest import PASSWORD
from webapp import abtests
from webapp.extensions import db
from webapp.models import (
    Alert,
    Annotation,
    ApiKey,
    Experiment,
    Item,
    Membership,
    ModelEvent,
    ModelVersion,
    Resolution,
    RetrainRun,
    Skip,
    Task,
    User,
    utcnow,
)

RUN_ROLES = ("reviewer", "engineer", "admin")


@dataclass
class Op:
    """One web operation: how to call it, who may, and how to see that it took effect."""

    endpoint: str
    method: str
    path: Callable[[dict], str]
    allowed: Callable[[str, bool], bool]  # (role, member of news) -> may they?
    data: Callable[[dict], dict] = lambda ctx: {}
    effect: Callable[[dict], bool] | None = None  # did the change happen?


def anyone_logged_in(role, member):
    """Every logged-in user may."""
    return True


def member_any_role(role, member):
    """Members of the project (any role) and admins may."""
    return member or role == "admin"


def member_run_role(role, member):
    """Members who are reviewers or engineers, and admins, may."""
    return role in RUN_ROLES and member_any_role(role, member)


def member_engineer(role, member):
    """Members who are engineers, and admins, may."""
    return role in ("engineer", "admin") and member_any_role(role, member)


def admin_only(role, member):
    """Only admins may."""
    return role == "admin"


def count(model, *where) -> int:
    """Count the rows of `model` matching `where`, read afresh."""
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def excluded(item_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(Item, item_id).excluded_at is not None


EXPERIMENT_FORM = {
    "share": "0.5",
    "mode": "ab",
    "primary_metric": "accuracy",
    "guardrails": "correction_rate",
    "alpha": "0.05",
    "mde": "0.03",
    "min_units": "100",
}


def latest_experiment() -> int:
    """The newest experiment of `news` (the matrix's start makes one; the context has one)."""
    db.session.expire_all()
    return db.session.scalar(select(func.max(Experiment.id)))


def models_ids(project) -> list[int]:
    """The ids of `news`'s candidate versions, oldest first."""
    return db.session.scalars(
        select(ModelVersion.id)
        .where(ModelVersion.project_id == project.id, ModelVersion.status == "candidate")
        .order_by(ModelVersion.version)
    ).all()


def latest_experiment_row():
    return db.session.get(Experiment, latest_experiment())


def status_of(version: int) -> str:
    """The status of `news`'s model version `version`, read afresh."""
    db.session.expire_all()
    return db.session.scalar(select(ModelVersion.status).where(ModelVersion.version == version))


def alert_state(alert_id: int) -> str:
    """The state of an alert, read afresh."""
    db.session.expire_all()
    return db.session.get(Alert, alert_id).state


def victim(ctx) -> User:
    """The operation's target user."""
    return db.session.get(User, ctx["victim"])


def victim_key(ctx) -> ApiKey:
    """The operation's target API key, read afresh."""
    db.session.expire_all()
    return db.session.get(ApiKey, ctx["key"])


OPS = [
    Op("monitor.projects", "GET", lambda c: "/projects", anyone_logged_in),
    Op("monitor.project", "GET", lambda c: "/projects/news", member_any_role),
    Op("annotate.next_item", "GET", lambda c: "/projects/news/annotate", member_any_role),
    Op(
        "annotate.submit",
        "POST",
        lambda c: f"/projects/news/annotate/{c['item']}",
        member_any_role,
        data=lambda c: {"label": "sport"},
        effect=lambda c: count(Annotation, Annotation.item_id == c["item"]) > 0,
    ),
    Op(
        "annotate.skip",
        "POST",
        lambda c: f"/projects/news/annotate/{c['item']}/skip",
        member_any_role,
        effect=lambda c: count(Skip, Skip.item_id == c["item"]) > 0,
    ),
    Op(
        "annotate.exclude",
        "POST",
        lambda c: f"/projects/news/annotate/{c['item']}/exclude",
        member_engineer,
        data=lambda c: {"reason": "garbled text"},
        effect=lambda c: excluded(c["item"]),
    ),
    Op("annotate.excluded", "GET", lambda c: "/projects/news/excluded", member_engineer),
    Op(
        "annotate.exclude_by_id",
        "POST",
        lambda c: "/projects/news/excluded",
        member_engineer,
        data=lambda c: {"item_id": str(c["item"]), "reason": "garbled text"},
        effect=lambda c: excluded(c["item"]),
    ),
    Op(
        "annotate.restore",
        "POST",
        lambda c: f"/projects/news/excluded/{c['excluded']}/restore",
        member_engineer,
        effect=lambda c: not excluded(c["excluded"]),
    ),
    Op("annotate.show_item", "GET", lambda c: f"/projects/news/items/{c['item']}", member_run_role),
    # The expert's own history: each credential acts on their own answers and skips (none
    # here), so an allowed request is served (a redirect with a message) and changes nothing.
    Op(
        "annotate.show_history", "GET", lambda c: "/projects/news/annotate/history", member_any_role
    ),
    Op("annotate.undo", "POST", lambda c: "/projects/news/annotate/undo", member_any_role),
    Op(
        "annotate.edit",
        "POST",
        lambda c: f"/projects/news/annotate/history/{c['item']}",
        member_any_role,
        data=lambda c: {"label": "sport"},
    ),
    Op(
        "annotate.bring_back",
        "POST",
        lambda c: f"/projects/news/annotate/skipped/{c['item']}",
        member_any_role,
    ),
    Op("monitor.monitor", "GET", lambda c: "/projects/news/monitor", member_run_role),
    Op("monitor.alerts", "GET", lambda c: "/projects/news/alerts", member_run_role),
    Op("review.agreement", "GET", lambda c: "/projects/news/agreement", member_run_role),
    Op("review.queue", "GET", lambda c: "/projects/news/review", member_run_role),
    Op(
        "review.resolve",
        "POST",
        lambda c: f"/projects/news/review/{c['item']}",
        member_run_role,
        data=lambda c: {"label": "tech", "reason": "the matrix"},
        effect=lambda c: count(Resolution, Resolution.item_id == c["item"]) > 0,
    ),
    Op(
        "review.hunt",
        "POST",
        lambda c: "/projects/news/review/suspects",
        member_run_role,
        effect=lambda c: count(Task, Task.name == "suspects") > 0,
    ),
    Op(
        "monitor.acknowledge",
        "POST",
        lambda c: f"/projects/news/alerts/{c['alert']}/acknowledge",
        member_engineer,
        effect=lambda c: alert_state(c["alert"]) == "acknowledged",
    ),
    Op("runs.index", "GET", lambda c: "/projects/news/runs", member_run_role),
    Op("runs.show", "GET", lambda c: f"/projects/news/runs/{c['run']}", member_run_role),
    Op(
        "runs.start",
        "POST",
        lambda c: "/projects/news/runs",
        member_engineer,
        # The queued run already exists; starting one joins it, so look at the trigger count.
        effect=lambda c: count(RetrainRun) > c["runs"],
    ),
    Op("runs.models", "GET", lambda c: "/projects/news/models", member_run_role),
    Op(
        "runs.model_version",
        "GET",
        lambda c: f"/projects/news/models/{c['model']}",
        member_run_role,
    ),
    Op(
        "runs.promote",
        "POST",
        lambda c: f"/projects/news/models/{c['model']}/promote",
        member_engineer,
        data=lambda c: {"reason": "better"},
        effect=lambda c: status_of(c["model"]) == "champion",
    ),
    Op(
        "runs.reject",
        "POST",
        lambda c: f"/projects/news/models/{c['model']}/reject",
        member_engineer,
        data=lambda c: {"reason": "worse"},
        effect=lambda c: status_of(c["model"]) == "rejected",
    ),
    Op(
        "runs.make_challenger",
        "POST",
        lambda c: f"/projects/news/models/{c['model']}/challenger",
        member_engineer,
        data=lambda c: {"reason": "compare"},
        effect=lambda c: status_of(c["model"]) == "challenger",
    ),
    Op(
        "runs.rollback",
        "POST",
        lambda c: "/projects/news/models/rollback",
        member_engineer,
        data=lambda c: {"reason": "regression"},
        effect=lambda c: count(ModelEvent, ModelEvent.action == "rollback") > 0,
    ),
    Op("experiments.index", "GET", lambda c: "/projects/news/experiments", member_run_role),
    Op(
        "experiments.start",
        "POST",
        lambda c: "/projects/news/experiments",
        member_engineer,
        data=lambda c: {**EXPERIMENT_FORM, "challenger_version": str(c["model"])},
        effect=lambda c: count(Experiment) > c["experiments"],
    ),
    Op(
        "experiments.show",
        "GET",
        lambda c: f"/projects/news/experiments/{latest_experiment()}",
        member_run_role,
    ),
    Op(
        "experiments.share",
        "POST",
        lambda c: f"/projects/news/experiments/{latest_experiment()}/share",
        member_engineer,
        data=lambda c: {"share": "0.7"},
        effect=lambda c: count(Experiment, Experiment.share == 0.7) > c["raised"],
    ),
    Op(
        "experiments.stop",
        "POST",
        lambda c: f"/projects/news/experiments/{latest_experiment()}/stop",
        member_engineer,
        data=lambda c: {"decision": "keep", "reason": "enough"},
        effect=lambda c: count(Experiment, Experiment.decision == "keep") > c["kept"],
    ),
    Op(
        "experiments.override",
        "POST",
        lambda c: f"/projects/news/experiments/{latest_experiment()}/override",
        member_engineer,
        data=lambda c: {"decision": "rollback", "reason": "it was worse"},
        effect=lambda c: count(Experiment, Experiment.decision == "rollback") > c["rolled"],
    ),
    Op("auth.password", "GET", lambda c: "/account/password", anyone_logged_in),
    Op("admin.users", "GET", lambda c: "/admin/users", admin_only),
    Op("admin.keys", "GET", lambda c: "/admin/keys", admin_only),
    Op("admin.audit_log", "GET", lambda c: "/admin/audit", admin_only),
    Op(
        "admin.disable",
        "POST",
        lambda c: f"/admin/users/{c['victim']}/disable",
        admin_only,
        effect=lambda c: victim(c).disabled_at is not None,
    ),
    Op(
        "admin.enable",
        "POST",
        lambda c: f"/admin/users/{c['disabled']}/enable",
        admin_only,
        effect=lambda c: db.session.get(User, c["disabled"]).disabled_at is None,
    ),
    Op(
        "admin.reset_password",
        "POST",
        lambda c: f"/admin/users/{c['victim']}/password",
        admin_only,
        effect=lambda c: not victim(c).check_password(PASSWORD),
    ),
    Op(
        "admin.membership",
        "POST",
        lambda c: f"/admin/users/{c['victim']}/members",
        admin_only,
        data=lambda c: {"project": "other", "action": "add"},
        effect=lambda c: count(Membership, Membership.user_id == c["victim"]) > 0,
    ),
    Op(
        "admin.revoke",
        "POST",
        lambda c: f"/admin/keys/{c['key']}/revoke",
        admin_only,
        effect=lambda c: victim_key(c).revoked_at is not None,
    ),
    Op(
        "admin.rotate",
        "POST",
        lambda c: f"/admin/keys/{c['key']}/rotate",
        admin_only,
        effect=lambda c: victim_key(c).revoked_at is not None,
    ),
]


def log_in(client, email: str, remember: bool = False) -> None:
    """Log a client in through the form."""
    client.get("/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    form = {"email": email, "password": PASSWORD, "csrf_token": token}
    if remember:
        form["remember"] = "on"
    response = client.post("/login", data=form)
    assert response.status_code == 302, response.text


def csrf_of(client) -> str:
    """The client's CSRF token (a made-up one for a client without a session)."""
    with client.session_transaction() as sess:
        return sess.setdefault("csrf", "probe-token")


def copy_cookies(source, target, *names: str) -> None:
    """Copy the named cookies from one client to another, as a thief would."""
    for name in names:
        cookie = source.get_cookie(name)
        if cookie is not None:
            target.set_cookie(name, cookie.value)


def logged_out_copy(app, email):
    """A client holding a session cookie copied before its owner logged out."""
    owner, thief = app.test_client(), app.test_client()
    log_in(owner, email)
    copy_cookies(owner, thief, "session")
    owner.post("/logout", data={"csrf_token": csrf_of(owner)})
    return thief


def stale_after_password_change(app, email):
    """A client whose session predates a password change made elsewhere."""
    client = app.test_client()
    log_in(client, email)
    user = db.session.scalar(select(User).where(User.email == email))
    user.set_password("a-new-password")
    db.session.commit()
    return client


def remember_cookie_after_logout(app, email):
    """A client holding only a remember-me cookie issued before a logout."""
    owner, thief = app.test_client(), app.test_client()
    log_in(owner, email, remember=True)
    copy_cookies(owner, thief, "remember_token")
    owner.post("/logout", data={"csrf_token": csrf_of(owner)})
    return thief


def forged_session(app, email):
    """A session cookie naming the user with their real token, signed with another key."""
    user = db.session.scalar(select(User).where(User.email == email))
    other = SimpleNamespace(secret_key="not-the-key", config={"SECRET_KEY_FALLBACKS": []})
    serializer = SecureCookieSessionInterface().get_signing_serializer(other)
    client = app.test_client()
    client.set_cookie(
        "session", serializer.dumps({"_user_id": user.get_id(), "_fresh": True, "csrf": "f"})
    )
    return client


def session_with_user_id(app, email, token: str | None):
    """A validly signed session that names the user by id alone, or with a wrong token."""
    user = db.session.scalar(select(User).where(User.email == email))
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = str(user.id) if token is None else f"{user.id}:{token}"
        sess["_fresh"] = True
    return client


def disabled_member(app, email):
    """A member who was logged in when an admin disabled them."""
    client = app.test_client()
    log_in(client, email)
    user = db.session.scalar(select(User).where(User.email == email))
    from webapp.auth import manage

    manage.disable_user(user, "test")
    db.session.commit()
    return client


# (name, role, member of news, how to get the client); role None means "worth nothing".
CREDENTIALS = [("anonymous", None, False, lambda app: app.test_client())]
for _role in ("annotator", "reviewer", "engineer", "admin"):
    for _where, _member in (("news", True), ("none", False)):
        CREDENTIALS.append(
            (
                f"{_role}@{_where}",
                _role,
                _member,
                lambda app, r=_role, w=_where: _logged_in(app, f"{r}@{w}.example"),
            )
        )
CREDENTIALS += [
    ("disabled engineer@news", None, True, lambda a: disabled_member(a, "engineer@news.example")),
    ("copied before logout", None, True, lambda a: logged_out_copy(a, "admin@news.example")),
    (
        "before password change",
        None,
        True,
        lambda a: stale_after_password_change(a, "admin@news.example"),
    ),
    (
        "remember-me before logout",
        None,
        True,
        lambda a: remember_cookie_after_logout(a, "admin@news.example"),
    ),
    ("forged signature", None, True, lambda a: forged_session(a, "admin@news.example")),
    ("id without token", None, True, lambda a: session_with_user_id(a, "admin@news.example", None)),
    (
        "wrong token",
        None,
        True,
        lambda a: session_with_user_id(a, "admin@news.example", "0" * 32),
    ),
]


def _logged_in(app, email):
    """A client logged in as `email` through the form."""
    client = app.test_client()
    log_in(client, email)
    return client


def _contexts(team, n: int) -> list[dict]:
    """Fresh rows for each of `n` operations: an item, a victim, a disabled user, a key, a
    candidate model version; and one queued run, a champion and a retired version. Built in
    bulk, the victims sharing one password hash (hashing is slow)."""
    news = team["news"]
    items = make_items(news, 2 * n)
    items, excluded_items = items[:n], items[n:]
    # Each op's item also waits for a reviewer (the review queue's decision acts on it).
    db.session.execute(
        update(Item).where(Item.id.in_(items)).values(review_since=utcnow(), review_reason="review")
    )
    for item_id in excluded_items:
        item = db.session.get(Item, item_id)
        item.excluded_at, item.excluded_by, item.excluded_reason = utcnow(), "user:0", "garbled"
    hashed = db.session.scalar(select(User.password_hash).limit(1))
    rows = []
    for i in range(n):
        target = User(email=f"victim{i}@example.com", role="annotator", password_hash=hashed)
        disabled = User(email=f"disabled{i}@example.com", role="annotator", password_hash=hashed)
        disabled.disabled_at = disabled.created_at = utcnow()
        key, _ = ApiKey.generate(news, ["predict"])
        db.session.add_all([target, disabled, key])
        rows.append((target, disabled, key))
    run = queue_retrain(news)
    db.session.commit()
    runs = count(RetrainRun)
    # A candidate model version per operation, and a champion with one before it (rollbacks).
    make_version(news, 1, "retired")
    make_version(news, 2, "champion")
    models = [make_version(news, 3 + i).version for i in range(n)]
    alerts = [Alert(project_id=news.id, metric="volume", message="quiet") for _ in range(n)]
    db.session.add_all(alerts)
    db.session.commit()
    if count(Experiment) == 0:  # one to show before anyone may start one
        abtests.start(news, "test", challenger=db.session.get(ModelVersion, models_ids(news)[0]))
        abtests.stop(latest_experiment_row(), "test", "keep", "set up")
        db.session.commit()
    experiments = {
        "experiments": count(Experiment),
        "raised": count(Experiment, Experiment.share == 0.7),
        "kept": count(Experiment, Experiment.decision == "keep"),
        "rolled": count(Experiment, Experiment.decision == "rollback"),
    }
    return [
        {
            "item": item,
            "excluded": out,
            "victim": target.id,
            "disabled": disabled.id,
            "key": key.id,
            "run": run.id,
            "runs": runs,
            "model": model,
            "alert": alert.id,
            **experiments,
        }
        for item, out, (target, disabled, key), model, alert in zip(
            items, excluded_items, rows, models, alerts, strict=True
        )
    ]


def test_sixteen_credentials():
    assert len(CREDENTIALS) == 16


def test_every_web_operation_is_in_the_matrix(app):
    endpoints = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith(("/api/", "/static/"))
    }
    # The login form, logout and `/` (a redirect to the project list) answer anyone by design,
    # and so do the operators' probes and /metrics (its token is tested in tests/ops/).
    by_design = {"auth.login", "auth.logout", "index", "ops.healthz", "ops.readyz", "ops.scrape"}
    covered = {op.endpoint for op in OPS} | by_design
    assert endpoints <= covered, f"add these to OPS: {sorted(endpoints - covered)}"


@pytest.mark.parametrize(
    "name,role,member,make_client", CREDENTIALS, ids=[c[0] for c in CREDENTIALS]
)
def test_matrix(app, team, name, role, member, make_client):
    client = make_client(app)
    for op, ctx in zip(OPS, _contexts(team, len(OPS)), strict=True):
        token = csrf_of(client)
        data = {**op.data(ctx), "csrf_token": token} if op.method == "POST" else None
        response = client.open(op.path(ctx), method=op.method, data=data)
        where = f"{name} {op.method} {op.path(ctx)}"
        may = role is not None and op.allowed(role, member)
        to_login = response.status_code == 302 and response.headers["Location"].startswith("/login")
        if may:
            assert response.status_code < 400 and not to_login, f"{where}: {response.status_code}"
            if op.effect is not None and op.endpoint != "runs.start":
                assert op.effect(ctx), f"{where}: allowed but nothing changed"
        else:
            assert to_login or response.status_code in (403, 404), (
                f"{where}: {response.status_code} {response.text[:200]}"
            )
            if op.effect is not None:
                assert not op.effect(ctx), f"{where}: denied yet it changed something"


@pytest.mark.parametrize("who", ["annotator@news", "annotator@none", "admin@none"])
def test_the_project_list_shows_only_visible_projects(app, team, who):
    client = _logged_in(app, f"{who}.example")
    page = client.get("/projects").text
    assert ("Newsroom Alpha" in page) == (who != "annotator@none")
    assert ("Secret Bravo" in page) == who.startswith("admin")


def test_a_members_project_page_never_names_another_project(app, team):
    client = _logged_in(app, "engineer@news.example")
    for path in ("/projects/news", "/projects/news/annotate", "/projects/news/runs"):
        assert "Secret Bravo" not in client.get(path).text
    response = client.get("/projects/other")
    assert response.status_code == 404
    assert response.text.count("other") >= 1
    assert "Secret Bravo" not in response.text
