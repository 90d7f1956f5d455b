from functools import cache

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from labeling.sampling import (
    ALL_STRATEGIES,
    COMMITTEE_METHODS,
    COMMITTEE_STRATEGIES,
    DEFAULT_STRATEGY,
    STRATEGIES,
    batch_scores,
    cold_start_order,
    cold_start_scores,
    committee_scores,
    diverse_batch,
    fit_committee,
    informativeness,
    informativeness_from_proba,
    query,
)
from labeling.training import fit_model, predict_proba_for

POSITIVE_TEXTS = ["good fun", "great film", "lovely story", "fun and great", "good acting"]
NEGATIVE_TEXTS = ["bad film", "awful mess", "boring story", "dull and bad", "poor acting"]


@cache
def iris_model():
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(X, y), X


@cache
def cancer_model():
    X, y = load_breast_cancer(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y), X


MODELS = [iris_model, cancer_model]


def test_strategies():
    assert STRATEGIES == ("margin", "uncertainty", "entropy")
    assert DEFAULT_STRATEGY == "margin"


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_query_picks_highest_informativeness(make, strategy):
    model, X = make()
    scores = informativeness(model, X, strategy)
    picked = query(model, X, n_instances=7, strategy=strategy)
    assert picked.dtype.kind == "i"
    assert len(set(picked.tolist())) == 7
    # Compare scores, not indices, so ties at the cut-off cannot make the test flaky.
    assert np.allclose(scores[picked], np.sort(scores)[::-1][:7])
    assert np.all(np.diff(scores[picked]) <= 0)  # most informative first


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_from_proba_matches_model(make, strategy):
    model, X = make()
    proba = model.predict_proba(X)
    assert np.allclose(
        informativeness_from_proba(proba, strategy), informativeness(model, X, strategy)
    )


def test_default_strategy_is_margin():
    model, X = iris_model()
    assert np.array_equal(informativeness(model, X), informativeness(model, X, "margin"))
    assert np.array_equal(query(model, X, 3), query(model, X, 3, "margin"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_boundary_points_score_higher_than_far_points(strategy):
    X = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X, ["a", "a", "a", "b", "b", "b"])
    near, far = np.array([[0.0], [0.2]]), np.array([[6.0], [-6.0]])
    assert (
        informativeness(model, near, strategy).min() > informativeness(model, far, strategy).max()
    )
    pool = np.vstack([far, near])
    assert sorted(query(model, pool, 2, strategy).tolist()) == [2, 3]


def test_margin_scores_are_negated_margins():
    proba = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1]])
    assert np.allclose(informativeness_from_proba(proba, "margin"), [0.0, -1.0, -0.3])
    assert np.allclose(informativeness_from_proba(proba, "uncertainty"), [0.5, 0.0, 0.4])
    entropy = informativeness_from_proba(proba, "entropy")
    assert entropy[0] == pytest.approx(np.log(2)) and entropy[1] == 0.0


def test_query_on_text_pipeline():
    texts = ["good great fine", "great good", "bad awful poor", "awful bad", "good bad", "meh"]
    model = fit_model("text-logreg", texts[:4], ["pos", "pos", "neg", "neg"])
    picked = query(model, texts, n_instances=2)
    scores = informativeness(model, texts)
    assert np.allclose(scores[picked], np.sort(scores)[::-1][:2])


def test_query_caps_and_empty():
    model, X = iris_model()
    assert sorted(query(model, X[:4], n_instances=10).tolist()) == [0, 1, 2, 3]
    assert query(model, X, n_instances=0).shape == (0,)
    assert query(model, X[:0], n_instances=3).shape == (0,)


def test_unknown_strategy_names_allowed_ones():
    model, X = iris_model()
    for call in (
        lambda: informativeness(model, X, "random"),
        lambda: informativeness_from_proba(model.predict_proba(X), "random"),
        lambda: query(model, X, 1, "random"),
    ):
        with pytest.raises(ValueError, match="margin, uncertainty, entropy"):
            call()


def test_from_proba_rejects_1d():
    with pytest.raises(ValueError):
        informativeness_from_proba(np.array([0.2, 0.8]))


# ---------------------------------------------------------------------------------------------
# Cold start

BLOB_SIZES = [400, 200, 100, 50, 25, 12, 8, 5]


@cache
def blobs():
    X, y = make_blobs(n_samples=BLOB_SIZES, centers=20 * np.eye(8), cluster_std=1.0, random_state=0)
    return X, y


