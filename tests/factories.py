"""Row factories shared by the tests (one place, not copied from test to test)."""

from __future__ import annotations

import itertools
import random

from sqlalchemy import select

from webapp.alerts import add_default_rules
from webapp.extensions import db
from webapp.models import ApiKey, Membership, Project, User
from webapp.pool import import_items

TEXT_LABELS = ["sport", "politics", "tech"]

# Short, clearly separable texts so a real model learns them from a few dozen labels.
WORDS = {
    "sport": "match goal team season coach player league score win cup",
    "politics": "election minister vote party government parliament policy law campaign",
    "tech": "software computer phone internet chip data app network digital device",
}


def make_project(
    slug="news",
    kind="text",
    labels=None,
    features=None,
    template=None,
    settings=None,
    name=None,
    members="all",
) -> Project:
    """Create a project (text with three labels unless told otherwise).

    `members`: the users who may see it; by default every user that exists already.
    """
    labels = labels or (TEXT_LABELS if kind == "text" else ["a", "b"])
    features = features or ([] if kind == "text" else ["x1", "x2"])
    template = template or ("text-logreg" if kind == "text" else "tabular-logreg")
    project = Project(
        slug=slug,
        name=name or slug.title(),
        kind=kind,
        labels=labels,
        features=features,
        template=template,
        settings=settings or {},
    )
    db.session.add(project)
    db.session.flush()
    add_default_rules(project)
    users = db.session.scalars(select(User)).all() if members == "all" else members
    db.session.add_all(Membership(user_id=u.id, project_id=project.id) for u in users)
    db.session.commit()
    return project


