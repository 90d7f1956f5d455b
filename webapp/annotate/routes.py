"""Views: the labeling page, one leased item at a time, swapped in by htmx without a reload."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from labeling import explain
from labeling.sampling import COMMITTEE_STRATEGIES

from .. import pool, serving
from ..enums import Kind, QueueReason, Role
from ..errors import ValidationError
from ..extensions import db
from ..models import Annotation, Feedback, Item, Prediction, Project
from ..monitor.routes import project_or_404
from ..pool import history
from ..pool.queue import SUGGESTED_SCAN
from . import bp

# The lane filter's last choice: the reviewers' queue (their page, not the labeling queue).
REVIEW_LANE = "review"
# The event the history side list listens for: every answer, skip, undo or edit sends it.
CHANGED = "history-changed"

# Number keys for the first ten labels, in the order of the keyboard's top row.
KEYS = "1234567890"


def _reason_tip(project: Project, reason: str) -> str:
    """Explain in one sentence why the queue served an item."""
    share = project.setting("audit_share")
    strategy = project.setting("query_strategy")
    why = "the current model is least sure about this item"
    if strategy in COMMITTEE_STRATEGIES:
        why = "models trained like the current one disagree most about this item"
    return {
        "disputed": "Production feedback says the model got this item wrong or suggests another "
        "label. Disputed items always come first.",
        "uncertain": f"{why[0].upper()}{why[1:]} ({strategy} sampling), so your label teaches "
        "it the most.",
        "audit": f"A uniform random pick ({share:.0%} of items served) that keeps the sample "
        "honest and catches the model's blind spots.",
        "cold-start": "No model exists yet, so items come from across the pool: one from each "
        "group of similar items first, then at random.",
    }.get(reason, "")


def _hx() -> bool:
    """Whether htmx sent the request (then only the partial is returned)."""
    return request.headers.get("HX-Request") == "true"


def _labeled_here(project: Project, add: int = 0) -> int:
    """Count of items this browser session labeled in the project, optionally adding to it."""
    counts = dict(session.get("labeled", {}))
    key = str(project.id)
    if add:
        counts[key] = counts.get(key, 0) + add
        session["labeled"] = counts
    return counts.get(key, 0)


def _suggestion(project: Project, item: Item) -> tuple[dict | None, dict[str, float]]:
    """The champion's label for the item with every label's probability (None before any
    promotion), and for text the words behind it (word -> weight, the strongest 1)."""
    weights: dict[str, float] = {}
    try:
        both = None
        if project.kind == Kind.TEXT:
            champion = serving.champion_model(project)
            if champion is None:
                return None, {}
            text = str(item.data.get("text", ""))
            both = explain.suggest_and_explain(champion[2], text, list(project.labels))
        if both is not None:  # one pass through the text pipeline for both
            proba, weights = both
            version_no = champion[1]
            probabilities = {
                label: round(float(p), 6) for label, p in zip(project.labels, proba, strict=True)
            }
        else:
            suggested = serving.suggest(project, item.data)
            if suggested is None:
                return None, {}
            version_no, probabilities = suggested
    except ValueError:
        # Data the model cannot read (a non-numeric feature, say) only costs the suggestion.
        current_app.logger.warning("no suggestion for item %s", item.id, exc_info=True)
        return None, {}
    strongest = max(weights.values(), default=0.0) or 1.0
    scaled = {word: w / strongest for word, w in weights.items()}
    return serving.ranked(version_no, probabilities), scaled


def _dispute(item: Item) -> dict | None:
    """The latest feedback on the item's predictions: what the model said, what users said."""
    row = db.session.execute(
        select(Prediction.label, Feedback.correct, Feedback.label, Feedback.comment)
        .join(Prediction, Feedback.prediction_id == Prediction.id)
        .where(Prediction.item_id == item.id)
        .order_by(Feedback.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    predicted, correct, suggested, comment = row
    return {"predicted": predicted, "correct": correct, "label": suggested, "comment": comment}


def _unusual(project: Project, item: Item) -> dict[str, float]:
    """Feature -> percentile, for the item's values in the outer 1% of the champion's pool."""
    features = item.data.get("features") or {}
    return explain.unusual_values(serving.champion_reference(project), features)


def _paragraphs(text: str) -> list[str]:
    """Split a text on blank lines, so the page keeps the author's paragraphs."""
    blocks = [block.strip("\n") for block in text.replace("\r\n", "\n").split("\n\n")]
    return [block for block in blocks if block.strip()]


def _render(
    project: Project,
    picked: tuple[Item, str] | None,
    message: str | None = None,
    level: str = "info",
    error: str | None = None,
    status: int = 200,
):
    """Render the item (or the empty-queue state): the partial for htmx, else the whole page."""
    item, reason = picked if picked else (None, None)
    labels = project.labels
    filters = {k: v for k, v in _filters(project).items() if v and v != "all"}
    context = {
        "project": project,
        "item": item,
        "reason": reason,
        "labels": [(label, KEYS[i] if i < len(KEYS) else None) for i, label in enumerate(labels)],
        "labeled_here": _labeled_here(project),
        "message": message,
        "level": level,
        "error": error,
        "filters": filters,
        "lane_filters": pool.LANE_FILTERS,
        # Only a filtered page says what the audit share is (a count while the share is early).
        "audit_share": pool.audit_share_now(project) if any(filters.values()) else None,
        "suggested_scan": SUGGESTED_SCAN,
    }
    if item is not None:
        suggestion, weights = _suggestion(project, item)
        paragraphs = _paragraphs(item.data.get("text", "")) if project.kind == Kind.TEXT else []
        tip = _reason_tip(project, reason)
        if item.pending_since is not None:
            tip += (
                " Another expert has answered it: yours is a second opinion, and their answer "
                "shows in your side list once you have given yours."
            )
        disputed = item.disputed_at is not None or reason == QueueReason.DISPUTED
        context.update(
            tip=tip,
            suggestion=suggestion,
            dispute=_dispute(item) if disputed else None,
            paragraphs=[explain.segments(paragraph, weights) for paragraph in paragraphs],
            unusual=_unusual(project, item) if project.kind != Kind.TEXT else {},
        )
    if _hx():
        # After the swap settles: the side list reloads once the next item is ready, and never
        # competes with it.
        headers = {"HX-Trigger-After-Settle": CHANGED}
        return render_template("annotate/_item.html", **context), status, headers
    context.update(_history_context(project))
    return render_template("annotate/page.html", **context), status


def _history_context(project: Project, **extra) -> dict:
    """What the side list shows: the expert's last answers and skips, and their progress."""
    annotator = current_user.annotator
    counts = pool.counts(project)
    return {
        "project": project,
        "answers": history.recent_answers(project, annotator),
        "skips": history.skipped(project, annotator),
        "progress": history.progress(project, annotator),
        "left": {
            "disputed": counts["disputed"],
            "unlabeled": max(counts["items"] - counts["labeled"], 0),
            "second": history.waiting_for_second_opinion(project),
        },
        **extra,
    }


def _render_history(project: Project, status: int = 200, **extra):
    """The side list's partial (htmx), or the labeling page around it (no JS)."""
    if not _hx():
        if extra.get("message"):
            flash(extra["message"], extra.get("level", "info"))
        return redirect(url_for("annotate.next_item", slug=project.slug))
    return render_template("annotate/_history.html", **_history_context(project, **extra)), status


def _next(project: Project, message: str, level: str = "info"):
    """After an action: the next item's partial for htmx, or a redirect to the page without JS."""
    if not _hx():
        flash(message, level)
        return redirect(url_for("annotate.next_item", slug=project.slug))
    return _render(project, _pick(project), message, level)


def _item_or_404(project: Project, item_id: int) -> Item:
    """The project's item with this id, or a 404 page (ids past BIGINT's range included)."""
    item = db.session.get(Item, item_id) if item_id < 2**63 else None
    if item is None or item.project_id != project.id:
        abort(404, f"There is no item #{item_id} in {project.name}.")
    return item


def _settled_answer(item: Item, annotator: str) -> tuple[str, str] | None:
    """(who, label) of the item's latest answer when the item is settled for this expert:
    labeled, not disputed, and no longer leased to them. Either their own answer sent twice,
    or someone else's given after their lease ran out; None for an item still to answer."""
    if item.label is None or item.disputed_at is not None or item.lease_owner == annotator:
        return None  # unanswered, disputed, or still this expert's (a second opinion)
    last = db.session.execute(
        select(Annotation.annotator, Annotation.label)
        .where(Annotation.item_id == item.id)
        .order_by(Annotation.id.desc())
        .limit(1)
    ).first()
    return None if last is None else (last.annotator, last.label)


def _filters(project: Project) -> dict:
    """The expert's queue filters in this project (lane, suggested label), kept in the session."""
    return dict(session.get("filters", {}).get(str(project.id), {}))


def _set_filters(project: Project, lane: str, label: str) -> str | None:
    """Keep valid filters in the session; return an error message for invalid ones."""
    if lane not in pool.LANE_FILTERS:
        return f"“{lane}” is not a lane: pick one of {', '.join(pool.LANE_FILTERS)}."
    if label and label not in project.labels:
        return f"“{label}” is not a label of this project."
    filters = dict(session.get("filters", {}))
    filters[str(project.id)] = {"lane": lane, "label": label}
    session["filters"] = filters
    return None


def _pick(project: Project) -> tuple[Item, str] | None:
    """Lease the next item to the user, through their filters."""
    chosen = _filters(project)
    return pool.next_item(
        project,
        current_user.annotator,
        lane=chosen.get("lane"),
        suggested=chosen.get("label") or None,
        predict=lambda rows: serving.suggested_labels(project, rows),
    )


@bp.get("/projects/<slug>/annotate")
@login_required
def next_item(slug: str):
    """Show the labeling page with the next item leased to the user (`?lane=&label=` filter)."""
    project = project_or_404(slug)
    if request.args.get("lane") == REVIEW_LANE:
        # Items waiting for review are decided on the reviewers' page, not served as answers.
        if current_user.role in (Role.REVIEWER, Role.ENGINEER, Role.ADMIN):
            return redirect(url_for("review.queue", slug=project.slug))
        flash(
            "Items waiting for review are decided by reviewers on the project's Review page: "
            "ask one, or pick another lane.",
            "warning",
        )
        return redirect(url_for("annotate.next_item", slug=project.slug))
    if "lane" in request.args or "label" in request.args:
        error = _set_filters(
            project, request.args.get("lane", "all"), request.args.get("label", "")
        )
        if error:
            flash(error, "error")
        else:
            # The item held now was picked under the old filter: give it back to the queue.
            pool.release_held(project, current_user.annotator)
            db.session.commit()
        return redirect(url_for("annotate.next_item", slug=project.slug))
    return _render(project, _pick(project))


@bp.post("/projects/<slug>/annotate/<int:item_id>")
@login_required
def submit(slug: str, item_id: int):
    """Record the user's label for an item, then show the next one."""
    project = project_or_404(slug)
    item = _item_or_404(project, item_id)
    annotator = current_user.annotator
    label = request.form.get("label", "")
    if pool.leased_to_other(item, annotator):
        return _next(
            project,
            f"Item #{item.id} was passed to someone else after your lease ran out, so your "
            "label was not saved. Here is your next item.",
            "warning",
        )
    settled = _settled_answer(item, annotator)
    if settled is not None and settled[0] == annotator and item.label == label:
        return _next(project, f"Item #{item.id} was already saved as {label}.")
    # Answered by someone else after this expert's lease ran out: both answers are kept.
    overtaken = settled if settled is not None and settled[0] != annotator else None
    try:
        pool.annotate(project, item, annotator, label)
    except ValidationError:
        db.session.rollback()
        error = (
            f"“{label}” is not a label of this project: pick one of the buttons below."
            if label
            else "Pick a label: press its number key or click its button."
        )
        return _render(
            project, (item, item.lease_reason or QueueReason.AUDIT), error=error, status=422
        )
    _labeled_here(project, add=1)
    if overtaken is not None:
        who, their = overtaken
        return _next(
            project,
            f"Saved #{item.id} as {label}. {who} had answered it ({their}) after your lease ran "
            "out: both answers are kept, and the item now reads yours.",
            "warning",
        )
    return _next(project, f"Saved #{item.id} as {label}.")


@bp.post("/projects/<slug>/annotate/<int:item_id>/skip")
@login_required
def skip(slug: str, item_id: int):
    """Hide an item from this user and show the next one."""
    project = project_or_404(slug)
    item = _item_or_404(project, item_id)
    pool.skip(project, item, current_user.annotator)
    db.session.commit()  # services flush, the view commits (webapp/transaction.py)
    return _next(project, f"Skipped #{item.id}; it will not come back to you.")


@bp.get("/projects/<slug>/annotate/history")
@login_required
def show_history(slug: str):
    """The expert's side list: last answers (editable), skips (to bring back), progress."""
    return _render_history(project_or_404(slug))


@bp.post("/projects/<slug>/annotate/undo")
@login_required
def undo(slug: str):
    """Take back the expert's last answer or skip and show that item again."""
    project = project_or_404(slug)
    try:
        done = history.undo(project, current_user.annotator)
    except history.Refused as refused:
        db.session.rollback()
        return _next(project, str(refused), "warning")
    db.session.commit()
    if done.kind == "answer":
        _labeled_here(project, add=-1)
    if not done.again:
        return _next(project, f"Undid {done.what}.")
    if not _hx():
        flash(f"Undid {done.what}: answer it again.", "info")
        return redirect(url_for("annotate.next_item", slug=project.slug))
    picked = (done.item, done.lane or QueueReason.AUDIT)
    return _render(project, picked, f"Undid {done.what}: answer it again.")


@bp.post("/projects/<slug>/annotate/history/<int:item_id>")
@login_required
def edit(slug: str, item_id: int):
    """Change one of the expert's answers from the side list, in place."""
    project = project_or_404(slug)
    label = request.form.get("label", "")
    try:
        changed = history.edit(project, current_user.annotator, item_id, label)
    except ValidationError:
        db.session.rollback()
        message = f"“{label}” is not a label of this project; #{item_id} is unchanged."
        return _render_history(project, 422, message=message, level="error")
    except history.Refused as refused:
        db.session.rollback()
        return _render_history(project, 409, message=str(refused), level="warning")
    db.session.commit()
    return _render_history(project, message=f"#{item_id} is now {changed.label}.")


@bp.post("/projects/<slug>/annotate/skipped/<int:item_id>")
@login_required
def bring_back(slug: str, item_id: int):
    """Bring a skipped item back and show it to answer now."""
    project = project_or_404(slug)
    try:
        item, lane = history.bring_back(project, current_user.annotator, item_id)
    except history.Refused as refused:
        db.session.rollback()
        return _next(project, str(refused), "warning")
    db.session.commit()
    if not _hx():
        flash(f"#{item_id} is back: answer it now.", "info")
        return redirect(url_for("annotate.next_item", slug=project.slug))
    return _render(project, (item, lane or QueueReason.AUDIT), f"#{item_id} is back.")
