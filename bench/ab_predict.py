"""What a running experiment's sticky assignment costs `predict`.

Per backend, two projects with the same BBC demo champion (v2) and a candidate v1 (the same
fitted model, stored again as another version): `bbc` runs no experiment, `bbc-ab` runs a 50%
A/B experiment. Interleaved so they share the machine's load, each request posting one
held-out article with a unit of its own through `POST /api/v1/projects/<slug>/predict` (the
Flask test client, a `predict` key):

  * without an experiment (the baseline of the target: at most +1 ms at the median);
  * with the experiment: one more index probe (the running experiment), the salted hash, and
    half the units served by v1 as the challenger (loaded once per process), the exposure recorded
    on the prediction row;
  * raw `predict_proba([text])` on the fitted model, for scale.

    .venv/bin/python -m bench.ab_predict [--db sqlite,postgresql] [--calls 300]
"""

from __future__ import annotations

from sqlalchemy import select

from bench.common import (
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
from bench.predict import _fit
from tests.factories import make_key, make_project
from webapp import abtests
from webapp.demo import BBC_LABELS, load_bbc
from webapp.extensions import db
from webapp.models import ModelVersion, utcnow

URL = "/api/v1/projects/{slug}/predict"


def _project(slug: str, blob: bytes, train_size: int, labels: list[str]):
    """A project with a champion v2 and a candidate v1 (the same fitted model): the champion
    is the newest version, so it is the learner and scores served items inline; a request the
    challenger serves asks for a rescore instead, which the experiment's side pays for."""
    project = make_project(slug=slug, labels=labels, settings={"retrain_every": 0})
    for number, status in ((1, "candidate"), (2, "champion")):
        db.session.add(
            ModelVersion(
                project_id=project.id,
                version=number,
                status=status,
                template=project.template,
                labels=list(labels),
                artifact=blob,
                snapshot_digest="0" * 64,
                train_size=train_size,
                metrics={},
                promoted_at=utcnow() if status == "champion" else None,
            )
        )
    db.session.commit()
    return project


def bench_backend(app, blob, texts, train_size, labels, calls: int) -> dict:
    plain = _project("bbc", blob, train_size, labels)
    tested = _project("bbc-ab", blob, train_size, labels)
    challenger = db.session.scalar(
        select(ModelVersion).where(ModelVersion.project_id == tested.id, ModelVersion.version == 1)
    )
    abtests.start(tested, "bench", challenger=challenger, share=0.5)
    db.session.commit()
    client = app.test_client()
    headers = {
        slug: {"Authorization": f"Bearer {make_key(p, scopes=('predict',))}"}
        for slug, p in (("bbc", plain), ("bbc-ab", tested))
    }

    def post(slug: str, text: str, unit: str) -> dict:
        resp = client.post(
            URL.format(slug=slug),
            json={"data": {"text": text}, "unit": unit},
            headers=headers[slug],
        )
        if resp.status_code != 200:
            raise RuntimeError(f"predict: {resp.status_code} {resp.get_data(as_text=True)}")
        return resp.get_json()

    from webapp import serving

    model = serving.champion_model(plain)[2]
    samples = {"none": [], "ab": [], "raw": []}
    arms = {"champion": 0, "challenger": 0}
    for i in range(20 + calls):
        text, unit = texts[i % len(texts)], f"user-{i}"
        seconds_raw, _ = timed(lambda: model.predict_proba([text]))  # noqa: B023
        seconds_none, _ = timed(lambda: post("bbc", text, unit))  # noqa: B023
        seconds_ab, answer = timed(lambda: post("bbc-ab", text, unit))  # noqa: B023
        if i >= 20:  # the first calls load both artifacts
            samples["raw"].append(seconds_raw)
            samples["none"].append(seconds_none)
            samples["ab"].append(seconds_ab)
            arms[answer["experiment"]["arm"]] += 1
    return {**samples, "arms": arms}


def main() -> None:
    args = parse_args(__doc__, calls=(300, "timed requests per backend and project"))
    header("predict with and without a running experiment (BBC demo champion)")
    articles = load_bbc()
    fit_s, (blob, texts, train_size, _model) = timed(lambda: _fit(articles))
    print(f"fit + skops dumps: {fit_s:.1f} s", flush=True)
    labels = list(BBC_LABELS)
    for backend in args.db:
        with bench_app(backend, redis=True) as app:
            r = bench_backend(app, blob, texts, train_size, labels, args.calls)
            load()
        base = median(r["none"])
        rows = [
            ["POST /predict, no experiment (baseline)", r["none"]],
            ["POST /predict, 50% A/B experiment", r["ab"]],
            ["raw predict_proba, same model", r["raw"]],
        ]
        print(f"\n## {backend}: {args.calls} requests each, interleaved\n")
        print(
            table(
                ["what", "median", "p95", "median vs no experiment"],
                [[name, ms(median(s)), ms(p95(s)), ratio(median(s), base)] for name, s in rows],
            )
        )
        added = (median(r["ab"]) - base) * 1000
        print(
            f"\nsticky assignment adds {added:+.2f} ms to the median (target: at most +1 ms); "
            f"arms served: {r['arms']['champion']} champion, {r['arms']['challenger']} challenger"
        )


if __name__ == "__main__":
    main()
