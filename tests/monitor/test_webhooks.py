"""Webhooks: an event is delivered signed, retried with backoff, logged, and never half-sent."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from webapp import schedule, webhooks
from webapp.extensions import db
from webapp.models import Webhook, WebhookDelivery, utcnow


def _hook(project, url, events=("alert.firing",), secret="s3cret"):
    hook = Webhook(project_id=project.id, url=url, secret=secret, events=list(events))
    db.session.add(hook)
    db.session.commit()
    return hook


def test_an_event_is_delivered_signed_with_the_webhooks_secret(app, make, receiver, run_jobs):
    project = make.make_project()
    _hook(project, receiver.url)
    webhooks.emit(project.id, "alert.firing", {"alert_id": 7, "metric": "accuracy"})
    db.session.commit()
    run_jobs()

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert webhooks.verify("s3cret", request["body"], request["headers"]["X-Corrigo-Signature"])
    assert not webhooks.verify("other", request["body"], request["headers"]["X-Corrigo-Signature"])
    body = json.loads(request["body"])
    assert body["event"] == "alert.firing" and body["project"] == project.slug
    assert body["data"] == {"alert_id": 7, "metric": "accuracy"}
    delivery = db.session.scalar(select(WebhookDelivery))
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 1, 200)


def test_only_subscribed_events_are_sent(app, make, receiver, run_jobs):
    project = make.make_project()
    _hook(project, receiver.url, events=("run.finished",))
    webhooks.emit(project.id, "alert.firing", {"alert_id": 1})
    db.session.commit()
    run_jobs()
    assert receiver.requests == []
    assert db.session.scalar(select(WebhookDelivery)) is None


def test_a_rolled_back_unit_of_work_sends_nothing(app, make, receiver, run_jobs):
    project = make.make_project()
    _hook(project, receiver.url)
    webhooks.emit(project.id, "alert.firing", {"alert_id": 1})
    db.session.rollback()
    run_jobs()
    assert receiver.requests == []
    assert db.session.scalar(select(WebhookDelivery)) is None


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(app, make, receiver, run_jobs):
    project = make.make_project()
    _hook(project, receiver.url)
    receiver.status = 500
    webhooks.emit(project.id, "alert.firing", {"alert_id": 1})
    db.session.commit()
    run_jobs()
    delivery = db.session.scalar(select(WebhookDelivery))
    assert (delivery.status, delivery.attempts, delivery.error) == ("pending", 1, "HTTP 500")
    wait = delivery.next_attempt_at - utcnow()
    assert timedelta(seconds=20) < wait <= timedelta(seconds=30)

    # Not due yet: the clock leaves it alone.
    assert schedule.tick(monitor=False)["deliveries"] == 0
    # Due: the clock sends it again, and the receiver is back.
    receiver.status = 204
    delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert schedule.tick(monitor=False)["deliveries"] == 1
    run_jobs()
    db.session.expire_all()
    delivery = db.session.scalar(select(WebhookDelivery))
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 2, 204)
    assert len(receiver.requests) == 2
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]  # same signed body


def test_a_delivery_fails_for_good_after_the_last_attempt(app, make, run_jobs):
    project = make.make_project()
    _hook(project, "http://127.0.0.1:9/closed")  # the discard port: nobody listens
    webhooks.emit(project.id, "alert.firing", {"alert_id": 1})
    db.session.commit()
    (delivery_id,) = db.session.scalars(select(WebhookDelivery.id)).all()
    for attempt in range(1, webhooks.MAX_ATTEMPTS + 1):
        db.session.get(WebhookDelivery, delivery_id).next_attempt_at = utcnow()
        db.session.commit()
        webhooks.deliver(delivery_id)
        db.session.expire_all()
        delivery = db.session.get(WebhookDelivery, delivery_id)
        assert delivery.attempts == attempt
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert "Connection refused" in delivery.error or "URLError" in delivery.error


def test_a_retrain_tells_its_webhooks_it_finished_and_what_it_promoted(app, make, receiver):
    project = make.make_project()
    _hook(project, receiver.url, events=("run.finished", "model.promoted"))
    champion = make.make_champion(project)
    deliveries = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert [d.event for d in deliveries] == ["model.promoted", "run.finished"]
    promoted, finished = (d.payload for d in deliveries)
    assert promoted["version"] == champion.version and promoted["previous_version"] is None
    assert promoted["actor"] == "gate"
    assert finished["status"] == "succeeded" and finished["decision"] == "promoted"
    assert finished["model_version"] == champion.version and finished["trigger"] in (
        "manual",
        "auto",
    )
