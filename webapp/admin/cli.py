"""`corrigo` commands for admins: project members, users, API keys and the audit log.

They attach to the `project`, `user` and `apikey` groups of `webapp.commands`. Every change is
written to the audit log as `cli:<login name>`. Bad input exits with status 2.
"""

from __future__ import annotations

import secrets
import sys

import click
from flask.cli import AppGroup
from sqlalchemy import select

from ..auth import audit, manage
from ..commands import apikey_cli, project_cli, user_cli
from ..commands import project_arg as _project
from ..commands import stdin_is_tty as _stdin_is_tty
from ..extensions import db
from ..models import ApiKey, User

MAX_ID = 2**31


def _user(email: str, hint: str = "'EMAIL'") -> User:
    """The user with this email, or a usage error naming the argument."""
    email = email.strip().lower()
    if len(email) > 254 or not email.isprintable():
        raise click.BadParameter(f"{email[:60]!r} is not an email address", param_hint=hint)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        raise click.BadParameter(f"no user {email}", param_hint=hint)
    return user


def _key(key_id: int) -> ApiKey:
    """The API key with this id, or a usage error."""
    key = db.session.get(ApiKey, key_id) if 0 < key_id < MAX_ID else None
    if key is None:
        raise click.BadParameter(f"no API key {key_id}", param_hint="'KEY_ID'")
    return key


@project_cli.command("members")
@click.argument("slug")
@click.option("--add", "add", multiple=True, metavar="EMAIL", help="Make EMAIL a member.")
@click.option("--remove", "remove", multiple=True, metavar="EMAIL", help="Take EMAIL out.")
def project_members(slug: str, add: tuple[str, ...], remove: tuple[str, ...]) -> None:
    """Show project SLUG's members, or add and remove some (admins see every project anyway)."""
    project = _project(slug)
    adding = [_user(email, "'--add'") for email in add]
    removing = [_user(email, "'--remove'") for email in remove]
    actor = audit.cli_actor()
    for user in adding:
        if manage.add_member(user, project, actor):
            click.echo(f"Added {user.email} to {project.slug}.", err=True)
    for user in removing:
        if manage.remove_member(user, project, actor):
            click.echo(f"Removed {user.email} from {project.slug}.", err=True)
    db.session.commit()
    for user in manage.members(project):
        click.echo(f"{user.email}\t{user.role}")


@user_cli.command("list")
def list_users() -> None:
    """List users: email, role, active or disabled, member projects."""
    for user in db.session.scalars(select(User).order_by(User.email)):
        state = "disabled" if user.disabled_at else "active"
        slugs = ",".join(p.slug for p in db.session.scalars(manage.visible_projects(user)))
        if user.role == "admin":
            slugs = "*"
        click.echo(f"{user.email}\t{user.role}\t{state}\t{slugs or '-'}")


@user_cli.command("disable")
@click.argument("email")
def disable_user(email: str) -> None:
    """Disable a login: it cannot log in any more, and its sessions end now."""
    user = _user(email)
    manage.disable_user(user, audit.cli_actor())
    db.session.commit()
    click.echo(f"Disabled {user.email}.")


@user_cli.command("enable")
@click.argument("email")
def enable_user(email: str) -> None:
    """Let a disabled user log in again."""
    user = _user(email)
    manage.enable_user(user, audit.cli_actor())
    db.session.commit()
    click.echo(f"Enabled {user.email}.")


@user_cli.command("password")
@click.argument("email")
@click.option(
    "--generate-password", is_flag=True, help="Make up a password and print it alone on stdout."
)
def change_password(email: str, generate_password: bool) -> None:
    """Change a user's password (from a pipe, a prompt or --generate-password); sessions end."""
    user = _user(email)
    if generate_password:
        password = secrets.token_urlsafe(12)
    elif _stdin_is_tty():
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    else:
        password = (sys.stdin.readline() if sys.stdin else "").rstrip("\r\n")
    try:
        manage.set_password(user, password, audit.cli_actor())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    db.session.commit()
    if generate_password:
        click.echo(f"Changed the password of {user.email}; it follows.", err=True)
        click.echo(password)
    else:
        click.echo(f"Changed the password of {user.email}; their sessions have ended.")


@apikey_cli.command("list")
@click.argument("slug", required=False)
def list_keys(slug: str | None) -> None:
    """List API keys (of project SLUG, or all): id, project, prefix, scopes, state, name."""
    project = _project(slug) if slug else None
    for key in manage.keys(project):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        click.echo(
            f"{key.id}\t{key.project.slug}\tcg_{key.prefix}_…\t{','.join(key.scopes)}\t"
            f"{state}\t{key.name}"
        )


@apikey_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke_key(key_id: int) -> None:
    """Revoke API key KEY_ID (see `corrigo apikey list`): it answers 401 from now on."""
    key = _key(key_id)
    if not manage.revoke_key(key, audit.cli_actor()):
        raise click.BadParameter(f"API key {key_id} is already revoked", param_hint="'KEY_ID'")
    db.session.commit()
    click.echo(f"Revoked API key {key.id}.")


@apikey_cli.command("rotate")
@click.argument("key_id", type=int)
def rotate_key(key_id: int) -> None:
    """Revoke API key KEY_ID and print only its successor (same project, scopes, name)."""
    key = _key(key_id)
    try:
        new, plaintext = manage.rotate_key(key, audit.cli_actor())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'KEY_ID'") from None
    db.session.commit()
    click.echo(
        f"API key {new.id} replaces {key.id}; store it now, it is not shown again.", err=True
    )
    click.echo(plaintext)


audit_cli = AppGroup("audit", help="Read the audit log.")


@audit_cli.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
def list_audit(limit: int) -> None:
    """Print the newest audit entries: time, actor, action, target, detail."""
    for entry in audit.recent(limit):
        detail = " ".join(f"{k}={v}" for k, v in entry.detail.items())
        click.echo(
            f"{entry.created_at:%Y-%m-%d %H:%M:%S}\t{entry.actor}\t{entry.action}\t"
            f"{entry.target}\t{detail}"
        )
