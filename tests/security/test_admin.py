"""Managing users and keys from the CLI and the admin pages; every change lands in the audit log."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.factories import make_key, make_project, make_user
from webapp.extensions import db
from webapp.models import ApiKey, AuditLog, User

PASSWORD = "secret-pass"


@pytest.fixture
def corrigo(runner):
    """Run `corrigo ARGS…` against the test app."""
    return lambda *args, input=None: runner.invoke(args=list(args), input=input)


def api_ok(client, key: str) -> int:
    """The status of an authenticated API read with this key."""
    return client.get(
        "/api/v1/projects/news/models", headers={"Authorization": f"Bearer {key}"}
    ).status_code


def audit_actions() -> list[str]:
    """The audit log's actions, oldest first."""
    db.session.expire_all()
    return [e.action for e in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]


def log_in(client, email, password=PASSWORD):
    """Log a client in through the form; return the response."""
    client.get("/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def csrf(client) -> str:
    """The client's CSRF token."""
    with client.session_transaction() as sess:
        return sess["csrf"]


# -- the command line ---------------------------------------------------------------------


def test_cli_lists_revokes_and_rotates_keys(corrigo, client):
    project = make_project()
    key = make_key(project)
    key_id = db.session.scalar(select(ApiKey.id))
    listed = corrigo("apikey", "list")
    assert listed.exit_code == 0, listed.output
    assert re.match(
        rf"{key_id}\tnews\tcg_\w+_…\tpredict,feedback,label,admin\tactive", listed.stdout
    )

    rotated = corrigo("apikey", "rotate", str(key_id))
    assert rotated.exit_code == 0, rotated.output
    new_key = rotated.stdout.strip()
    assert new_key.startswith("cg_") and "\n" not in new_key
    assert api_ok(client, key) == 401
    assert api_ok(client, new_key) == 200

    new_id = db.session.scalar(select(ApiKey.id).order_by(ApiKey.id.desc()))
    assert corrigo("apikey", "revoke", str(new_id)).exit_code == 0
    assert api_ok(client, new_key) == 401
    again = corrigo("apikey", "revoke", str(new_id))
    assert again.exit_code == 2 and "already revoked" in again.stderr
    assert corrigo("apikey", "revoke", str(2**40)).exit_code == 2
    assert audit_actions() == ["apikey.rotate", "apikey.revoke"]
    assert "revoked" in corrigo("apikey", "list", "news").stdout


def test_cli_lists_disables_and_enables_users_and_changes_passwords(corrigo, app):
    project = make_project()
    make_user("ada@example.com", PASSWORD, "annotator", member_of=[project])
    browser = app.test_client()
    assert log_in(browser, "ada@example.com").status_code == 302

    assert corrigo("user", "list").stdout == "ada@example.com\tannotator\tactive\tnews\n"
    assert corrigo("user", "disable", "ada@example.com").exit_code == 0
    assert browser.get("/projects").status_code == 302, "the disabled user's session lived on"
    assert log_in(app.test_client(), "ada@example.com").status_code == 400
    assert "disabled" in corrigo("user", "list").stdout
    assert corrigo("user", "enable", "ada@example.com").exit_code == 0

    changed = corrigo("user", "password", "ada@example.com", input="brand-new-pass\n")
    assert changed.exit_code == 0, changed.output
    assert log_in(app.test_client(), "ada@example.com", "brand-new-pass").status_code == 302
    short = corrigo("user", "password", "ada@example.com", input="short\n")
    assert short.exit_code == 2 and "at least 8" in short.stderr
    assert corrigo("user", "disable", "nobody@example.com").exit_code == 2

    assert audit_actions() == ["user.disable", "user.enable", "user.password"]
    log = corrigo("audit", "list")
    assert log.exit_code == 0
    lines = log.stdout.splitlines()
    assert [line.split("\t")[2] for line in lines] == [
        "user.password",
        "user.enable",
        "user.disable",
    ]
    assert all(line.split("\t")[1].startswith("cli:") for line in lines)
    assert all("ada@example.com" in line.split("\t")[3] for line in lines)


def test_cli_project_members(corrigo, app):
    make_project()
    make_user("ada@example.com", PASSWORD, "annotator", member_of=[])
    browser = app.test_client()
    log_in(browser, "ada@example.com")
    assert browser.get("/projects/news").status_code == 404

    added = corrigo("project", "members", "news", "--add", "Ada@Example.com")
    assert added.exit_code == 0, added.output
    assert added.stdout == "ada@example.com\tannotator\n"
    assert browser.get("/projects/news").status_code == 200

    removed = corrigo("project", "members", "news", "--remove", "ada@example.com")
    assert removed.exit_code == 0 and removed.stdout == ""
    assert browser.get("/projects/news").status_code == 404
    unknown = corrigo("project", "members", "news", "--add", "nobody@example.com")
    assert unknown.exit_code == 2 and "'--add'" in unknown.stderr
    assert audit_actions() == ["member.add", "member.remove"]


def test_creating_users_and_keys_is_audited_too(corrigo):
    make_project()
    assert (
        corrigo(
            "user", "create", "eve@example.com", "--role", "engineer", input="pass-word-1\n"
        ).exit_code
        == 0
    )
    assert corrigo("apikey", "create", "news", "--scopes", "predict").exit_code == 0
    assert audit_actions() == ["user.create", "apikey.create"]


@pytest.mark.parametrize(
    "email", ["ada\x00@example.com", "ada\x1b[31m@example.com", "ada@exa\tmple.com", "a\x7f@b.c"]
)
def test_cli_refuses_control_characters_in_emails(corrigo, email):
    result = corrigo("user", "create", email, "--role", "annotator", input="pass-word-1\n")
    assert result.exit_code == 2, result.output
    assert "'EMAIL'" in result.stderr
    assert db.session.scalar(select(User.id)) is None


@pytest.mark.parametrize(
    "features,message",
    [
        (",".join(f"f{i}" for i in range(501)), "at most 500 features"),
        ("x," + "y" * 101, "at most 100 printable characters"),
        ("x,y\x00z", "printable"),
    ],
)
def test_cli_bounds_feature_names_and_counts(corrigo, features, message):
    result = corrigo(
        "project", "create", "t", "--kind", "tabular", "--labels", "a,b", "--features", features
    )
    assert result.exit_code == 2, result.output
    assert "'--features'" in result.stderr and message in result.stderr


def test_cli_refuses_control_characters_in_labels(corrigo):
    result = corrigo("project", "create", "t", "--kind", "text", "--labels", "a,b\x1b")
    assert result.exit_code == 2 and "'--labels'" in result.stderr


# -- the admin pages ----------------------------------------------------------------------


@pytest.fixture
def admin(app):
    """An admin's logged-in browser client."""
    make_user("root@example.com", PASSWORD, "admin")
    client = app.test_client()
    assert log_in(client, "root@example.com").status_code == 302
    return client


def test_admin_pages_disable_a_user_and_end_their_session(app, admin):
    project = make_project()
    ada = make_user("ada@example.com", PASSWORD, "annotator", member_of=[project])
    browser = app.test_client()
    log_in(browser, "ada@example.com")
    page = admin.get("/admin/users").text
    assert "ada@example.com" in page and "news" in page

    response = admin.post(f"/admin/users/{ada.id}/disable", data={"csrf_token": csrf(admin)})
    assert response.status_code == 302
    assert "Disabled ada@example.com" in admin.get("/admin/users").text
    assert browser.get("/projects").status_code == 302
    assert log_in(app.test_client(), "ada@example.com").status_code == 400

    admin.post(f"/admin/users/{ada.id}/enable", data={"csrf_token": csrf(admin)})
    reset = admin.post(f"/admin/users/{ada.id}/password", data={"csrf_token": csrf(admin)})
    new_password = re.search(r'<p class="secret" id="secret">([^<]+)</p>', reset.text).group(1)
    assert log_in(app.test_client(), "ada@example.com", new_password).status_code == 302

    admin.post(
        f"/admin/users/{ada.id}/members",
        data={"csrf_token": csrf(admin), "project": "news", "action": "remove"},
    )
    ada_client = app.test_client()
    log_in(ada_client, "ada@example.com", new_password)
    assert ada_client.get("/projects/news").status_code == 404

    audit = admin.get("/admin/audit").text
    for action in ("user.disable", "user.enable", "user.password", "member.remove"):
        assert action in audit
    root = db.session.scalar(select(User).where(User.email == "root@example.com"))
    assert f"user:{root.id} root@example.com" in audit


def test_an_admin_cannot_disable_themselves(admin):
    me = db.session.scalar(select(User).where(User.email == "root@example.com"))
    admin.post(f"/admin/users/{me.id}/disable", data={"csrf_token": csrf(admin)})
    assert admin.get("/admin/users").status_code == 200
    assert db.session.get(User, me.id).disabled_at is None


def test_admin_pages_rotate_and_revoke_keys(admin, client):
    project = make_project()
    key = make_key(project)
    key_id = db.session.scalar(select(ApiKey.id))
    assert f"key-{key_id}" in admin.get("/admin/keys").text
    rotated = admin.post(f"/admin/keys/{key_id}/rotate", data={"csrf_token": csrf(admin)})
    new_key = re.search(r'id="secret">([^<]+)</p>', rotated.text).group(1)
    assert api_ok(client, key) == 401 and api_ok(client, new_key) == 200
    new_id = db.session.scalar(select(ApiKey.id).order_by(ApiKey.id.desc()))
    admin.post(f"/admin/keys/{new_id}/revoke", data={"csrf_token": csrf(admin)})
    assert api_ok(client, new_key) == 401
    assert audit_actions() == ["apikey.rotate", "apikey.revoke"]
