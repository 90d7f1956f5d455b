"""How often the promotion gate promotes a candidate that is truly worse, equal or better.

Synthetic champion/candidate pairs are judged by the real `labeling.evaluation.decide` on the
same held-out items, in both modes (superiority, non-inferiority with margin 0.01, alpha 0.05,
every other setting at its default).

The two models' errors are correlated as real retrains' are: each held-out item has a shared
difficulty z ~ N(0, 1) and a model with intercept `a` is right on it with probability
`sigmoid(a + s * z)`, independently given z; when wrong, both models pick the item's own
confusable label 70% of the time. `s` is set so the two models' error indicators correlate
with phi = 0.6 (`--phi`). Retrains of Corrigo's own templates on bundled data, the candidate
trained on a superset of the champion's labels, measure phi 0.53-0.84 (the `anchor` lines
below print two of them); the lower end of that range is the harder case for the gate (more
discordant items, noisier gains), so the figures here are not flattered by the choice.

True quality is set in the gated metric itself: the champion is right 85% of the time, and
the candidate's accuracy is solved so that its population metric (macro-F1 by default; class
shares 65/35 for two classes, 30/25/20/15/10 for five) is exactly 5 or 2 points below,
equal to, or 2 or 5 points above the champion's.

    .venv/bin/python -m bench.gate_simulation [--trials 1000] [--metric macro_f1] [--phi 0.6]
        [--sizes 100,200,500] [--reuse]

`--reuse` measures instead what deciding again on the items a champion won on does: see
`reuse_rates`.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from bench.common import header, table
from labeling.evaluation import GateConfig, decide

CHAMPION_ACCURACY = 0.85
DELTAS = (-0.05, -0.02, 0.0, 0.02, 0.05)
CLASS_SHARES = {2: (0.65, 0.35), 5: (0.30, 0.25, 0.20, 0.15, 0.10)}
CONFUSABLE = 0.7
MODES = ("superiority", "non_inferiority")

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()  # expectation over z ~ N(0, 1)


def _mean_accuracy(a: float, s: float) -> float:
    return float(_WEIGHTS @ expit(a + s * _NODES))


def intercept(accuracy: float, s: float) -> float:
    """The intercept `a` at which E[sigmoid(a + s z)] is `accuracy`."""
    return brentq(lambda a: _mean_accuracy(a, s) - accuracy, -200, 200)


def error_phi(accuracy: float, s: float) -> float:
    """Correlation of two equal models' error indicators under difficulty spread `s`."""
    p = expit(intercept(accuracy, s) + s * _NODES)
    both = float(_WEIGHTS @ (p * p))
    return (both - accuracy**2) / (accuracy * (1 - accuracy))


def spread_for_phi(phi: float, accuracy: float = CHAMPION_ACCURACY) -> float:
    """The difficulty spread `s` giving equal models error correlation `phi`."""
    return brentq(lambda s: error_phi(accuracy, s) - phi, 1e-3, 20)


def population_metric(metric: str, accuracy: float, shares: tuple[float, ...]) -> float:
    """The metric of a model right with probability `accuracy` on every item, over the population.

    Errors spread evenly over the other classes, so every class's recall is `accuracy`.
    """
    pi = np.asarray(shares)
    k = len(pi)
    if metric in ("accuracy", "balanced_accuracy"):
        return accuracy
    predicted = pi * accuracy + (pi.sum() - pi) * (1 - accuracy) / (k - 1)
    return float(np.mean(2 * pi * accuracy / (pi + predicted)))


def candidate_accuracy(metric: str, delta: float, shares: tuple[float, ...]) -> float:
    """The accuracy whose population metric is the champion's plus `delta`."""
    target = population_metric(metric, CHAMPION_ACCURACY, shares) + delta
    return brentq(lambda acc: population_metric(metric, acc, shares) - target, 0.3, 0.999)


def simulate_pair(
    rng: np.random.Generator,
    n: int,
    shares: tuple[float, ...],
    a_champ: float,
    a_cand: float,
    s: float,
) -> tuple[list[str], list[str], list[str]]:
    """One held-out set of `n` items and both models' predictions on it."""
    y, (champ, cand) = simulate_models(rng, n, shares, (a_champ, a_cand), s)
    return y, champ, cand


def simulate_models(
    rng: np.random.Generator,
    n: int,
    shares: tuple[float, ...],
    intercepts: tuple[float, ...],
    s: float,
) -> tuple[list[str], list[list[str]]]:
    """One held-out set of `n` items and the predictions of models with these intercepts."""
    k = len(shares)
    labels = np.asarray([f"c{i}" for i in range(k)])
    y = rng.choice(k, size=n, p=shares)
    z = rng.standard_normal(n)
    confusable = (y + rng.integers(1, k, size=n)) % k  # a shared wrong label per item

    def predict(a: float) -> np.ndarray:
        right = rng.random(n) < expit(a + s * z)
        other = (y + rng.integers(1, k, size=n)) % k
        wrong = np.where(rng.random(n) < CONFUSABLE, confusable, other)
        return np.where(right, y, wrong)

    return list(labels[y]), [list(labels[predict(a)]) for a in intercepts]


