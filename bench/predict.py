"""Prediction latency: `POST /api/v1/projects/<slug>/predict` per request vs raw predict_proba.

Per backend: the BBC demo project with a champion of the demo template (TF-IDF word 1-2 grams +
logistic regression) fit on the train split of all 2,127 articles, stored as the skops artifact
the retrain would store. Each request posts one held-out article (no external id, so each one
logs a new item and a prediction row). Measured, interleaved so all three share the machine's
load:

  * `POST /api/v1/projects/<slug>/predict` through the Flask test client with a `predict` key;
  * `webapp.serving.predict(project, data)` called directly (no HTTP, auth or JSON);
  * the baseline: raw `predict_proba([text])` on the very same fitted model object.

Also reported: the first request after the champion appears, which loads its artifact.

    .venv/bin/python -m bench.predict [--db sqlite,postgresql] [--calls 300]
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from bench.common import (
    add_champion,
    bench_app,
    header,
    load,
    median,
    ms,
    p95,
    parse_args,
    ratio,
    table,
    timed,
)
from labeling import artifacts, split, training
from tests.factories import make_key, make_project
from webapp import serving
from webapp.demo import BBC_LABELS, load_bbc
from webapp.extensions import db
from webapp.models import Item, Prediction

URL = "/api/v1/projects/<slug>/predict"


def _fit(articles):
    """Fit the demo template on the hash train split.

    Returns (artifact bytes, held-out texts, train size, the fitted model).
    """
    ids = np.arange(1, len(articles) + 1, dtype=np.int64)
    held = split.heldout_mask(ids, 0.2)
    train = [a for a, h in zip(articles, held, strict=True) if not h]
    model = training.fit_model("text-logreg", [a.text for a in train], [a.label for a in train])
    texts = [a.text for a, h in zip(articles, held, strict=True) if h]
    return artifacts.dumps(model), texts, len(train), model


def bench_backend(app, blob: bytes, texts: list[str], train_size: int, calls: int) -> dict:
    project = make_project(slug="bbc", labels=list(BBC_LABELS), settings={"retrain_every": 0})
    add_champion(project, blob, train_size)
    db.session.commit()
    key = make_key(project, scopes=("predict",))
    headers = {"Authorization": f"Bearer {key}"}
    client = app.test_client()
    http_route = any(r.rule == URL for r in app.url_map.iter_rules())
    url = URL.replace("<slug>", project.slug)

    def http(text: str):
        resp = client.post(url, json={"data": {"text": text}}, headers=headers)
        if resp.status_code != 200:
            raise RuntimeError(f"predict: {resp.status_code} {resp.get_data(as_text=True)}")
        return resp.get_json()

    def direct(text: str):
        answer = serving.predict(project, {"text": text})
        db.session.commit()  # what the view does after it
        return answer

    # The first call of the process loads the champion's artifact into the serving cache.
    cold, _ = timed(lambda: (http if http_route else direct)(texts[0]))
    model = serving.champion_model(project)[2]

    raw, via_http, via_serving = [], [], []
    for i in range(10 + calls):
        text = texts[i % len(texts)]
        seconds, _ = timed(lambda: model.predict_proba([text]))  # noqa: B023
        if i >= 10:
            raw.append(seconds)
        if http_route:
            seconds, body = timed(lambda: http(text))  # noqa: B023
            if i >= 10:
                via_http.append(seconds)
        seconds, body = timed(lambda: direct(text))  # noqa: B023
        if i >= 10:
            via_serving.append(seconds)
    logged = db.session.scalar(select(func.count(Prediction.id)))
    items = db.session.scalar(select(func.count(Item.id)))
    return {
        "cold": cold,
        "raw": raw,
        "http": via_http or None,
        "serving": via_serving,
        "logged": logged,
        "items": items,
        "last": body,
    }


def main() -> None:
    args = parse_args(__doc__, calls=(300, "timed requests per backend"))
    header("predict latency (BBC demo champion)")
    articles = load_bbc()
    print("fitting the demo champion once for all backends …", flush=True)
    fit_s, (blob, texts, train_size, _model) = timed(lambda: _fit(articles))
    print(f"fit + skops dumps: {fit_s:.1f} s, artifact {len(blob) / 1e6:.1f} MB", flush=True)
    results = {}
    for backend in args.db:
        with bench_app(backend, redis=True) as app:
            print(f"\n## {backend}: {args.calls} requests …", flush=True)
            results[backend] = bench_backend(app, blob, texts, train_size, args.calls)
            load()
    for backend, r in results.items():
        base = median(r["raw"])
        rows = []
        if r["http"]:
            rows.append(["POST /predict (HTTP, test client)", r["http"]])
        rows.append(["serving.predict (direct)", r["serving"]])
        rows.append(["raw predict_proba, same model (baseline)", r["raw"]])
        print(f"\n## {backend}: per request ({args.calls} requests, {len(texts)} distinct texts)\n")
        print(
            table(
                ["what", "median", "p95", "median vs raw"],
                [[name, ms(median(s)), ms(p95(s)), ratio(median(s), base)] for name, s in rows],
            )
        )
        if r["http"] is None:
            print("\n(no POST /api/v1/projects/<slug>/predict route yet: HTTP not measured)")
        print(
            f"\nfirst request (loads the champion artifact): {r['cold']:.2f} s; "
            f"{r['logged']:,} predictions and {r['items']:,} items logged; "
            f"last response: label {r['last']['label']}, model_version {r['last']['model_version']}"
        )


if __name__ == "__main__":
    main()
