"""Drift of 1M rows x 50 numeric features: Corrigo's `labeling.drift` against a plain numpy PSI.

Synthetic reference and current windows of the same size, float32, columns cycling through
five kinds (normal, log-normal, uniform, Poisson counts, 0/1 flags); the current window shifts
five features for real and one negligibly:

    x0 normal, mean +0.5 sd       x1 log-normal, x1.3         x2 uniform, +0.01 sd (negligible)
    x3 Poisson, rate 3 -> 4       x4 flag, share 0.3 -> 0.45  x5 normal, sd x1.5

Both timings run in this process on the same arrays:

- **numpy PSI (baseline)**: per column, the reference's decile edges by `np.quantile`, both
  arrays binned with `np.searchsorted` and `np.bincount`, the PSI formula;
- **Corrigo**: `build_reference` on the reference (done once at promotion) plus `compare` of
  the current window to it (PSI, KS and normed Wasserstein for every feature); `compare` alone
  is the cost of every later window.

If `evidently` is importable, its `DataDriftPreset` runs on the first `--evidently-rows` rows
(it is not a Corrigo dependency: install it in a throwaway environment to measure it).

    .venv/bin/python -m bench.drift [--rows 1000000] [--features 50] [--evidently-rows 100000]
"""

from __future__ import annotations

import argparse
import gc

import numpy as np

from bench.common import header, table, timed
from labeling.drift import build_reference, compare

KINDS = ("normal", "lognormal", "uniform", "poisson", "flag")
SHIFTS = {
    0: "mean +0.5 sd",
    1: "x1.3",
    2: "+0.01 sd (negligible)",
    3: "rate 3 -> 4",
    4: "share 0.3 -> 0.45",
    5: "sd x1.5",
}


def column(rng: np.random.Generator, kind: str, rows: int, shift: int | None) -> np.ndarray:
    """One float32 column of `kind`; `shift` is the feature's index when it is shifted."""
    if kind == "normal":
        x = rng.standard_normal(rows, dtype=np.float32)
        if shift == 0:
            x += np.float32(0.5)
        elif shift == 5:
            x *= np.float32(1.5)
        return x
    if kind == "lognormal":
        x = np.exp(rng.standard_normal(rows, dtype=np.float32))
        return x * np.float32(1.3) if shift == 1 else x
    if kind == "uniform":
        x = rng.random(rows, dtype=np.float32)
        # The uniform's sd is 1 / sqrt(12).
        return x + np.float32(0.01 / np.sqrt(12)) if shift == 2 else x
    if kind == "poisson":
        return rng.poisson(4.0 if shift == 3 else 3.0, rows).astype(np.float32)
    return (rng.random(rows, dtype=np.float32) < (0.45 if shift == 4 else 0.3)).astype(np.float32)