def test_cold_start_covers_every_cluster_where_random_picks_do_not():
    X, y = blobs()
    k = len(BLOB_SIZES)
    picks = cold_start_order(X, k, seed=0)
    assert len(picks) == k and len(set(picks.tolist())) == k
    assert set(y[picks].tolist()) == set(range(k))
    # The largest cluster's representative comes first.
    assert y[picks[0]] == 0
    # A uniform sample of the same size misses the small clusters.
    random_picks = np.random.default_rng(0).choice(len(X), size=k, replace=False)
    assert len(set(y[random_picks].tolist())) < k


def test_every_prefix_of_more_picks_than_clusters_spreads_over_them():
    X, y = blobs()
    picks = cold_start_order(X, 25, seed=0)
    assert len(picks) == 25 and y[picks[0]] == 0
    # The largest blob holds half the rows and many of the 25 clusters, yet the first eight
    # picks reach seven blobs and the first ten all eight (the smallest holds 5 of 800 rows).
    assert len(set(y[picks[:8]].tolist())) >= 7
    assert set(y[picks[:10]].tolist()) == set(range(len(BLOB_SIZES)))


def test_cold_start_picks_the_most_central_row_of_each_cluster():
    X, y = blobs()
    Z = StandardScaler().fit_transform(X)  # the space the cold start clusters tabular rows in
    for i in cold_start_order(X, len(BLOB_SIZES)):
        members = np.flatnonzero(y == y[i])
        centre = Z[members].mean(axis=0)
        assert i == members[np.argmin(np.linalg.norm(Z[members] - centre, axis=1))]


def test_cold_start_is_deterministic_for_a_seed():
    X, _ = blobs()
    assert np.array_equal(cold_start_order(X, 20, seed=3), cold_start_order(X, 20, seed=3))
    assert np.array_equal(cold_start_scores(X, 20, seed=3), cold_start_scores(X, 20, seed=3))


def test_cold_start_scores_serve_the_picks_first_in_order():
    X, _ = blobs()
    picks = cold_start_order(X, 10, seed=1)
    scores = cold_start_scores(X, 10, seed=1)
    assert scores.shape == (len(X),)
    assert np.array_equal(np.argsort(-scores, kind="stable")[:10], picks)
    others = np.delete(scores, picks)
    assert scores[picks].min() > 1.0 >= others.max() and others.min() > 0.0


TOPICS = {
    "sport": "match goal team league coach striker season cup final referee",
    "money": "bank shares market profit investors interest inflation bonds trading",
    "food": "recipe oven garlic butter flour simmer sauce roast onion pepper",
    "space": "rocket orbit planet astronaut telescope launch moon galaxy satellite",
}


def topic_texts():
    rng = np.random.default_rng(0)
    texts, topics = [], []
    for topic, size in zip(TOPICS, [120, 60, 30, 15], strict=True):
        words = TOPICS[topic].split()
        for _ in range(size):
            texts.append(" ".join(rng.choice(words, size=12)))
            topics.append(topic)
    return texts, np.array(topics)


def test_cold_start_on_texts_covers_every_topic():
    texts, topics = topic_texts()
    picks = cold_start_order(texts, 4)
    assert sorted(topics[picks].tolist()) == sorted(TOPICS)
    assert topics[picks[0]] == "sport"
    assert np.array_equal(cold_start_order(texts, 4, kind="text"), picks)


def test_cold_start_edges():
    X, _ = blobs()
    assert cold_start_order(X, 0).shape == (0,)
    assert sorted(cold_start_order(X[:5], 50).tolist()) == [0, 1, 2, 3, 4]
    # Coinciding rows: fewer picks than asked, never a row twice, no warning.
    same = np.ones((30, 3))
    picks = cold_start_order(same, 5)
    assert 1 <= len(picks) <= 5 and len(set(picks.tolist())) == len(picks)
    # Missing values and a column missing everywhere are imputed.
    holes = X[:200].copy()
    holes[::3, 1] = np.nan
    holes[:, 2] = np.nan
    assert len(set(cold_start_order(holes, 6).tolist())) == 6
    # Texts without a single word are all alike: one pick.
    assert cold_start_order(["", " ", "..."], 2).tolist() in ([0], [1], [2])
    with pytest.raises(ValueError, match="kind"):
        cold_start_order(X, 3, kind="image")


