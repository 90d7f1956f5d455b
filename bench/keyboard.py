"""Keyboard-only labeling in a real browser: a key press to the next item ready, at 100k items.

One text project of 100,000 scored unlabeled items (the BBC News demo articles, cycled) and a
champion trained through the product (`training.run_retrain` on 600 labeled articles, run
inline), so the suggestion, every label's probability and the highlighted words are real. The
database is rebuilt on every run (PostgreSQL: the schema `bench_keyboard` of `corrigo_bench`,
dropped first; SQLite: a temporary file) with the migrations of the checkout the script runs
from, so the same file runs unchanged from an older checkout (the schema differs between them).

The app is served by werkzeug (`make_server(..., threaded=True)`) in a thread on 127.0.0.1.
Debian's Chromium, driven by Playwright, logs an annotator in through the form, opens
`/projects/<slug>/annotate` and presses the number keys 1..5 in turn (`page.keyboard.press`).
Per press, inside the page (no Python in the timed span): `performance.now()` in a keydown
listener (window, capture phase: it runs before the page's own handler) to

  * item ready: a different `#item[data-item-id]` swapped in and `body[data-keys=ready]`
    (a MutationObserver; its callback runs right after the DOM change, before paint);
  * side list updated: a new `#history` swapped in after that answer (its reload is triggered
    by the answer's `HX-Trigger` header). A page without `#history` has n/a here.

The next press waits until both happened, plus 50 ms. Baseline in the same process, interleaved
with the presses (press, then HTTP, then the next press): the same answer without a browser,
`POST /projects/<slug>/annotate/<id>` with `HX-Request: true` through `requests` (another
annotator, its own session, CSRF token from the form), timed from send to the whole response
read; and, when the page has a side list, its `GET .../annotate/history` the same way. A WSGI
wrapper records the server's own time per request (the view and the template, not the network
or the browser), to tell the server's share from the browser's.

    .venv/bin/python -m bench.keyboard [--db postgresql] [--items 100000] [--presses 200]
        [--warmup 10] [--profile 100]

`--profile N` then answers N more items through Flask's test client with each step of the
answer's response (and of the side list's) wrapped in a timer, where the checkout has it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from bench.common import PG_URL, analyze, header, load, median, ms, p95, parse_args, table, timed

SCHEMA = "bench_keyboard"
SLUG = "kb"
PASSWORD = "bench-pass"
BROWSER_USER = "kb-browser@example.com"
HTTP_USER = "kb-http@example.com"
PROFILE_USER = "kb-profile@example.com"
SEED_LABELS = 600
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
COLUMNS = (
    "project_id",
    "external_id",
    "data",
    "source",
    "created_at",
    "rand",
    "score",
    "scored_by",
    "score_strategy",
)

# Installed before each press: resolves once the next item is ready and the side list (if the
# page has one) was swapped anew. Times are performance.now() in the page.
ARM = """() => {
  const prev = document.querySelector("#item")?.dataset.itemId;
  const oldHistory = document.querySelector("#history");
  const r = {t0: null, ready: null, history: oldHistory ? null : undefined, prev};
  window.__kb = r;
  r.done = new Promise((resolve) => {
    const check = () => {
      if (r.t0 === null) return;
      const now = performance.now();
      if (r.ready === null && document.body.dataset.keys === "ready"
          && document.querySelector("#item")?.dataset.itemId !== prev) r.ready = now;
      if (r.history === null) {
        const h = document.querySelector("#history");
        if (h && h !== oldHistory) r.history = now;
      }
      if (r.ready !== null && r.history !== null) {
        observer.disconnect();
        resolve();
      }
    };
    const observer = new MutationObserver(check);
    observer.observe(document.body, {attributes: true, childList: true, subtree: true});
    window.addEventListener("keydown", () => {
      if (r.t0 === null) r.t0 = performance.now();
    }, {capture: true, once: true});
  });
}"""

WAIT = """async (timeoutMs) => {
  const r = window.__kb;
  if (!r) return null;
  await Promise.race([r.done, new Promise((res) => setTimeout(res, timeoutMs))]);
  return {
    t0: r.t0, ready: r.ready, history: r.history === undefined ? null : r.history,
    hasHistory: r.history !== undefined,
    item: document.querySelector("#item")?.dataset.itemId ?? null,
  };
}"""


# ---------------------------------------------------------------------------------------------
# The database, rebuilt on every run


def _pg_url() -> str:
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def keyboard_app(backend: str) -> Iterator:
    """Yield an app (context pushed) on a freshly migrated database of its own."""
    from flask_migrate import upgrade

    from webapp import create_app, serving
    from webapp.extensions import db

    with tempfile.TemporaryDirectory(prefix="corrigo-bench-") as tmp:
        os.environ["CORRIGO_INSTANCE"] = tmp
        if backend == "postgresql":
            engine = create_engine(PG_URL)
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
                conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
            engine.dispose()
            url = _pg_url()
        else:
            url = f"sqlite:///{os.path.join(tmp, 'keyboard.sqlite')}"
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "bench",
                "SQLALCHEMY_DATABASE_URI": url,
                # No Redis: the rescore a promotion queues stays a row (nothing runs it).
                "REDIS_URL": "redis://127.0.0.1:1/0",
                "RQ_QUEUE": "corrigo-bench-keyboard",
            }
        )
        serving._cache.clear()
        with app.app_context():
            upgrade()
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()
                serving._cache.clear()
                if backend == "postgresql":
                    engine = create_engine(PG_URL)
                    with engine.begin() as conn:
                        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
                    engine.dispose()


def _bulk_items(project_id: int, texts: list[str], n: int, key: tuple[int, str]) -> None:
    """n unlabeled items scored under the champion's key: COPY (PostgreSQL) or executemany."""
    from webapp.extensions import db
    from webapp.models import utcnow

    champion_id, strategy = key
    rng = random.Random(n)
    now = utcnow()
    rows = (
        (
            project_id,
            f"kb-{i:06d}",
            json.dumps({"text": texts[i % len(texts)]}),
            "import",
            now,
            rng.random(),
            -rng.random(),  # a margin score in [-1, 0], as a rescore leaves it
            champion_id,
            strategy,
        )
        for i in range(n)
    )
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if db.engine.dialect.name == "sqlite":
            marks = ", ".join("?" * len(COLUMNS))
            cur.executemany(f"INSERT INTO item ({', '.join(COLUMNS)}) VALUES ({marks})", rows)
        else:
            with cur.copy(f"COPY item ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
        cur.close()
    finally:
        raw.close()


def build(n: int) -> dict:
    """The project, its champion (trained by the product's retrain) and n scored items."""
    from tests.factories import make_project, make_user
    from webapp import pool, training
    from webapp.demo import BBC_LABELS, load_bbc, seed_sample
    from webapp.extensions import db
    from webapp.models import ModelVersion

    articles = load_bbc()
    project = make_project(slug=SLUG, labels=list(BBC_LABELS), settings={"retrain_every": 0})
    for email in (BROWSER_USER, HTTP_USER, PROFILE_USER):
        make_user(email, PASSWORD, role="annotator")
    seeds = seed_sample(articles, SEED_LABELS)
    rows = [{"external_id": a.external_id, "data": {"text": a.text}} for a in seeds]
    ids = [i for batch in pool.import_items(project, rows) for i in batch]
    pool.label_unlabeled(
        project, [(i, a.label) for i, a in zip(ids, seeds, strict=True)], "seed:bench"
    )
    db.session.commit()
    run = training.trigger_retrain(project)
    db.session.commit()
    train_s, status = timed(lambda: training.run_retrain(run.id))
    champion = db.session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project.id, ModelVersion.status == "champion"
        )
    )
    if champion is None:
        raise SystemExit(f"the retrain did not promote a champion (run {status})")
    key = training.score_key(project)
    load_s, _ = timed(lambda: _bulk_items(project.id, [a.text for a in articles], n, key))
    analyze()  # as autovacuum would after the import (PostgreSQL only)
    db.session.commit()
    return {
        "train_s": train_s,
        "load_s": load_s,
        "version": champion.version,
        "metrics": champion.metrics,
        "counts": pool.counts(project),
    }