def promotion_rates(
    n_classes: int,
    n_heldout: int,
    delta: float,
    trials: int,
    seed: int = 0,
    metric: str = "macro_f1",
    phi: float = 0.6,
    modes: tuple[str, ...] = MODES,
) -> dict[str, float]:
    """Share of `trials` synthetic pairs that `decide` promotes, per mode.

    Args:
        n_classes: 2 or 5.
        n_heldout: Held-out items per pair.
        delta: The candidate's true gain in `metric` (e.g. -0.02 is two points worse).
        trials: Pairs to simulate; each is judged in every mode.
        seed: Seed of the whole cell.
        metric: The gated metric (the truth is set in it too).
        phi: Error correlation of the two models.
        modes: Gate modes to judge each pair in.

    Returns:
        ``{mode: promotion rate}``.
    """
    shares = CLASS_SHARES[n_classes]
    s = spread_for_phi(phi)
    a_champ = intercept(CHAMPION_ACCURACY, s)
    a_cand = intercept(candidate_accuracy(metric, delta, shares), s)
    configs = {mode: GateConfig(metric=metric, mode=mode) for mode in modes}
    labels = [f"c{i}" for i in range(n_classes)]
    rng = np.random.default_rng(seed)
    promoted = dict.fromkeys(modes, 0)
    for trial in range(trials):
        y, champ, cand = simulate_pair(rng, n_heldout, shares, a_champ, a_cand, s)
        for mode, config in configs.items():
            decision = decide(y, cand, champ, y, labels, config, seed=trial)
            promoted[mode] += decision.promote
    return {mode: promoted[mode] / trials for mode in modes}