# ---------------------------------------------------------------------------------------------
# Batch diversity


def duplicated_pool():
    """A two-class line at x=0; five points on it copied 20 times each, 200 spread points."""
    rng = np.random.default_rng(0)
    labeled = np.array([[-3.0, y] for y in (-8, 0, 8)] + [[3.0, y] for y in (-8, 0, 8)])
    y_labeled = ["a"] * 3 + ["b"] * 3
    hot = np.array([[0.0, y] for y in (-8.0, -4.0, 0.0, 4.0, 8.0)])
    copies = np.repeat(hot, 20, axis=0) + rng.normal(scale=1e-3, size=(100, 2))
    side = rng.choice([-1.0, 1.0], size=200)
    spread = np.column_stack([side * rng.uniform(0.3, 3, 200), rng.uniform(-10, 10, 200)])
    pool = np.vstack([copies, spread])
    group = np.concatenate([np.repeat(np.arange(5), 20), 5 + np.arange(200)])
    return pool, group, labeled, y_labeled


def test_batch_puts_fewer_near_duplicates_first_than_margin():
    pool, group, labeled, y_labeled = duplicated_pool()
    model = fit_model("tabular-logreg", labeled, y_labeled)
    margin_first = np.argsort(-informativeness(model, pool), kind="stable")[:25]
    scores = batch_scores(model, pool, labeled, "margin", batch_size=25, top_k=150)
    batch_first = np.argsort(-scores, kind="stable")[:25]
    distinct_margin = len(set(group[margin_first].tolist()))
    distinct_batch = len(set(group[batch_first].tolist()))
    assert distinct_margin <= 5  # margin's batch is copies of the five boundary points
    assert distinct_batch > 2 * distinct_margin
    # Each boundary point still makes the batch once: diversity did not drop uncertainty.
    assert set(range(5)) <= set(group[batch_first].tolist())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batch_scores_tiers(strategy):
    pool, _, labeled, y_labeled = duplicated_pool()
    model = fit_model("tabular-logreg", labeled, y_labeled)
    scores = batch_scores(model, pool, labeled, strategy, batch_size=10, top_k=60)
    info = informativeness(model, pool, strategy)
    order = np.argsort(-scores, kind="stable")
    batch, candidates, rest = order[:10], order[10:60], order[60:]
    assert np.all((scores[batch] > 4) & (scores[batch] <= 5))
    assert np.allclose(np.sort(scores[batch])[::-1], 4 + (10 - np.arange(10)) / 10)
    assert np.all((scores[candidates] >= 2) & (scores[candidates] <= 3))
    assert np.all((scores[rest] >= 0) & (scores[rest] <= 1))
    # The candidates are the most informative rows; below the batch, informativeness orders.
    assert info[order[:60]].min() >= info[rest].max()
    assert np.all(np.diff(info[candidates]) <= 1e-12)
    assert np.all(np.diff(info[rest]) <= 1e-12)


def test_batch_scores_do_not_depend_on_the_chunk_size():
    pool, _, labeled, y_labeled = duplicated_pool()
    model = fit_model("tabular-logreg", labeled, y_labeled)
    whole = batch_scores(model, pool, labeled, top_k=80)
    assert np.array_equal(batch_scores(model, pool, labeled, top_k=80, chunk=7), whole)


def test_batch_scores_without_labeled_rows_and_small_pools():
    pool, group, labeled, y_labeled = duplicated_pool()
    model = fit_model("tabular-logreg", labeled, y_labeled)
    scores = batch_scores(model, pool, labeled[:0], batch_size=25, top_k=150)
    assert (scores > 4).sum() == 25
    assert len(set(group[scores > 4].tolist())) > 10
    tiny = batch_scores(model, pool[:3], labeled, batch_size=25)
    assert sorted(tiny.tolist(), reverse=True) == pytest.approx([5.0, 4 + 2 / 3, 4 + 1 / 3])
    assert batch_scores(model, pool[:0], labeled).shape == (0,)


def test_batch_scores_on_a_text_pipeline_avoid_copies():
    texts = ["good great fine", "great good", "bad awful poor", "awful bad", "fine poor"] * 2
    model = fit_model("text-logreg", texts[:4], ["pos", "pos", "neg", "neg"])
    pool = ["good bad"] * 10 + ["great awful"] * 10 + ["fine poor", "good poor", "meh", "ok"]
    scores = batch_scores(model, pool, texts[:4], batch_size=4, top_k=24)
    first = [pool[i] for i in np.argsort(-scores, kind="stable")[:4]]
    assert len(set(first)) == 4
    margin = [pool[i] for i in query(model, pool, 4)]
    assert len(set(margin)) < 4


