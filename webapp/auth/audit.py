"""The audit log: every change to users, memberships and API keys, with who made it and when.

Callers add the entry in the same transaction as the change (services flush, the caller
commits), so a change and its entry are written together or not at all.
"""

from __future__ import annotations

import getpass

from flask_login import current_user
from sqlalchemy import select

from ..extensions import db
from ..models import AuditLog


def web_actor() -> str:
    """The logged-in person, as an audit actor."""
    return f"user:{current_user.id} {current_user.email}"


def cli_actor() -> str:
    """Whoever runs the command line, as an audit actor (their login name on this machine)."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return f"cli:{who}"


def record(actor: str, action: str, target: str, **detail) -> AuditLog:
    """Add an audit entry to the session (committed with the change it describes)."""
    entry = AuditLog(actor=actor[:300], action=action, target=target[:300], detail=detail)
    db.session.add(entry)
    return entry


def recent(limit: int = 200) -> list[AuditLog]:
    """The newest audit entries first."""
    return db.session.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).all()