# ---------------------------------------------------------------------------------------------
# The server, with the server's own time per request


class Timing:
    """WSGI wrapper: the time the app takes per request (its view and template), by kind."""

    def __init__(self, app):
        self.app = app
        self.samples: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        status = []

        def record(code, headers, *exc_info):
            status.append(code)
            return start_response(code, headers, *exc_info)

        start = time.perf_counter()
        body = self.app(environ, record)
        chunks = list(body)  # Flask renders eagerly; this only drains the iterable
        if hasattr(body, "close"):
            body.close()
        elapsed = time.perf_counter() - start
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        who = "http" if "python-requests" in environ.get("HTTP_USER_AGENT", "") else "browser"
        kind = None
        if method == "POST" and re.fullmatch(rf"/projects/{SLUG}/annotate/\d+", path):
            kind = f"POST answer ({who})"
        elif method == "GET" and path == f"/projects/{SLUG}/annotate/history":
            kind = f"GET side list ({who})"
        if kind and status and status[0].startswith("200"):
            with self.lock:
                self.samples.setdefault(kind, []).append(elapsed)
        return chunks


@contextlib.contextmanager
def serve(app) -> Iterator[tuple[str, Timing]]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    timing = Timing(app.wsgi_app)
    app.wsgi_app = timing
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", timing
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# The HTTP client (baseline)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if not found:
        raise RuntimeError("no CSRF token in the page")
    return found.group(1)