def _score(metric: str, y: list[str], p: list[str], labels: list[str]) -> float:
    """The gated metric of predictions `p` on `y` (the point estimate the gate compares)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    if metric == "accuracy":
        return float(np.mean(np.asarray(y) == np.asarray(p)))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y, p))
    return float(f1_score(y, p, labels=labels, average="macro", zero_division=0))


def reuse_rates(
    n_classes: int,
    n_old: int,
    n_fresh: int,
    gain: float,
    trials: int,
    seed: int = 0,
    metric: str = "macro_f1",
    phi: float = 0.6,
    mode: str = "superiority",
) -> dict[str, float]:
    """What reusing the held-out items a champion won on does to the next decision.

    Per trial: the old champion C0 (85% accurate) and a candidate C1 truly 2 points better are
    judged on a held-out set S of `n_old` items; only the trials in which the gate promoted C1
    count (it won on S, so its score on S is inflated: the winner's curse). Then C2, truly
    `gain` better than C1, is judged against C1 on S again (`reused`), on `n_fresh` items
    labeled since C1's promotion only (`fresh`, what Corrigo does once there are
    `min_heldout` of them), and on both (`all`).

    Returns:
        ``{"won": share of trials C1 was promoted, "inflation": C1's mean score on S minus its
        true score, "reused"/"fresh"/"all": C2's promotion rate}``.
    """
    shares = CLASS_SHARES[n_classes]
    s = spread_for_phi(phi)
    true_1 = population_metric(metric, CHAMPION_ACCURACY, shares) + 0.02
    a0 = intercept(CHAMPION_ACCURACY, s)
    a1 = intercept(candidate_accuracy(metric, 0.02, shares), s)
    a2 = intercept(candidate_accuracy(metric, 0.02 + gain, shares), s)
    config = GateConfig(metric=metric, mode=mode)
    labels = [f"c{i}" for i in range(n_classes)]
    rng = np.random.default_rng(seed)
    won, inflation = 0, 0.0
    promoted = {"reused": 0, "fresh": 0, "all": 0}
    for trial in range(trials):
        y, (p0, p1, p2) = simulate_models(rng, n_old, shares, (a0, a1, a2), s)
        if not decide(y, p1, p0, y, labels, config, seed=trial).promote:
            continue
        won += 1
        inflation += _score(metric, y, p1, labels) - true_1
        y_new, (q1, q2) = simulate_models(rng, n_fresh, shares, (a1, a2), s)
        sets = {
            "reused": (y, p2, p1),
            "fresh": (y_new, q2, q1),
            "all": (y + y_new, p2 + q2, p1 + q1),
        }
        for name, (t, cand, champ) in sets.items():
            promoted[name] += decide(t, cand, champ, t, labels, config, seed=trial).promote
    out = {"won": won / trials, "inflation": inflation / won if won else float("nan")}
    out |= {name: count / won if won else float("nan") for name, count in promoted.items()}
    return out


def anchor() -> list[str]:
    """Error correlation of real retrains: logistic regression on bundled data, the candidate
    trained on 1.5 times the champion's labels (a superset), on the rest as held-out set."""
    from sklearn.datasets import load_breast_cancer, load_digits

    from labeling import training

    lines = []
    for name, data, n_champ in (
        ("digits", load_digits(), 200),
        ("cancer", load_breast_cancer(), 60),
    ):
        X, y = data.data, np.asarray([str(v) for v in data.target])
        phis, gaps = [], []
        for rep in range(5):
            perm = np.random.default_rng(rep).permutation(len(y))
            held, pool = perm[: len(y) // 3], perm[len(y) // 3 :]
            n_cand = int(1.5 * n_champ)
            champ = training.fit_model("tabular-logreg", X[pool[:n_champ]], y[pool[:n_champ]])
            cand = training.fit_model("tabular-logreg", X[pool[:n_cand]], y[pool[:n_cand]])
            e_champ = champ.predict(X[held]) != y[held]
            e_cand = cand.predict(X[held]) != y[held]
            phis.append(np.corrcoef(e_champ, e_cand)[0, 1])
            gaps.append(np.mean(e_champ != e_cand))
        lines.append(
            f"# anchor {name}: {n_champ} -> {int(1.5 * n_champ)} labels, error phi "
            f"{np.mean(phis):.2f}, items only one model gets right {np.mean(gaps):.3f}"
        )
    return lines


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="pairs per cell (1000)")
    parser.add_argument("--metric", default="macro_f1", help="gated metric (macro_f1)")
    parser.add_argument("--phi", type=float, default=0.6, help="error correlation (0.6)")
    parser.add_argument("--sizes", default="100,200,500", help="held-out sizes (100,200,500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-anchor", action="store_true", help="skip the real-model lines")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="instead: the next decision on the items the champion won on, fresh ones, or both",
    )
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    if args.reuse:
        main_reuse(args, sizes)
        return

    header("gate simulation: promotion rate of truly worse / equal / better candidates")
    s = spread_for_phi(args.phi)
    print(
        f"# {args.trials} pairs per cell, metric {args.metric}, champion accuracy "
        f"{CHAMPION_ACCURACY}, error phi {args.phi} (difficulty spread s = {s:.2f}), "
        "alpha 0.05, margin 0.01"
    )
    if not args.no_anchor:
        for line in anchor():
            print(line)
    headers = ["mode", "classes", "n", *[f"{100 * d:+.0f} pt" for d in DELTAS]]
    rows = []
    started = time.perf_counter()
    results: dict[tuple, dict[str, float]] = {}
    for k in CLASS_SHARES:
        for n in sizes:
            for i, delta in enumerate(DELTAS):
                seed = args.seed * 1_000_003 + k * 10_007 + n * 101 + i
                results[(k, n, delta)] = promotion_rates(
                    k, n, delta, args.trials, seed, args.metric, args.phi
                )
            print(f"# done: {k} classes, n = {n}", file=sys.stderr, flush=True)
    for mode in MODES:
        for k in CLASS_SHARES:
            for n in sizes:
                rows.append([mode, k, n, *[_pct(results[(k, n, d)][mode]) for d in DELTAS]])
    print(table(headers, rows))
    print(f"# {time.perf_counter() - started:.0f} s")
    for mode in MODES if 500 in sizes else ():
        worst = max(results[(k, 500, -0.02)][mode] for k in CLASS_SHARES)
        power = min(results[(k, 500, 0.05)][mode] for k in CLASS_SHARES)
        equal = max(results[(k, 500, 0.0)][mode] for k in CLASS_SHARES)
        print(
            f"# n = 500, {mode}: -2 pt promoted at most {_pct(worst)} (need ≤ 5%), "
            f"equal at most {_pct(equal)}, +5 pt at least {_pct(power)}"
        )


def main_reuse(args: argparse.Namespace, sizes: list[int]) -> None:
    """Print `reuse_rates` for each size of the set the champion won on (fresh sets as large)."""
    header("gate simulation: deciding again on the held-out items the champion won on")
    print(
        f"# {args.trials} trials per cell, metric {args.metric}, error phi {args.phi}; C1 (2 pt "
        "better than C0) counted only when the gate promoted it on S; C2 is judged against C1 on "
        "S again (reused), on as many fresh items (fresh), or on both (all)"
    )
    headers = ["mode", "classes", "|S|", "C2 gain", "C1 won", "C1 inflation on S"]
    headers += ["promoted: reused", "fresh", "all"]
    rows = []
    started = time.perf_counter()
    for mode in MODES:
        for k in CLASS_SHARES:
            for n in sizes:
                for gain in (0.0, 0.02, 0.05):
                    seed = args.seed * 1_000_003 + k * 10_007 + n * 101 + int(gain * 100)
                    r = reuse_rates(k, n, n, gain, args.trials, seed, args.metric, args.phi, mode)
                    rows.append(
                        [
                            mode,
                            k,
                            n,
                            f"{100 * gain:+.0f} pt",
                            _pct(r["won"]),
                            f"{100 * r['inflation']:+.1f} pt",
                            _pct(r["reused"]),
                            _pct(r["fresh"]),
                            _pct(r["all"]),
                        ]
                    )
            print(f"# done: {mode}", file=sys.stderr, flush=True)
    print(table(headers, rows))
    print(f"# {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
