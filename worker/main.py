"""The worker's entry point: build the app once, re-enqueue lost intents, then work the queue."""

from __future__ import annotations

from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer

from webapp import create_app, jobs, training
from webapp.extensions import db

from . import set_app


def run(burst: bool = False, simple: bool = False, app=None) -> bool:
    """Work the Corrigo queue; `burst` stops when it is empty, `simple` runs jobs in-process."""
    app = app or create_app()
    set_app(app)
    with app.app_context():
        # Runs and tasks recorded while Redis was unreachable are enqueued now.
        training.requeue_pending()
        # End the transaction before waiting for jobs: an open one ("idle in transaction")
        # keeps PostgreSQL from vacuuming anything newer than its snapshot.
        db.session.remove()
        queue = jobs.get_queue()
        worker_class = SimpleWorker if simple else Worker
        worker = worker_class([queue], connection=jobs.get_redis(), serializer=JSONSerializer)
        return worker.work(burst=burst, logging_level="INFO")