def _item_id(html: str) -> str | None:
    found = re.search(r'id="item"[^>]*data-item-id="(\d+)"', html)
    return found.group(1) if found else None


class HttpExpert:
    """An annotator answering with raw HTTP requests, as htmx would send them."""

    def __init__(self, base: str, labels: list[str]):
        import requests

        self.base, self.labels = base, labels
        self.session = requests.Session()
        page = self.session.get(f"{base}/login").text
        resp = self.session.post(
            f"{base}/login",
            data={"email": HTTP_USER, "password": PASSWORD, "csrf_token": _csrf(page)},
            allow_redirects=False,
        )
        if resp.status_code != 302:
            raise RuntimeError(f"login failed: {resp.status_code}")
        page = self.session.get(f"{base}/projects/{SLUG}/annotate").text
        self.token, self.item = _csrf(page), _item_id(page)
        self.history_url = f"{base}/projects/{SLUG}/annotate/history"
        probe = self.session.get(self.history_url, headers={"HX-Request": "true"})
        self.has_history = probe.status_code == 200
        self.count = 0

    def answer(self) -> float:
        """POST one answer; return send-to-whole-response seconds."""
        label = self.labels[self.count % len(self.labels)]
        self.count += 1
        url = f"{self.base}/projects/{SLUG}/annotate/{self.item}"
        start = time.perf_counter()
        resp = self.session.post(
            url,
            data={"csrf_token": self.token, "label": label},
            headers={"HX-Request": "true", "HX-Target": "item"},
        )
        body = resp.text
        elapsed = time.perf_counter() - start
        if resp.status_code != 200 or "Saved #" not in body:
            raise RuntimeError(f"answer failed: {resp.status_code} {body[:200]}")
        self.item = _item_id(body)
        return elapsed

    def side_list(self) -> float | None:
        if not self.has_history:
            return None
        start = time.perf_counter()
        resp = self.session.get(self.history_url, headers={"HX-Request": "true"})
        _body = resp.text
        elapsed = time.perf_counter() - start
        if resp.status_code != 200:
            raise RuntimeError(f"side list failed: {resp.status_code}")
        return elapsed


# ---------------------------------------------------------------------------------------------
# Where the server's time goes (--profile)

