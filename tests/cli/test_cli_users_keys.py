"""`corrigo user create` and `corrigo apikey create`."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from webapp import cli
from webapp.extensions import db
from webapp.models import ApiKey, User


def user(email: str) -> User | None:
    """The user with this email, if any."""
    return db.session.scalar(select(User).where(User.email == email))


def test_password_piped_on_stdin(corrigo):
    result = corrigo(
        "user", "create", "Ada@Example.com", "--role", "reviewer", input="correct horse\n"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Created reviewer ada@example.com.\n"
    created = user("ada@example.com")
    assert created.role == "reviewer"
    assert created.check_password("correct horse")


def test_generated_password_is_alone_on_stdout(corrigo):
    result = corrigo(
        "user", "create", "eng@example.com", "--role", "engineer", "--generate-password"
    )
    assert result.exit_code == 0, result.output
    password = result.stdout.strip()
    assert len(password) >= 12 and "\n" not in password
    assert user("eng@example.com").check_password(password)
    assert "Created engineer eng@example.com" in result.stderr


def test_prompted_password_needs_confirmation(corrigo, monkeypatch):
    monkeypatch.setattr(cli, "_stdin_is_tty", lambda: True)
    result = corrigo(
        "user", "create", "a@example.com", "--role", "admin", input="pass-1234\nnope\n"
    )
    assert result.exit_code != 0
    assert user("a@example.com") is None
    result = corrigo(
        "user", "create", "a@example.com", "--role", "admin", input="pass-1234\npass-1234\n"
    )
    assert result.exit_code == 0, result.output
    assert user("a@example.com").check_password("pass-1234")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["x@example.com", "--role", "boss"], "password1\n", "'boss' is not one of"),
        (["x@example.com"], "password1\n", "Missing option '--role'"),
        (["not-an-email", "--role", "annotator"], "password1\n", "is not an email address"),
        (["x@example.com", "--role", "annotator"], "", "no password on standard input"),
        (["x@example.com", "--role", "annotator"], "short\n", "at least 8 characters"),
    ],
)
def test_bad_user_input_creates_nothing(corrigo, args, stdin, message):
    result = corrigo("user", "create", *args, input=stdin)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert db.session.scalar(select(func.count(User.id))) == 0


def test_duplicate_email_keeps_the_first_password(corrigo, make):
    make.make_user("expert@example.com", password="first-pass")
    result = corrigo(
        "user", "create", "EXPERT@example.com", "--role", "admin", input="second-pass\n"
    )
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert user("expert@example.com").check_password("first-pass")
    assert user("expert@example.com").role == "annotator"


def test_apikey_prints_only_a_working_key(corrigo, make, client):
    make.make_project("news")
    result = corrigo("apikey", "create", "news", "--scopes", "label, predict", "--name", "ci")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert result.stdout == key + "\n" and key.startswith("cg_")
    assert "not shown again" in result.stderr
    row = db.session.scalar(select(ApiKey))
    assert row.scopes == ["label", "predict"] and row.name == "ci"
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/projects/news/queue/next", headers=headers).status_code == 204
    # The key carries only its scopes.
    assert client.get("/api/v1/projects/news/models", headers=headers).status_code == 403


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["news", "--scopes", "predict,read"], "unknown scope 'read'"),
        (["news", "--scopes", "predict,"], "empty entry"),
        (["news"], "Missing option '--scopes'"),
        (["other", "--scopes", "predict"], "no project 'other'; known projects: news"),
    ],
)
def test_bad_apikey_input_creates_no_key(corrigo, make, args, message):
    make.make_project("news")
    result = corrigo("apikey", "create", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert db.session.scalar(select(func.count(ApiKey.id))) == 0
