"""The project list and a project's page with its champion's held-out metrics."""

from tests.factories import make_champion, make_items, make_project
from tests.web.html import table, text


def test_project_list_shows_counts_and_champion(client, login):
    project = make_project(name="Newsroom")
    make_items(project, 7)
    make_project(slug="empty", name="Empty one")
    login()
    page = client.get("/projects").text
    rows = {row[0]: row for row in table(page, "list")[1:]}
    assert rows["Newsroom news"][2:6] == ["7", "0", "0", "none yet"]
    assert rows["Empty one empty"][2:6] == ["0", "0", "0", "none yet"]
    assert 'href="/projects/news/annotate"' in page


def test_annotators_get_no_runs_link(client, login):
    make_project()
    login("annotator")
    assert "/projects/news/runs" not in client.get("/projects").text


def test_project_page_counts_before_any_model(client, login):
    project = make_project(name="Newsroom", settings={"retrain_every": 25})
    make_items(project, 12)
    login()
    page = client.get("/projects/news").text
    assert "12 items 0 labeled 0 disputed — champion" in text(page)
    assert "No champion yet" in page
    assert "after 25 more labels" in text(page)
    assert 'href="/projects/news/annotate"' in page


def test_unknown_project_is_a_404_page(client, login):
    login()
    response = client.get("/projects/nope")
    assert response.status_code == 404
    assert "There is no project called &#39;nope&#39;." in response.text
    assert response.mimetype == "text/html"


def test_project_page_shows_the_champions_metrics_and_how_they_were_measured(client, login):
    project = make_project()
    champion = make_champion(project)  # the first model: judged by cross-validation
    login("engineer")
    page = client.get("/projects/news").text
    seen = text(page)
    metrics = champion.metrics
    assert f"200 items 150 labeled 0 disputed v{champion.version} champion" in seen
    assert f"Champion v{champion.version}" in seen
    assert f"{metrics['accuracy']:.3f} accuracy {metrics['macro_f1']:.3f} macro-F1" in seen
    assert (
        f"measured by cross-validation on {metrics['n']} training labels (no held-out audits "
        "yet)" in seen
    )
    per_class = table(page, "per-class")
    assert per_class[0] == ["Class", "Precision", "Recall", "F1", "Support"]
    assert per_class[1:] == [
        [
            label,
            f"{stats['precision']:.3f}",
            f"{stats['recall']:.3f}",
            f"{stats['f1']:.3f}",
            str(stats["support"]),
        ]
        for label, stats in metrics["per_class"].items()
    ]
    confusion = table(page, "confusion")
    assert confusion[0][1:] == project.labels
    assert [row[1:] for row in confusion[1:]] == [
        [str(cell) for cell in row] for row in metrics["confusion"]["matrix"]
    ]
    assert 'href="/projects/news/runs/' in page
