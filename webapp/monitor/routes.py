"""Views."""

from flask_login import login_required

from . import bp


@bp.get("/projects")
@login_required
def projects():
    """List projects."""
    return "projects"