# (module path, attribute): the steps of an answer's response, timed where they exist (the
# older page has no highlights and no side list).
STEPS = (
    ("webapp.pool", "annotate"),
    ("webapp.pool", "next_item"),
    ("webapp.annotate.routes", "_suggestion"),
    ("webapp.annotate.routes", "_highlighted"),
    ("labeling.explain", "term_weights"),
    ("webapp.serving", "champion_model"),
    ("webapp.annotate.routes", "render_template"),
    ("webapp.annotate.routes", "_history_context"),
    ("webapp.pool.history", "recent_answers"),
    ("webapp.pool.history", "skipped"),
    ("webapp.pool.history", "progress"),
)


def profile(app, n: int) -> list[list[str]]:
    """Answer n items through the test client (htmx headers), then reload the side list, with
    each step of STEPS wrapped in a timer: per step, the median time it takes per request."""
    import importlib

    from webapp.extensions import db

    spent: dict[str, float] = {}
    patched = []

    def timer(name, fn):
        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

        return wrapped

    for module_name, attr in STEPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue  # not in this checkout
        fn = getattr(module, attr, None)
        if fn is not None:
            patched.append((module, attr, fn))
            setattr(module, attr, timer(f"{module_name.rsplit('.', 1)[-1]}.{attr}", fn))
    # Patched on their modules: the callers look them up there at each call.
    client = app.test_client()
    try:
        client.get("/login")
        with client.session_transaction() as sess:
            token = sess["csrf"]
        resp = client.post(
            "/login", data={"email": PROFILE_USER, "password": PASSWORD, "csrf_token": token}
        )
        if resp.status_code != 302:
            raise RuntimeError(f"profile login failed: {resp.status_code}")
        page = client.get(f"/projects/{SLUG}/annotate").get_data(as_text=True)
        token, item = _csrf(page), _item_id(page)
        labels = re.findall(r'name="label" value="([^"]+)"', page) or ["x"]
        hx = {"HX-Request": "true"}
        history_url = f"/projects/{SLUG}/annotate/history"
        has_history = client.get(history_url, headers=hx).status_code == 200
        per: dict[str, dict[str, list[float]]] = {"POST answer": {}, "GET side list": {}}
        for i in range(10 + n):
            spent.clear()
            start = time.perf_counter()
            resp = client.post(
                f"/projects/{SLUG}/annotate/{item}",
                data={"csrf_token": token, "label": labels[i % len(labels)]},
                headers=hx,
            )
            total = time.perf_counter() - start
            body = resp.get_data(as_text=True)
            if resp.status_code != 200 or "Saved #" not in body:
                raise RuntimeError(f"profile answer failed: {resp.status_code}")
            item = _item_id(body)
            if i >= 10:
                for name, seconds in {"whole request": total, **spent}.items():
                    per["POST answer"].setdefault(name, []).append(seconds)
            if has_history:
                spent.clear()
                start = time.perf_counter()
                client.get(history_url, headers=hx)
                total = time.perf_counter() - start
                if i >= 10:
                    for name, seconds in {"whole request": total, **spent}.items():
                        per["GET side list"].setdefault(name, []).append(seconds)
    finally:
        for module, attr, fn in patched:
            setattr(module, attr, fn)
        db.session.remove()
    rows = []
    for request_kind, steps in per.items():
        for name, samples in steps.items():
            rows.append([request_kind, name, ms(median(samples)), ms(p95(samples)), len(samples)])
    return rows


# ---------------------------------------------------------------------------------------------
# The run


