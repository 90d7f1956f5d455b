"""Managing users, memberships and API keys, shared by the CLI and the admin pages.

Each change is flushed with its audit entry; the caller (a view or a command) commits.
"""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import ApiKey, Membership, Project, User, utcnow
from . import audit

MIN_PASSWORD = 8


def disable_user(user: User, actor: str) -> None:
    """Disable a login: it can no longer log in, and its sessions end now."""
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    user.end_sessions()
    audit.record(actor, "user.disable", f"user:{user.id} {user.email}")


def enable_user(user: User, actor: str) -> None:
    """Let a disabled user log in again."""
    user.disabled_at = None
    audit.record(actor, "user.enable", f"user:{user.id} {user.email}")


def set_password(user: User, password: str, actor: str) -> None:
    """Change a user's password; every session made with the old one ends."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must be at least {MIN_PASSWORD} characters")
    user.set_password(password)
    audit.record(actor, "user.password", f"user:{user.id} {user.email}")


def is_member(user: User, project: Project) -> bool:
    """Whether the user is a member of the project (admins see all without being members)."""
    return db.session.get(Membership, {"user_id": user.id, "project_id": project.id}) is not None


def add_member(user: User, project: Project, actor: str) -> bool:
    """Make the user a member of the project; return False if they already were."""
    if user.id is None or project.id is None:
        db.session.flush()
    if is_member(user, project):
        return False
    db.session.add(Membership(user_id=user.id, project_id=project.id))
    audit.record(actor, "member.add", f"user:{user.id} {user.email}", project=project.slug)
    return True


def remove_member(user: User, project: Project, actor: str) -> bool:
    """Take the user out of the project; return False if they were not a member."""
    row = db.session.get(Membership, {"user_id": user.id, "project_id": project.id})
    if row is None:
        return False
    db.session.delete(row)
    audit.record(actor, "member.remove", f"user:{user.id} {user.email}", project=project.slug)
    return True


def members(project: Project) -> list[User]:
    """The project's members, by email."""
    return db.session.scalars(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.project_id == project.id)
        .order_by(User.email)
    ).all()


def visible_projects(user: User):
    """A select of the projects the user may see: all for admins, member projects otherwise."""
    query = select(Project).order_by(Project.name)
    if user.role != "admin":
        query = query.join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == user.id
        )
    return query


def key_label(key: ApiKey) -> str:
    """How an audit entry names a key."""
    return f"apikey:{key.id} {key.prefix}"


def revoke_key(key: ApiKey, actor: str) -> bool:
    """Revoke an API key at once; return False if it already was."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    audit.record(actor, "apikey.revoke", key_label(key), project=key.project.slug)
    return True


def rotate_key(key: ApiKey, actor: str) -> tuple[ApiKey, str]:
    """Revoke a key and issue its successor (same project, scopes and name); return it and
    the plaintext, which is shown once."""
    if key.revoked_at is not None:
        raise ValueError(f"API key {key.id} is revoked; create a new one instead")
    key.revoked_at = utcnow()
    new, plaintext = ApiKey.generate(key.project, list(key.scopes), name=key.name)
    db.session.add(new)
    db.session.flush()
    audit.record(actor, "apikey.rotate", key_label(key), project=key.project.slug, successor=new.id)
    return new, plaintext


def record_key_created(key: ApiKey, actor: str) -> None:
    """Audit a new key (after it was flushed, so it has an id)."""
    audit.record(
        actor, "apikey.create", key_label(key), project=key.project.slug, scopes=key.scopes
    )


def keys(project: Project | None = None) -> list[ApiKey]:
    """API keys, newest first, of one project or all."""
    query = select(ApiKey).order_by(ApiKey.id.desc())
    if project is not None:
        query = query.where(ApiKey.project_id == project.id)
    return db.session.scalars(query).all()
