"""Outbound webhooks: events recorded with what caused them, delivered signed, retried, logged.

An event (`alert.firing`, `alert.resolved`, `run.finished`, `model.promoted`) becomes one
`WebhookDelivery` row per subscribed webhook, flushed in the caller's transaction: a rolled
back unit of work sends nothing, a committed one loses nothing. After the commit a job is
enqueued per delivery; where Redis could not take it, the clock's sweep (`deliver_due`) sends
it. Each attempt POSTs the same JSON body, signed with HMAC-SHA256 of the body under the
webhook's secret (header `X-Corrigo-Signature: sha256=<hex>`, as GitHub does). A 2xx answer
delivers it; anything else is tried again after 30 s, 1, 2, 4, … minutes (at most one hour
apart) until `MAX_ATTEMPTS`, and every attempt's answer is kept on the row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

from sqlalchemy import select

from . import jobs
from .enums import DeliveryStatus, WebhookEvent, values
from .extensions import db
from .models import Project, Webhook, WebhookDelivery, utcnow
from .transaction import after_commit, unit_of_work

log = logging.getLogger(__name__)

EVENTS = values(WebhookEvent)
DELIVER_JOB = "worker.jobs.deliver_webhook"
MAX_ATTEMPTS = 8
TIMEOUT_SECONDS = 10
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
SIGNATURE_HEADER = "X-Corrigo-Signature"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: `sha256=` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (constant-time compare).

    What a receiver does; Corrigo's tests check deliveries with it.
    """
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def body_of(delivery: WebhookDelivery, project_slug: str) -> bytes:
    """The exact bytes POSTed for a delivery (the same on every attempt)."""
    envelope = {
        "event": delivery.event,
        "delivery_id": delivery.id,
        "project": project_slug,
        "created_at": delivery.created_at.isoformat() + "Z",
        "data": delivery.payload,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()


def emit(project_id: int, event: str, payload: dict) -> list[int]:
    """Record `event` for every webhook of the project subscribed to it; deliver after commit.

    Flushed, not committed (see `webapp.transaction`). Returns the delivery ids.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    hooks = db.session.scalars(select(Webhook).where(Webhook.project_id == project_id)).all()
    now = utcnow()
    rows = [
        WebhookDelivery(webhook_id=hook.id, event=event, payload=payload, next_attempt_at=now)
        for hook in hooks
        if event in (hook.events or EVENTS)
    ]
    if not rows:
        return []
    db.session.add_all(rows)
    db.session.flush()
    ids = [row.id for row in rows]
    for delivery_id in ids:
        job_id = f"webhook-{delivery_id}"
        after_commit(
            lambda d=delivery_id, j=job_id: jobs.enqueue(DELIVER_JOB, d, job_id=j), key=job_id
        )
    return ids


def _backoff(attempts: int) -> timedelta:
    """The wait before attempt `attempts + 1`: 30 s, then doubling, at most an hour."""
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), MAX_RETRY_SECONDS))


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    """POST `body`; return (status, error). Never raises for the receiver's faults."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"[:500]


@unit_of_work
def deliver(delivery_id: int) -> str | None:
    """Attempt one delivery if it is still pending; return its status after the attempt.

    The row is claimed first (its next attempt moved past the request's timeout and
    committed), so a job and the clock's sweep racing for the same due delivery send it once;
    no transaction is held while the receiver answers.
    """
    now = utcnow()
    claimed = db.session.execute(
        WebhookDelivery.__table__.update()
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + timedelta(seconds=TIMEOUT_SECONDS * 3))
    ).rowcount
    db.session.commit()
    if not claimed:
        return None
    delivery = db.session.get(WebhookDelivery, delivery_id)
    hook = db.session.get(Webhook, delivery.webhook_id)
    slug = db.session.scalar(select(Project.slug).where(Project.id == hook.project_id))
    url, secret, body = hook.url, hook.secret, body_of(delivery, slug)
    db.session.commit()  # hold nothing while the receiver answers
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Corrigo-Webhook/1",
        SIGNATURE_HEADER: sign(secret, body),
        "X-Corrigo-Event": delivery.event,
        "X-Corrigo-Delivery": str(delivery_id),
    }
    status, error = _post(url, body, headers)
    delivery = db.session.get(WebhookDelivery, delivery_id)
    delivery.attempts += 1
    delivery.response_status = status
    if status is not None and 200 <= status < 300:
        delivery.status, delivery.error = DeliveryStatus.DELIVERED, None
        delivery.delivered_at, delivery.next_attempt_at = utcnow(), None
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status, delivery.error = DeliveryStatus.FAILED, error
        delivery.next_attempt_at = None
    else:
        delivery.error = error
        delivery.next_attempt_at = utcnow() + _backoff(delivery.attempts)
    result = delivery.status
    db.session.commit()
    if result != DeliveryStatus.DELIVERED:
        log.warning("webhook delivery %s: %s (attempt %s)", delivery_id, error, delivery.attempts)
    return result


def due_deliveries(limit: int = 100) -> list[int]:
    """Pending deliveries whose next attempt is due, oldest first (the clock sends these)."""
    return list(
        db.session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= utcnow(),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
    )