def test_diverse_batch_ranks_given_candidates_as_batch_scores_does():
    pool, group, labeled, y_labeled = duplicated_pool()
    model = fit_model("tabular-logreg", labeled, y_labeled)
    info = informativeness(model, pool, "margin")
    top = np.argsort(-info, kind="stable")[:150]
    picked = top[diverse_batch(model, pool[top], info[top], labeled, batch_size=25)]
    scores = batch_scores(model, pool, labeled, "margin", batch_size=25, top_k=150)
    assert np.array_equal(picked, np.argsort(-scores, kind="stable")[:25])
    # Scores on another scale (a committee's disagreement, say) rank the same once scaled.
    again = top[diverse_batch(model, pool[top], 3 * info[top] + 7, labeled, batch_size=25)]
    assert np.array_equal(again, picked)
    assert len(set(group[picked].tolist())) > 10


def test_diverse_batch_edges():
    pool, _, labeled, y_labeled = duplicated_pool()
    model = fit_model("tabular-logreg", labeled, y_labeled)
    info = informativeness(model, pool[:4])
    assert sorted(diverse_batch(model, pool[:4], info, labeled, batch_size=10).tolist()) == [
        0,
        1,
        2,
        3,
    ]
    assert diverse_batch(model, pool[:4], info, labeled, batch_size=0).shape == (0,)
    assert diverse_batch(model, pool[:0], info[:0], labeled).shape == (0,)
    assert (
        len(diverse_batch(model, pool[:30], informativeness(model, pool[:30]), labeled[:0], 5)) == 5
    )
    with pytest.raises(ValueError, match="4 candidates but 3 scores"):
        diverse_batch(model, pool[:4], info[:3], labeled)


# ---------------------------------------------------------------------------------------------
# Query by committee


def threshold_members():
    """Three 1-D classifiers whose boundaries sit at -1, 0 and +1."""
    X = np.linspace(-6, 6, 121)[:, None]
    return [LogisticRegression(C=100.0).fit(X, np.where(X[:, 0] < t, "a", "b")) for t in (-1, 0, 1)]


@pytest.mark.parametrize("method", ["vote_entropy", "kl_max_disagreement"])
def test_committee_scores_are_highest_where_members_disagree(method):
    members = threshold_members()
    agree = np.array([[-5.0], [-4.0], [4.0], [5.0]])
    split = np.array([[-0.5], [0.5]])
    scores_agree = committee_scores(members, agree, ["a", "b"], method)
    scores_split = committee_scores(members, split, ["a", "b"], method)
    assert scores_split.min() > 10 * max(scores_agree.max(), 1e-6)
    if method == "vote_entropy":
        assert np.allclose(scores_agree, 0.0)
        # Two votes against one: the entropy of (2/3, 1/3).
        assert np.allclose(scores_split, -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)))


def test_committee_strategy_names_and_errors():
    assert COMMITTEE_STRATEGIES == ("qbc_vote_entropy", "qbc_kl")
    assert ALL_STRATEGIES == STRATEGIES + COMMITTEE_STRATEGIES
    members = threshold_members()
    X = np.linspace(-3, 3, 13)[:, None]
    for strategy, method in COMMITTEE_METHODS.items():
        assert np.array_equal(
            committee_scores(members, X, ["a", "b"], strategy),
            committee_scores(members, X, ["a", "b"], method),
        )
    with pytest.raises(ValueError, match="vote_entropy or kl_max_disagreement"):
        committee_scores(members, X, ["a", "b"], "consensus")
    with pytest.raises(ValueError, match="committee_scores"):
        informativeness(members[0], X, "qbc_kl")
    assert committee_scores(members, X[:0], ["a", "b"]).shape == (0,)


def test_committee_scores_align_members_by_label():
    X = np.linspace(-6, 6, 61)[:, None]
    ab = LogisticRegression().fit(X, np.where(X[:, 0] < 0, "a", "b"))
    bc = LogisticRegression().fit(X, np.where(X[:, 0] < 2, "b", "c"))
    for method in ("vote_entropy", "kl_max_disagreement"):
        forward = committee_scores([ab, bc], X, ["a", "b", "c"], method)
        backward = committee_scores([ab, bc], X, ["c", "b", "a"], method)
        assert np.allclose(forward, backward)
        # At x=-5 one member says a, the other b: they disagree; at x=1 both say b.
        assert forward[X[:, 0].tolist().index(-5.0)] > forward[X[:, 0].tolist().index(1.0)]