def make_data(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current `(rows, features)` float32 arrays (C order, as a loader gives)."""
    rng = np.random.default_rng(seed)
    ref = np.empty((rows, features), dtype=np.float32)
    cur = np.empty((rows, features), dtype=np.float32)
    for j in range(features):
        kind = KINDS[j % len(KINDS)]
        ref[:, j] = column(rng, kind, rows, None)
        cur[:, j] = column(rng, kind, rows, j if j in SHIFTS else None)
    return ref, cur


def numpy_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> np.ndarray:
    """The baseline: PSI per column on the reference's quantile bins, plain numpy."""
    levels = np.arange(1, bins) / bins
    out = np.empty(ref.shape[1])
    for j in range(ref.shape[1]):
        edges = np.quantile(ref[:, j], levels)
        q = np.bincount(np.searchsorted(edges, ref[:, j], side="right"), minlength=bins)
        p = np.bincount(np.searchsorted(edges, cur[:, j], side="right"), minlength=bins)
        q = np.maximum(q / len(ref), 1e-4)
        p = np.maximum(p / len(cur), 1e-4)
        out[j] = np.sum((p - q) * np.log(p / q))
    return out


def corrigo(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float, dict]:
    """Seconds of build_reference, seconds of compare, and the comparison."""
    build_s, reference = timed(lambda: build_reference(ref))
    compare_s, result = timed(lambda: compare(reference, cur))
    return build_s, compare_s, result


def evidently_seconds(ref: np.ndarray, cur: np.ndarray) -> tuple[float, str] | None:
    """Seconds of Evidently's DataDriftPreset on these arrays, and its version; None without it."""
    try:
        import evidently
        import pandas as pd
    except ImportError:
        return None
    names = [f"x{j}" for j in range(ref.shape[1])]
    ref_df, cur_df = pd.DataFrame(ref, columns=names), pd.DataFrame(cur, columns=names)
    try:  # evidently >= 0.7
        from evidently import Report
        from evidently.presets import DataDriftPreset

        seconds, _ = timed(lambda: Report([DataDriftPreset()]).run(cur_df, ref_df))
    except ImportError:  # the legacy API (<= 0.6)
        from evidently.metric_preset import DataDriftPreset
        from evidently.report import Report

        def run():
            report = Report(metrics=[DataDriftPreset()])
            report.run(reference_data=ref_df, current_data=cur_df)
            return report.as_dict()

        seconds, _ = timed(run)
    return seconds, evidently.__version__


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per window")
    parser.add_argument("--features", type=int, default=50, help="numeric features")
    parser.add_argument(
        "--evidently-rows", type=int, default=100_000, help="rows for Evidently, if importable"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    header("drift: Corrigo's compare against a plain numpy PSI pass")
    print(f"# {args.rows:,} rows x {args.features} float32 features, reference and current")
    ref, cur = make_data(args.rows, args.features, args.seed)
    gc.collect()

    baseline_s, _ = timed(lambda: numpy_psi(ref, cur))
    build_s, compare_s, result = corrigo(ref, cur)
    rows = [
        ["numpy PSI (baseline: quantile edges, bin both, PSI)", f"{baseline_s:.2f}", "1.0x"],
        [
            "Corrigo build_reference + compare (PSI, KS, Wasserstein)",
            f"{build_s + compare_s:.2f}",
            f"{(build_s + compare_s) / baseline_s:.2f}x",
        ],
        ["Corrigo build_reference alone", f"{build_s:.2f}", f"{build_s / baseline_s:.2f}x"],
        [
            "Corrigo compare alone (every window)",
            f"{compare_s:.2f}",
            f"{compare_s / baseline_s:.2f}x",
        ],
    ]

    small = min(args.evidently_rows, args.rows)
    measured = evidently_seconds(ref[:small], cur[:small]) if small > 0 else None
    if small <= 0:
        print("# evidently: not asked for (--evidently-rows 0)")
    elif measured is None:
        print("# evidently is not importable here: not measured")
    else:
        ev_s, version = measured
        base_small, _ = timed(lambda: numpy_psi(ref[:small], cur[:small]))
        b_small, c_small, _ = corrigo(ref[:small], cur[:small])
        rows += [
            [f"at {small:,} rows: numpy PSI", f"{base_small:.2f}", "1.0x"],
            [
                f"at {small:,} rows: Corrigo build_reference + compare",
                f"{b_small + c_small:.2f}",
                f"{(b_small + c_small) / base_small:.2f}x",
            ],
            [
                f"at {small:,} rows: Evidently {version} DataDriftPreset",
                f"{ev_s:.2f}",
                f"{ev_s / base_small:.1f}x",
            ],
        ]
    print(table(["what", "seconds", "vs numpy PSI"], rows))

    print(f"\n# overall severity: {result['severity']}")
    flagged = {f: s for f, s in result["features"].items() if s != "none"}
    print(f"# flagged features ({len(flagged)} of {args.features}):")
    by_key = {(r["feature"], r["method"]): r for r in result["results"]}
    for feature, severity in flagged.items():
        j = int(feature[1:])
        stats = ", ".join(
            f"{m} {by_key[(feature, m)]['statistic']:.3f}" for m in ("psi", "ks", "wasserstein")
        )
        what = f"{KINDS[j % len(KINDS)]}, {SHIFTS.get(j, 'no shift')}"
        print(f"#   {feature} ({what}): {severity}; {stats}")
    if args.features > 2:
        stats = ", ".join(
            f"{m} {by_key[('x2', m)]['statistic']:.4f}" for m in ("psi", "ks", "wasserstein")
        )
        print(f"# x2 (uniform, {SHIFTS[2]}): {result['features']['x2']}; {stats}")
    missed = [f"x{j}" for j in SHIFTS if j != 2 and j < args.features and f"x{j}" not in flagged]
    print(f"# shifted features not flagged: {', '.join(missed) or 'none'}")


if __name__ == "__main__":
    main()