def measure(base: str, presses: int, warmup: int, labels: int) -> dict:
    from playwright.sync_api import sync_playwright

    out: dict[str, list] = {"item": [], "history": [], "post": [], "side": [], "missed": []}
    http = HttpExpert(base, [str(k) for k in range(labels)])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=email]", BROWSER_USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/projects")
        page.goto(f"/projects/{SLUG}/annotate")
        page.wait_for_selector("body[data-keys=ready]")
        page.evaluate("window.__marker = 1")
        http.labels = page.eval_on_selector_all(
            "#item .label-button", "els => els.map(e => e.value)"
        )
        for i in range(warmup + presses):
            page.evaluate(ARM)
            page.keyboard.press(str(i % labels + 1))
            r = page.evaluate(WAIT, 10_000)
            if r is None or page.evaluate("window.__marker") != 1:
                raise RuntimeError("the page reloaded: a key submitted the bare form")
            if r["ready"] is None:
                raise RuntimeError(f"press {i}: the next item never became ready ({r})")
            time.sleep(0.05)
            post = http.answer()
            side = http.side_list()
            time.sleep(0.05)
            if i < warmup:
                continue
            out["item"].append((r["ready"] - r["t0"]) / 1000)
            if r["hasHistory"]:
                if r["history"] is None:
                    out["missed"].append(i)
                else:
                    out["history"].append((r["history"] - r["t0"]) / 1000)
            out["post"].append(post)
            if side is not None:
                out["side"].append(side)
        context.close()
        browser.close()
    return out


def _row(what: str, samples: list[float]) -> list[str]:
    if not samples:
        return [what, "n/a", "n/a", "n/a", "0"]
    return [
        what,
        ms(median(samples)),
        ms(p95(samples)),
        ms(statistics.mean(samples)),
        str(len(samples)),
    ]


def main() -> None:
    from webapp.extensions import db

    args = parse_args(
        __doc__,
        items=(100_000, "unlabeled items in the project"),
        presses=(200, "timed key presses"),
        warmup=(10, "untimed key presses first"),
        profile=(0, "then answer this many items through the test client, steps timed"),
    )
    if not any(a.startswith("--db") for a in sys.argv[1:]):
        args.db = ["postgresql"]  # what the issue asks; `--db sqlite,postgresql` for both
    header("keyboard labeling in Chromium: key press to next item ready")
    commit = os.popen("git rev-parse --short HEAD 2>/dev/null").read().strip() or "?"
    print(f"# checkout {os.getcwd()} at {commit}")
    for backend in args.db:
        with keyboard_app(backend) as app:
            build_s, built = timed(lambda: build(args.items))
            print(
                f"# {backend}: built in {build_s:.1f} s (retrain {built['train_s']:.1f} s, "
                f"COPY of {args.items:,} items {built['load_s']:.1f} s); champion "
                f"v{built['version']}, {built['counts']}",
                flush=True,
            )
            db.session.remove()
            with serve(app) as (base, timing):
                load()
                run_s, out = timed(lambda: measure(base, args.presses, args.warmup, 5))
                load()
            steps = profile(app, args.profile) if args.profile else []
        item, post = out["item"], out["post"]
        print(
            f"\n## {backend}, {args.items:,} unlabeled: {args.presses} presses "
            f"(after {args.warmup} warm-up) in {run_s:.0f} s\n"
        )
        rows = [
            _row("browser: key press → next item ready", item),
            _row("browser: key press → side list updated", out["history"]),
            _row("HTTP: POST answer (baseline)", post),
            _row("HTTP: GET side list", out["side"]),
        ]
        for kind in sorted(timing.samples):
            samples = timing.samples[kind]
            # The timed presses' requests are the last ones of each kind.
            rows.append(_row(f"server time: {kind}", samples[-args.presses :]))
        print(table(["what", "median", "p95", "mean", "n"], rows))
        if out["missed"]:
            print(f"\nside list not updated within 10 s after presses {out['missed']}")
        print(
            f"\nbrowser item ready / HTTP POST: median {median(item) / median(post):.2f}x, "
            f"p95 {p95(item) / p95(post):.2f}x"
        )
        if steps:
            print(
                f"\n## {backend}: where the server's time goes, {args.profile} answers through "
                "the test client (each step timed where it exists; steps nest)\n"
            )
            print(table(["request", "step", "median", "p95", "n"], steps))


if __name__ == "__main__":
    main()
