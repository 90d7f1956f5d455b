"""Outbound webhooks: register one, list them, delete one, read its delivery log."""

from __future__ import annotations

from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate, validates
from sqlalchemy import select

from .. import webhooks
from ..extensions import db
from ..models import Project, Webhook, WebhookDelivery
from .common import (
    BODY_ERRORS,
    DATE_TIME,
    Blueprint,
    created,
    row,
    scoped,
    timestamp,
    with_project,
)

blp = Blueprint("webhooks", __name__, description="Outbound webhooks and their deliveries.")

MIN_SECRET = 16
MAX_SECRET = 200
MAX_URL = 2000
DELIVERIES_SHOWN = 100


class WebhookRequest(Schema):
    """Where to POST events, the secret that signs them, and which events."""

    url = fields.String(
        required=True,
        validate=validate.Length(1, MAX_URL),
        metadata={"description": "An http or https URL.", "format": "uri"},
    )
    secret = fields.String(
        required=True,
        validate=validate.Length(MIN_SECRET, MAX_SECRET),
        metadata={
            "description": (
                f"{MIN_SECRET} to {MAX_SECRET} characters. Each request carries "
                "`X-Corrigo-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body under it."
            )
        },
    )
    events = fields.List(
        fields.String(validate=validate.OneOf(webhooks.EVENTS)),
        load_default=lambda: list(webhooks.EVENTS),
        validate=validate.Length(min=1),
        metadata={"description": "The events to send (default: all)."},
    )

    @validates("url")
    def _url(self, value: str, **kwargs) -> None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError("must be an http or https URL with a host")


class WebhookOut(Schema):
    """A webhook (its secret is never shown again)."""

    id = fields.Integer(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)


class WebhookList(Schema):
    """The project's webhooks."""

    webhooks = fields.List(fields.Nested(WebhookOut), required=True)


class DeliveryOut(Schema):
    """One event sent (or being sent) to the webhook, with its last attempt's answer."""

    id = fields.Integer(required=True)
    event = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={"enum": ["pending", "delivered", "failed"]},
    )
    attempts = fields.Integer(required=True)
    response_status = fields.Integer(
        required=True, allow_none=True, metadata={"description": "The receiver's HTTP status."}
    )
    error = fields.String(required=True, allow_none=True)
    next_attempt_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    created_at = fields.String(required=True, metadata=DATE_TIME)
    delivered_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    payload = fields.Dict(required=True, metadata={"description": "The event's `data`."})


class DeliveryList(Schema):
    """The webhook's latest deliveries, newest first."""

    deliveries = fields.List(fields.Nested(DeliveryOut), required=True)


def _out(hook: Webhook) -> dict:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "created_at": timestamp(hook.created_at),
    }


@blp.route("/projects/<slug>/webhooks")
@scoped("admin", "The project's webhooks.", errors=(404,))
@with_project
@blp.response(200, WebhookList, description="The webhooks.")
def list_webhooks(project: Project):
    """List webhooks."""
    hooks = db.session.scalars(
        select(Webhook).where(Webhook.project_id == project.id).order_by(Webhook.id)
    )
    return {"webhooks": [_out(hook) for hook in hooks]}


@blp.route("/projects/<slug>/webhooks", methods=["POST"])
@scoped(
    "admin",
    "Register a webhook. Events (`alert.firing`, `alert.resolved`, `run.finished`, "
    "`model.promoted`) are POSTed as JSON `{event, delivery_id, project, created_at, data}`, "
    "signed, and retried with backoff until the receiver answers 2xx.",
    errors=(404, *BODY_ERRORS),
)
@with_project
@blp.arguments(WebhookRequest, arg_name="payload", description="The webhook.")
@blp.response(201, WebhookOut, description="The webhook.")
def create_webhook(project: Project, payload: dict):
    """Register a webhook."""
    hook = Webhook(
        project_id=project.id,
        url=payload["url"],
        secret=payload["secret"],
        events=sorted(set(payload["events"]), key=webhooks.EVENTS.index),
    )
    db.session.add(hook)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return created(_out(hook))


@blp.route("/projects/<slug>/webhooks/<id32:webhook_id>", methods=["DELETE"])
@scoped("admin", "Delete a webhook and its delivery log.", errors=(404,))
@with_project
@blp.response(204, description="Deleted.")
def delete_webhook(project: Project, webhook_id: int):
    """Delete a webhook."""
    db.session.delete(row(Webhook, webhook_id, "webhook"))
    db.session.commit()
    return "", 204


@blp.route("/projects/<slug>/webhooks/<id32:webhook_id>/deliveries")
@scoped(
    "admin",
    f"The webhook's latest {DELIVERIES_SHOWN} deliveries, newest first, with each one's last "
    "answer.",
    errors=(404,),
)
@with_project
@blp.response(200, DeliveryList, description="The deliveries.")
def list_deliveries(project: Project, webhook_id: int):
    """A webhook's delivery log."""
    hook = row(Webhook, webhook_id, "webhook")
    rows = db.session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(DELIVERIES_SHOWN)
    )
    return {
        "deliveries": [
            {
                "id": d.id,
                "event": d.event,
                "status": d.status,
                "attempts": d.attempts,
                "response_status": d.response_status,
                "error": d.error,
                "next_attempt_at": timestamp(d.next_attempt_at),
                "created_at": timestamp(d.created_at),
                "delivered_at": timestamp(d.delivered_at),
                "payload": d.payload,
            }
            for d in rows
        ]
    }
