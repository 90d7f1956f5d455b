"""Stored-XSS probes: markup stored through the API, admin-made rows and failed runs is shown as
text on every page (tests/web/test_security_browser.py has a real browser run none of it)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories import make_items, make_key, make_project, make_user, queue_retrain
from tests.web.conftest import PASSWORD
from webapp import pool
from webapp.extensions import db
from webapp.models import ApiKey, AuditLog, Item

PAYLOAD = (
    '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
    "'\"><svg onload=window.__xss=3>"
)
ESCAPED = "&lt;script&gt;window.__xss=1&lt;/script&gt;"


@pytest.fixture
def stored(app, client):
    """The payload stored everywhere (see `store_payloads`)."""
    return store_payloads(client)


def store_payloads(client) -> dict:
    """Put the payload wherever people or apps can write text, through the product's paths."""
    project = make_project("news", name="News " + PAYLOAD)
    key = make_key(project)
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "xss-1"}
    response = client.post(
        "/api/v1/projects/news/predictions",
        json={
            "predictions": [{"data": {"text": PAYLOAD}, "label": "tech", "external_id": "x<b>1"}]
        },
        headers=auth,
    )
    assert response.status_code == 201, response.text
    (prediction_id,) = response.json["ids"]
    response = client.post(
        f"/api/v1/predictions/{prediction_id}/feedback",
        json={"correct": False, "label": "sport", "comment": PAYLOAD},
        headers=auth,
    )
    assert response.status_code in (200, 201), response.text
    # An admin named a key with markup (the CLI allows any name of up to 100 characters).
    db.session.scalar(select(ApiKey)).name = "<script>window.__xss=1</script>"
    run = queue_retrain(project)
    run.status, run.error = "failed", PAYLOAD
    run.reasons = [PAYLOAD]
    db.session.add(AuditLog(actor=PAYLOAD, action="probe", target=PAYLOAD, detail={"x": PAYLOAD}))
    db.session.commit()
    make_user("admin@example.com", PASSWORD, "admin")
    item_id = db.session.scalar(select(Item.id).where(Item.project_id == project.id))
    # Two experts answer two more items, one of them known by a markup email (the CLI takes
    # any printable email): the agreement page names experts by email.
    experts = [make_user(PAYLOAD, PASSWORD), make_user("second@example.com", PASSWORD)]
    for other_id in make_items(project, 2, start=100):
        for expert, label in zip(experts, ("tech", "sport"), strict=True):
            pool.annotate(project, db.session.get(Item, other_id), expert.annotator, label)
    return {"run": run.id, "item": item_id}


def pages(stored: dict) -> list[str]:
    """Every page that shows stored text."""
    return [
        "/projects",
        "/projects/news",
        "/projects/news/annotate",
        f"/projects/news/items/{stored['item']}",
        "/projects/news/runs",
        f"/projects/news/runs/{stored['run']}",
        "/projects/news/models",
        "/projects/news/agreement",
        "/admin/users",
        "/admin/keys",
        "/admin/audit",
    ]


def test_stored_markup_is_escaped_on_every_page(client, auth, stored):
    auth.login("admin@example.com", PASSWORD)
    for path in pages(stored):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<script>window.__xss" not in response.text, path
        assert "<svg onload" not in response.text, path
        assert "<img src=x" not in response.text, path
        if path != "/admin/users":  # the one page where no stored text is shown
            assert ESCAPED in response.text, path
