"""A small run of bench.label_efficiency: the product loop is driven for exactly its budget."""

from __future__ import annotations

import pytest

from bench import label_efficiency


def test_small_run_asks_for_exactly_the_budget_and_prints_every_row(capsys, monkeypatch, tmp_path):
    # bench_app points CORRIGO_INSTANCE at its own temporary folder; give it back afterwards.
    monkeypatch.setenv("CORRIGO_INSTANCE", str(tmp_path))
    argv = ["--sets", "digits", "--seeds", "1", "--budget", "60", "--jobs", "1"]
    argv += ["--strategies", "default,qbc_kl+diversity", "--settings", "audit_share_early=0.2"]
    runs = label_efficiency.main(argv)
    out = capsys.readouterr().out

    rows = ["product default", "product default learner", "product qbc_kl+diversity"]
    rows += ["product qbc_kl+diversity learner", "random", "modAL margin"]
    for row in rows:
        assert f"| {row} " in out, out
    assert "labels to 99%, product default / random " in out
    assert "labels to 99%, product default learner / random " in out
    assert "/ modAL margin " in out
    assert "product qbc_kl+diversity loop, per seed:" in out

    by_method = {r.method: r for r in runs}
    assert set(by_method) == {r.strip("| ") for r in rows[:4]} | {"random", "margin"}
    for config in ("default", "qbc_kl+diversity"):
        product, learner = by_method[f"product {config}"], by_method[f"product {config} learner"]
        # The queue served 60 items and the database holds 60 of the oracle's annotations.
        assert product.labels_asked == learner.labels_asked == 60
        assert product.extra["annotations"] == 60
        assert sum(product.extra["reasons"].values()) == 60
        # Before the first model, the cold start served its picks.
        assert product.extra["reasons"]["cold-start"] >= 10
        assert product.extra["audits"] == product.extra["reasons"].get("audit", 0)
        # Retrains at 10 labels (first_retrain_at), then 35 and 60 (every 25) ran, whatever
        # the gate said; the learner is measured after each, the champion when it changes.
        assert len(product.extra["retrain_seconds"]) == 3
        assert [n for n, _ in learner.steps] == [10, 35, 60]
        assert len(product.steps) <= 3
    with pytest.raises(SystemExit):
        label_efficiency.main(argv[:8] + ["--strategies", "margin+diversity+diversity"])
    with pytest.raises(SystemExit):
        label_efficiency.main(argv[:8] + ["--settings", "audit_share=2"])
    assert "audit_share" in capsys.readouterr().err
    for method in ("random", "margin"):
        run = by_method[method]
        assert run.labels_asked == 60
        # Both baselines learn something from 60 labels of 10 digits.
        assert run.curve()[60] > run.floor + 0.3


def test_cached_hashes_score_and_query_as_the_whole_pipeline_does():
    # The bench hashes BBC's texts once and runs only a model's fitted steps on them: accuracy
    # and margin queries must be those of the whole pipeline on the raw texts.
    import numpy as np

    from labeling import sampling
    from labeling.training import fit_model, predict_proba_for

    split = label_efficiency.make_split(label_efficiency.load_set("bbc"), seed=0)
    assert split.H_test is not None
    rows = np.arange(60)
    texts = [split.X_pool[i] for i in rows]
    model = fit_model(split.ds.template, texts, list(split.y_pool[rows]))

    proba = predict_proba_for(model, split.X_test, split.ds.labels)
    predicted = np.array(split.ds.labels, dtype=object)[proba.argmax(axis=1)]
    whole = float(np.mean(predicted == split.y_test))
    assert split.accuracy(model) == whole
    assert 0.3 < whole < 1.0

    rest = np.arange(60, 400)
    raw = rest[sampling.query(model, [split.X_pool[i] for i in rest], 10, "margin")]
    assert split.query(model, rest, 10, "margin").tolist() == raw.tolist()