def make_user(
    email="expert@example.com", password="secret-pass", role="annotator", member_of="all"
) -> User:
    """Create a login; `member_of`: its projects, by default every project that exists already."""
    user = User(email=email, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    projects = db.session.scalars(select(Project)).all() if member_of == "all" else member_of
    db.session.add_all(Membership(user_id=user.id, project_id=p.id) for p in projects)
    db.session.commit()
    return user


def make_key(project: Project, scopes=("predict", "feedback", "label", "admin")) -> str:
    """Create an API key for the project and return the plaintext bearer token."""
    row, plaintext = ApiKey.generate(project, list(scopes))
    db.session.add(row)
    db.session.commit()
    return plaintext


def text_for(label: str, i: int) -> str:
    """A deterministic text of the given class, varied by i."""
    words = WORDS[label].split()
    picked = [words[(i * 3 + k) % len(words)] for k in range(6)]
    return f"{' '.join(picked)} report number {i}"


def make_items(project: Project, n: int, start: int = 0, labels=None) -> list[int]:
    """Import n text items cycling through the labels; return their ids."""
    labels = labels or project.labels
    rows = [
        {"external_id": f"ext-{i}", "data": {"text": text_for(labels[i % len(labels)], i)}}
        for i in range(start, start + n)
    ]
    ids: list[int] = []
    for batch in import_items(project, rows):
        ids.extend(batch)
    return ids


def true_label(project: Project, item) -> str:
    """The label the generated text was made from (what a careful expert would answer)."""
    for label in project.labels:
        if WORDS[label].split()[0] in item.data["text"] or any(
            w in item.data["text"].split() for w in WORDS[label].split()
        ):
            return label
    raise AssertionError(item.data)


_experts = itertools.count(1)


class _AuditLane(random.Random):
    """Makes `next_item` serve its uniform random audit lane (the held-out set's lane)."""

    def random(self) -> float:
        return 0.0


def label_all(
    project: Project,
    ids: list[int],
    label: str | None = None,
    annotator: str | None = None,
    lane: str | None = None,
) -> None:
    """Label exactly the items `ids` through the expert's path: the queue serves an item
    (`pool.next_item`), the expert labels it (`pool.annotate`) with its true label (or `label`)
    if it is one of `ids`, and skips it otherwise.

    Each call is a new expert unless `annotator` is given (skips are per expert, so a later
    call still gets the items an earlier one skipped). Retrains trigger as they would for an
    expert (every `retrain_every` label changes). `lane="audit"` labels them through the
    uniform random audit lane, which makes them held-out items (a model must exist).
    """
    from webapp import pool

    annotator = annotator or f"user:label-all-{next(_experts)}"
    wanted = set(ids)
    while wanted:
        served = pool.next_item(project, annotator, _AuditLane() if lane == "audit" else None)
        assert served is not None, f"the queue never served items {sorted(wanted)}"
        item, reason = served
        assert lane is None or reason == lane, f"served through {reason}, not {lane}"
        if item.id in wanted:
            pool.annotate(project, item, annotator, label or true_label(project, item))
            wanted.discard(item.id)
        else:
            pool.skip(project, item, annotator)
            db.session.commit()
    db.session.refresh(project)


def queue_retrain(project: Project, trigger: str = "manual"):
    """Trigger a retrain as a view does: `trigger_retrain` flushes, the caller commits, and the
    job is enqueued after the commit. Returns the run."""
    from webapp import training

    run = training.trigger_retrain(project, trigger=trigger)
    db.session.commit()
    return run


def make_champion(project: Project, n_labeled: int = 150, n_pool: int = 50):
    """Import and label items, then retrain synchronously until a champion exists; return it."""
    from webapp import training

    ids = make_items(project, n_labeled + n_pool)
    label_all(project, ids[:n_labeled])
    run = queue_retrain(project)
    training.run_retrain(run.id)
    db.session.expire_all()
    champion = training.champion_version(project.id)
    assert champion is not None, db.session.get(type(run), run.id).reasons
    return champion


def make_version(project: Project, version: int, status: str = "candidate", artifact=b"", **kw):
    """A model version row without training (its artifact is `artifact`: empty unless given;
    its metrics those of a perfect score on one item per label unless given)."""
    from labeling.evaluation import evaluate
    from webapp.models import ModelVersion, utcnow

    if "metrics" not in kw:
        kw["metrics"] = evaluate(list(project.labels), list(project.labels), list(project.labels))

    row = ModelVersion(
        project_id=project.id,
        version=version,
        status=status,
        template=project.template,
        labels=list(project.labels),
        artifact=artifact,
        snapshot_digest="0" * 64,
        train_size=10,
        metrics=kw.pop("metrics"),
        promoted_at=kw.pop("promoted_at", utcnow() if status in ("champion", "retired") else None),
        **kw,
    )
    db.session.add(row)
    db.session.commit()
    return row


# For `make_reviewed_candidate`: imported labels all train, no automatic retrain, and a gate
# that judges on 5 audits and 5 items per class.
REVIEW_SETTINGS = {
    "heldout_share": 0.0,
    "retrain_every": 0,
    "gate": {"min_heldout": 5, "min_class_support": 5},
}


def make_reviewed_candidate(project: Project):
    """A champion v1 and a candidate v2 whose review is known by construction; returns a
    namespace of the runs, versions and item ids.

    v1 trains on 60 imported labels where the 20 tech texts are labeled `sport`, so it calls
    tech `sport`. Then 15 audits are labeled (5 per class, true labels: the held-out set), and
    the training labels change: the tech texts are corrected to `tech`, the politics texts
    to `sport`, 3 sport and 3 tech texts are added, and 2 sport texts are excluded. v2 trains
    on that: on the audits it FIXES the tech ones (v1 said sport) and BREAKS the politics ones
    (v1 got them, v2 says sport), which fails the class rule; the sport ones both get right.
    The project needs `REVIEW_SETTINGS`.
    """
    from types import SimpleNamespace

    from webapp import pool, training
    from webapp.models import Item, ModelVersion, RetrainRun
    from webapp.pool import exclusion

    ids = make_items(project, 150)
    by_class = {label: ids[i :: len(TEXT_LABELS)] for i, label in enumerate(TEXT_LABELS)}
    train = {label: rows[:20] for label, rows in by_class.items()}
    wrong = {"sport": "sport", "politics": "politics", "tech": "sport"}
    pairs = [(i, wrong[label]) for label, rows in train.items() for i in rows]
    pool.label_unlabeled(project, pairs, "import:first.csv")
    first = queue_retrain(project)
    training.run_retrain(first.id)
    db.session.expire_all()

    audits = {label: rows[20:25] for label, rows in by_class.items()}
    label_all(project, [i for rows in audits.values() for i in rows], lane="audit")

    fixer = "user:fixer"
    for label, new in (("tech", "tech"), ("politics", "sport")):
        for item_id in train[label]:
            pool.annotate(project, db.session.get(Item, item_id), fixer, new)
    added = by_class["sport"][25:28] + by_class["tech"][25:28]
    pool.label_unlabeled(
        project,
        [(i, true_label(project, db.session.get(Item, i))) for i in added],
        "import:more.csv",
    )
    removed = train["sport"][:2]
    for item_id in removed:
        exclusion.exclude(db.session.get(Item, item_id), "user:fixer", "duplicate text")
    db.session.commit()
    second = queue_retrain(project)
    training.run_retrain(second.id)
    db.session.expire_all()
    runs = [db.session.get(RetrainRun, run.id) for run in (first, second)]
    versions = [db.session.get(ModelVersion, run.model_version_id) for run in runs]
    return SimpleNamespace(
        project=project,
        runs=runs,
        versions=versions,
        audits=audits,
        fixed=sorted(audits["tech"]),
        broken=sorted(audits["politics"]),
        corrected=sorted(train["tech"] + train["politics"]),
        relabeled_tech=sorted(train["tech"]),
        added=sorted(added),
        removed=sorted(removed),
    )


def make_experiment_row(project: Project | None, status: str = "stopped", **kw):
    """An experiment row written as is (no champion or challenger needed), not yet added."""
    from webapp.models import Experiment

    values = {
        "project_id": project.id if project is not None else None,
        "name": "an old one",
        "share": 0.5,
        "salt": "s",
        "primary_metric": "accuracy",
        "guardrails": [],
        "alpha": 0.05,
        "mde": 0.03,
        "min_units": 100,
        "created_by": "test",
        "reasons": [],
        "shadow_high_water": 0,
        **kw,
    }
    return Experiment(status=status, **values)


# Three experts' answers on overlapping items, as `answer_overlap` gives them (items by index;
# s/p/t: sport/politics/tech). Figures worked out by hand from this table:
#   ann-bob share items 0-5, agree on 0, 1, 2, 4: 4/6; kappa (4/6 - 1/3) / (1 - 1/3) = 0.5
#   ann-cy and bob-cy share items 0-2, agree on 2 of 3; kappa (6/9 - 4/9) / (1 - 4/9) = 0.4
#   alpha over items 0-5: 1 - (15 - 1) * 6 / (15² - (6² + 5² + 4²)) = 16/37
#   final labels (the latest answer): 0-2 cy's, 3-5 bob's; ann agrees on 3 of 6, bob 5 of 6,
#   cy 3 of 3. Item 7 has ann's answer alone; item 6 (ann and bob disagree) gets excluded.
_S, _P, _T = "sport", "politics", "tech"
OVERLAP = [
    ("bob", 3, _P),  # replaced by bob's later answer on item 3
    *[("ann", i, label) for i, label in enumerate([_S, _S, _P, _P, _T, _T, _S, _S])],
    *[("bob", i, label) for i, label in enumerate([_S, _S, _P, _T, _T, _S, _T])],
    *[("cy", i, label) for i, label in enumerate([_S, _P, _P])],
]


def answer_overlap(project: Project, experts: dict[str, str]) -> list[int]:
    """Import 8 items and record `OVERLAP`'s answers through `pool.annotate`, oldest first, as
    the annotators `experts` maps `ann`, `bob` and `cy` to; return the items' ids (item 6 is
    the one to exclude)."""
    from webapp import pool
    from webapp.models import Item

    ids = make_items(project, 8)
    for who, index, label in OVERLAP:
        pool.annotate(project, db.session.get(Item, ids[index]), experts[who], label)
    return ids
