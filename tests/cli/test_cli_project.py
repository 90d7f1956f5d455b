"""`corrigo project create` and `corrigo project list`."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Project


def project_count() -> int:
    """How many projects exist."""
    return db.session.scalar(select(func.count(Project.id)))


def test_create_text_project_with_default_template(corrigo):
    result = corrigo(
        "project", "create", "support-tickets", "--kind", "text",
        "--labels", "billing, bug ,feature", "--name", "Support tickets",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Created project support-tickets" in result.stdout
    project = db.session.scalar(select(Project).where(Project.slug == "support-tickets"))
    assert project.kind == "text"
    assert project.labels == ["billing", "bug", "feature"]
    assert project.features == []
    assert project.template == "text-logreg"
    assert project.name == "Support tickets"


def test_create_tabular_project_with_features_and_template(corrigo):
    result = corrigo(
        "project", "create", "churn", "--kind", "tabular", "--labels", "stays,leaves",
        "--features", "tenure,monthly_fee", "--template", "tabular-hgb",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    project = db.session.scalar(select(Project).where(Project.slug == "churn"))
    assert project.features == ["tenure", "monthly_fee"]
    assert project.template == "tabular-hgb"
    assert project.name == "churn"


@pytest.mark.parametrize(
    ("args", "option", "message"),
    [
        (["Bad_Slug", "--kind", "text", "--labels", "a,b"], "'SLUG'", "lowercase letters"),
        (["-dash", "--kind", "text", "--labels", "a,b"], "", "No such option"),
        (["x" * 64, "--kind", "text", "--labels", "a,b"], "'SLUG'", "1 to 63"),
        (["p", "--kind", "image", "--labels", "a,b"], "'--kind'", "'image' is not one of"),
        (["p", "--kind", "text", "--labels", "only"], "'--labels'", "2 to 100 distinct"),
        (["p", "--kind", "text", "--labels", "a,b,a"], "'--labels'", "repeats a"),
        (["p", "--kind", "text", "--labels", "a,,b"], "'--labels'", "empty entry"),
        (
            ["p", "--kind", "text", "--labels", ",".join(f"l{i}" for i in range(101))],
            "'--labels'",
            "got 101",
        ),
        (["p", "--kind", "tabular", "--labels", "a,b"], "'--features'", "needs its feature"),
        (["p", "--kind", "text", "--labels", "a,b", "--features", "x"], "'--features'", "only"),
        (
            ["p", "--kind", "tabular", "--labels", "a,b", "--features", "x,label"],
            "'--features'",
            "'label' is reserved",
        ),
        (
            ["p", "--kind", "text", "--labels", "a,b", "--template", "tabular-hgb"],
            "'--template'",
            "for text use text-logreg",
        ),
        (["p", "--kind", "text", "--labels", "a,b", "--template", "bert"], "'--template'", ""),
        (["p", "--labels", "a,b"], "'--kind'", "Missing option"),
    ],
)
def test_bad_input_is_a_usage_error_and_creates_nothing(corrigo, args, option, message):
    result = corrigo("project", "create", *args)
    assert result.exit_code == 2, result.output
    assert option in result.stderr
    assert message in result.stderr
    assert project_count() == 0


def test_duplicate_slug_is_refused(corrigo):
    assert corrigo("project", "create", "news", "--kind", "text", "--labels", "a,b").exit_code == 0
    result = corrigo("project", "create", "news", "--kind", "text", "--labels", "c,d")
    assert result.exit_code == 2
    assert "a project 'news' already exists" in result.stderr
    assert project_count() == 1
    assert db.session.scalar(select(Project.labels)) == ["a", "b"]


def test_list_shows_projects_with_counts(corrigo, make):
    project = make.make_project("news")
    make.make_items(project, 3)
    result = corrigo("project", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\t")[:3] == ["news", "text", "3 items"]