def test_fit_committee_members_see_every_label_and_differ():
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    labels[0] = "rare"  # a label with one row still reaches every member
    members = fit_committee("tabular-logreg", X, labels, n_members=4, seed=0)
    assert len(members) == 4
    for member in members:
        assert set(member.classes_) == {"rare", "setosa", "versicolor", "virginica"}
        assert member.named_steps["clf"].C == 1.0  # tabular-logreg's fixed C, for every member
    probas = [m.predict_proba(X) for m in members]
    assert not np.allclose(probas[0], probas[1])  # different resamples


def test_fit_committee_is_deterministic_for_a_seed():
    X, y = load_iris(return_X_y=True)
    a = fit_committee("tabular-logreg", X, y.astype(str), n_members=3, seed=7)
    b = fit_committee("tabular-logreg", X, y.astype(str), n_members=3, seed=7)
    c = fit_committee("tabular-logreg", X, y.astype(str), n_members=3, seed=8)
    for m, n in zip(a, b, strict=True):
        assert np.array_equal(m.predict_proba(X), n.predict_proba(X))
    assert not np.allclose(a[0].predict_proba(X), c[0].predict_proba(X))


def test_fit_committee_on_texts_shares_one_chosen_c():
    texts = ["good great fine", "great good fun", "lovely good", "bad awful poor"]
    texts += ["awful bad dull", "poor dull bad"]
    texts = texts * 2
    labels = ["pos"] * 3 + ["neg"] * 3
    labels = labels * 2
    members = fit_committee("text-logreg", texts, labels, n_members=3, seed=0)
    chosen = {m.chosen_params_["C"] for m in members}
    assert len(chosen) == 1
    assert all(m.chosen_params_["selected_by"] == "given" for m in members)
    scores = committee_scores(members, ["good fun", "good bad", "awful"], ["pos", "neg"])
    assert scores.shape == (3,)
    given = fit_committee("text-logreg", texts, labels, n_members=2, params={"C": 3.0})
    assert {m.named_steps["clf"].C for m in given} == {3.0}


def test_fit_committee_members_can_be_capped_in_rows():
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    labels[0] = "rare"
    members = fit_committee("tabular-logreg", X, labels, n_members=3, seed=0, max_rows=30)
    for member in members:
        assert set(member.classes_) == {"rare", "setosa", "versicolor", "virginica"}
        assert member.named_steps["scale"].n_samples_seen_ <= 31  # 10 a label, and one "rare"
    whole = fit_committee("tabular-logreg", X, labels, n_members=3, seed=0)
    bigger = fit_committee("tabular-logreg", X, labels, n_members=3, seed=0, max_rows=1000)
    for a, b in zip(whole, bigger, strict=True):
        assert np.array_equal(a.predict_proba(X), b.predict_proba(X))


def test_fit_committee_refuses_one_label():
    with pytest.raises(ValueError, match="two labels"):
        fit_committee("tabular-logreg", np.zeros((4, 2)), ["a"] * 4)


def test_committee_scores_on_texts_match_each_members_own_probabilities():
    texts = POSITIVE_TEXTS + NEGATIVE_TEXTS
    labels = ["pos"] * len(POSITIVE_TEXTS) + ["neg"] * len(NEGATIVE_TEXTS)
    members = fit_committee("text-logreg", texts, labels, n_members=4, seed=1)
    new = ["good but dull", "great fun", "awful", "fine film, poor story", ""]
    order = ["neg", "pos"]
    p = np.stack([predict_proba_for(m, new, order) for m in members], axis=1)
    consensus = p.mean(axis=1, keepdims=True)
    kl = (p * np.log(p / consensus)).sum(axis=2).max(axis=1)
    assert np.allclose(committee_scores(members, new, order, "kl_max_disagreement"), kl)
    votes = p.argmax(axis=2)
    share = votes.mean(axis=1)  # share voting "pos"
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nan_to_num(share * np.log(share) + (1 - share) * np.log(1 - share))
    assert np.allclose(committee_scores(members, new, order, "vote_entropy"), entropy)
