"""A/B decisions under continuous monitoring: error rates and sample sizes of `decide`.

Synthetic experiments on accuracy: each unit brings `per_unit` labeled predictions (1 by
default), right with probability 0.80 under the champion and 0.80 + effect under the
challenger, and lands in the challenger arm with probability `share` (0.5), as hashing with
`labeling.experiments.assign` does. The experiment is looked at after every `--peek` units up
to the design's size, `plan(0.80, 0.03)` (80% power for +3 points), and at every look the
product's own rule runs on running unit-level sums: `ratio_from_sums`, then
`sequential_interval` / `verdict_codes` (what `compare` computes) and `decision_rules` (what
`decide` applies: sample ratio test at every look, 100 units per arm before promoting or
stopping for futility, mde 0.03, maximum duration = the design's size at one unit a second). A
run stops at its first action other than `continue`.

For comparison, the same looks are judged by the fixed-horizon z test (`fixed_interval`): once
at the design's size (valid) and at every look (the "peeking" everyone is tempted into).

    .venv/bin/python -m bench.ab_simulation [--runs 1000] [--peek 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from bench.common import header, table
from labeling.experiments import (
    METRICS,
    RULE_ACTIONS,
    RULE_NAMES,
    SRM_ALPHA,
    best_plausible_gain,
    decision_rules,
    fixed_horizon_units,
    fixed_interval,
    plan,
    power,
    ratio_from_sums,
    sequential_interval,
    sequential_rho,
    srm_chi2,
    verdict_codes,
)

BASELINE = 0.80
MDE = 0.03
ALPHA = 0.05
MIN_UNITS = 100


def simulate(
    runs: int,
    *,
    baseline: float = BASELINE,
    effect: float = 0.0,
    units: int,
    peek: int = 100,
    share: float = 0.5,
    per_unit: int = 1,
    alpha: float = ALPHA,
    mde: float = MDE,
    min_units: int = MIN_UNITS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """`runs` experiments on accuracy, looked at every `peek` units up to `units`.

    Args:
        runs: Experiments to simulate.
        baseline: The champion's true accuracy.
        effect: The challenger's true accuracy minus the champion's.
        units: Total units at the last look (the design's size); also the maximum duration,
            at one unit a second.
        peek: Units between looks.
        share: The challenger's share of units.
        per_unit: Independent labeled predictions per unit.
        alpha, mde, min_units: The decision rule's settings.
        seed: Seed of the whole simulation.

    Returns:
        Per run: ``rule`` (index into ``RULE_NAMES`` of the rule that stopped it, "continue"
        if none did by the last look), ``stop_units``, ``seq_either`` (the confidence sequence
        excluded 0 at some look before the stop), ``cs_either`` (it did at some look with
        ``min_units`` per arm, had the run never stopped), ``srm_held`` (a look was held by
        the sample ratio test), ``naive_better`` / ``naive_either`` (the fixed-horizon interval
        excluded 0 upwards / either way at some look with ``min_units`` per arm),
        ``final_better`` / ``final_either`` (the same at the last look only), ``looks``.
    """
    higher = METRICS["accuracy"][0]
    rho = sequential_rho(alpha)
    rng = np.random.default_rng(seed)
    probs = np.array([baseline, baseline + effect])
    sums = np.zeros((6, runs, 2))  # units, x, y, x^2, y^2, xy per arm (champion, challenger)
    stop = len(RULE_NAMES) - 1
    out = {
        "rule": np.full(runs, stop),
        "stop_units": np.full(runs, units),
        "seq_either": np.zeros(runs, dtype=bool),
        "cs_either": np.zeros(runs, dtype=bool),
        "srm_held": np.zeros(runs, dtype=bool),
        "naive_better": np.zeros(runs, dtype=bool),
        "naive_either": np.zeros(runs, dtype=bool),
    }
    active = np.ones(runs, dtype=bool)
    looks = [*range(peek, units, peek), units]
    previous = 0
    for look in looks:
        block = look - previous
        previous = look
        arm = (rng.random((runs, block)) < share).astype(int)
        x = rng.binomial(per_unit, probs[arm]).astype(float)
        y = float(per_unit)
        for k in (0, 1):
            mask = arm == k
            xs = np.where(mask, x, 0.0)
            count = mask.sum(axis=1)
            sums[:, :, k] += [
                count,
                xs.sum(axis=1),
                y * count,
                (xs * xs).sum(axis=1),
                y * y * count,
                y * xs.sum(axis=1),
            ]
        value, variance = ratio_from_sums(*sums)
        diff = value[:, 1] - value[:, 0]
        var = variance.sum(axis=1)
        n = sums[0].sum(axis=1)
        arm_min = sums[0].min(axis=1)
        lo, hi, _ = sequential_interval(diff, var, n, alpha, rho)
        verdict = verdict_codes(lo, hi, higher)
        _, srm_p = srm_chi2(sums[0], (1 - share, share))
        rule = decision_rules(
            verdict,
            best_plausible_gain(lo, hi, higher),
            False,  # no guardrails in this simulation
            srm_p < SRM_ALPHA,
            arm_min,
            min_units,
            mde,
            look,
            units,
        )
        out["seq_either"] |= active & (verdict != 0)
        out["cs_either"] |= (arm_min >= min_units) & (verdict != 0)
        out["srm_held"] |= active & (rule == RULE_NAMES.index("srm"))
        stopping = active & (np.asarray(RULE_ACTIONS)[rule] != "continue")
        out["rule"][stopping] = rule[stopping]
        out["stop_units"][stopping] = look
        active &= ~stopping

        f_lo, f_hi, _ = fixed_interval(diff, var, alpha)
        naive = np.where(arm_min >= min_units, verdict_codes(f_lo, f_hi, higher), 0)
        out["naive_better"] |= naive == 1
        out["naive_either"] |= naive != 0
    out["final_better"] = naive == 1
    out["final_either"] = naive != 0
    out["looks"] = np.asarray(looks)
    return out


def rule_share(result: dict[str, np.ndarray], name: str) -> float:
    """Share of runs stopped by the rule `name` (see ``RULE_NAMES``)."""
    return float(np.mean(result["rule"] == RULE_NAMES.index(name)))


def _pct(rate: float, runs: int | None = None) -> str:
    text = f"{100 * rate:.1f}%"
    if runs:
        text += f" ± {100 * math.sqrt(max(rate * (1 - rate), 1e-12) / runs):.1f}"
    return text


def _median(values: np.ndarray) -> str:
    return f"{np.median(values):,.0f}" if len(values) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="experiments per scenario (1000)")
    parser.add_argument("--peek", type=int, default=100, help="units between looks (100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    header("A/B decisions under continuous monitoring: labeling.experiments.decide")
    started = time.perf_counter()
    units = plan(BASELINE, MDE, ALPHA)
    stated = power(BASELINE, MDE, ALPHA, 0.5, units)
    print(
        f"# accuracy {BASELINE:.2f}, 1 prediction per unit, 50/50 split, alpha {ALPHA}, "
        f"mde {MDE}, design plan({BASELINE}, {MDE}) = {units:,} units (stated power "
        f"{100 * stated:.1f}%), looks every {args.peek} units, {MIN_UNITS} units per arm "
        f"before promoting, {args.runs} runs per scenario, seed {args.seed}"
    )
    aa = simulate(args.runs, effect=0.0, units=units, peek=args.peek, seed=args.seed)
    ab = simulate(args.runs, effect=MDE, units=units, peek=args.peek, seed=args.seed + 1)
    n_looks = len(aa["looks"])

    print("\n## A/A (no true difference): how often each procedure declares the challenger better")
    promoted = float(np.mean(aa["rule"] == RULE_NAMES.index("promote")))
    rows = [
        [
            "sequential (`decide`), stops at its first decision",
            f"{n_looks}",
            _pct(promoted, args.runs),
            _pct(float(np.mean(aa["cs_either"]))),
        ],
        [
            "fixed-horizon z test, peeked at every look",
            f"{n_looks}",
            _pct(float(np.mean(aa["naive_better"])), args.runs),
            _pct(float(np.mean(aa["naive_either"]))),
        ],
        [
            "fixed-horizon z test, once at the design's size",
            "1",
            _pct(float(np.mean(aa["final_better"])), args.runs),
            _pct(float(np.mean(aa["final_either"]))),
        ],
    ]
    print(
        table(
            ["procedure", "looks", "false promotions", "0 excluded either way, never stopping"],
            rows,
        )
    )

    print("\n## A/A: how `decide` ends the experiments")
    futile = aa["rule"] == RULE_NAMES.index("futility")
    rows = [
        [
            "keep (futility)",
            _pct(float(np.mean(futile))),
            _median(aa["stop_units"][futile]),
        ],
        [
            "keep (maximum duration)",
            _pct(rule_share(aa, "max_duration")),
            f"{units:,}",
        ],
        [
            "promote",
            _pct(promoted),
            _median(aa["stop_units"][aa["rule"] == RULE_NAMES.index("promote")]),
        ],
        ["undecided at the last look (held by SRM)", _pct(rule_share(aa, "continue")), "-"],
    ]
    print(table(["outcome", "share of runs", "median units at the stop"], rows))
    print(
        f"# runs with a look held by the sample ratio test (p < {SRM_ALPHA}, no real "
        f"mismatch): {_pct(float(np.mean(aa['srm_held'])))}"
    )

    print(
        f"\n## A/B: challenger truly +{100 * MDE:.0f} points ({BASELINE:.2f} vs "
        f"{BASELINE + MDE:.2f})"
    )
    won = ab["rule"] == RULE_NAMES.index("promote")
    measured = float(np.mean(won))
    median_units = float(np.median(ab["stop_units"]))
    fixed_80 = fixed_horizon_units(BASELINE, MDE, ALPHA, 0.5, 0.8)
    fixed_same = fixed_horizon_units(BASELINE, MDE, ALPHA, 0.5, min(measured, 0.999))
    rows = [
        [
            f"{100 * stated:.1f}%",
            _pct(measured, args.runs),
            _median(ab["stop_units"][won]),
            f"{median_units:,.0f}",
            f"{fixed_80:,} / {fixed_same:,}",
            f"{median_units / fixed_same:.2f}x",
        ]
    ]
    print(
        table(
            [
                "stated power",
                "measured power",
                "median units at promotion",
                "median units at decision (all runs)",
                "fixed-horizon units for 80% / the measured power",
                "ratio (sequential median / fixed-horizon, same power)",
            ],
            rows,
        )
    )
    print(
        f"# A/B runs kept: futility {_pct(rule_share(ab, 'futility'))}, maximum duration "
        f"{_pct(rule_share(ab, 'max_duration'))}; design size {units:,} = "
        f"{units / fixed_80:.2f}x the fixed-horizon size for 80%"
    )
    print(f"# {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
