"""Webhooks over the API: register, list (no secret), delete, and the delivery log."""

from __future__ import annotations

import pytest

from tests.api.helpers import assert_problem
from webapp import webhooks
from webapp.extensions import db

GOOD = {"url": "https://hooks.example.com/corrigo", "secret": "0123456789abcdef"}


def test_register_list_and_delete_a_webhook(api, project):
    resp = api.post("/projects/news/webhooks", GOOD)
    assert resp.status_code == 201, resp.get_json()
    hook = resp.get_json()
    assert hook["events"] == list(webhooks.EVENTS) and "secret" not in hook
    listed = api.get("/projects/news/webhooks").get_json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert api.delete(f"/projects/news/webhooks/{hook['id']}").status_code == 204
    assert api.get("/projects/news/webhooks").get_json() == {"webhooks": []}
    assert_problem(api.delete(f"/projects/news/webhooks/{hook['id']}"), 404)


@pytest.mark.parametrize(
    "body, field",
    [
        ({**GOOD, "url": "ftp://example.com/x"}, "url"),
        ({**GOOD, "url": "not a url"}, "url"),
        ({**GOOD, "secret": "short"}, "secret"),
        ({**GOOD, "events": ["alert.exploded"]}, "events[0]"),
        ({**GOOD, "events": []}, "events"),
        ({"secret": GOOD["secret"]}, "url"),
    ],
)
def test_a_bad_webhook_is_refused_naming_the_field(api, project, body, field):
    assert_problem(api.post("/projects/news/webhooks", body), 422, field)
    assert api.get("/projects/news/webhooks").get_json() == {"webhooks": []}


def test_the_delivery_log_shows_each_attempts_answer(api, project, run_jobs):
    from tests.monitor.conftest import Receiver

    receiver = Receiver()
    try:
        receiver.status = 503
        hook = api.post("/projects/news/webhooks", {**GOOD, "url": receiver.url}).get_json()
        webhooks.emit(project.id, "alert.firing", {"alert_id": 3})
        db.session.commit()
        run_jobs()
    finally:
        receiver.close()
    (delivery,) = api.get(f"/projects/news/webhooks/{hook['id']}/deliveries").get_json()[
        "deliveries"
    ]
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert delivery["response_status"] == 503 and delivery["error"] == "HTTP 503"
    assert delivery["next_attempt_at"].endswith("Z") and delivery["payload"] == {"alert_id": 3}


def test_another_projects_webhook_is_a_404(api, project, other):
    hook = api.post("/projects/news/webhooks", GOOD).get_json()
    assert_problem(other.get(f"/projects/sports/webhooks/{hook['id']}/deliveries"), 404)
