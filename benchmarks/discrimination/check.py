"""Does the main experiment tell policies apart? The checks of "A benchmark that discriminates".

    python benchmarks/discrimination/check.py [--results results]

Reads the workflow's `results/summary.csv` and run folders (simulator, seed 0, the embedded
default) and prints, per pipeline, each property with its measured figure and the paper's
(benchmarks/discrimination/paper.csv, docs/facts.md fact 37). Exit status 1 when one fails.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ("video", "audio-qa", "audio-sent", "sum-qa", "nlp")
ADAPTIVE = ("ipa", "fa2-low", "fa2-high", "rim")


def paper() -> dict[tuple[str, str], dict]:
    with open(Path(__file__).with_name("paper.csv"), newline="") as f:
        return {(r["pipeline"], r["policy"]): {"pas": float(r["pas"]), "cores": float(r["cores"])}
                for r in csv.DictReader(f)}


def variant_tuples(run_dir: Path) -> int:
    """Distinct per-stage variant tuples the run served with (replicas and batch not counted)."""
    seen = set()
    with open(run_dir / "timeseries.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["configuration"]:
                seen.add(tuple(s["variant"] for s in json.loads(r["configuration"]).values()))
    return len(seen)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--markdown", action="store_true",
                   help="also print the README's table: this project's figures next to the paper's, bursty")
    args = p.parse_args(argv)
    with open(args.results / "summary.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["backend"] == "sim" and r["seed"] == "0"]
    # the main matrix's full windows, not the short simulated twins of the live runs
    longest = max(int(r["duration_s"]) for r in rows)
    rows = [r for r in rows if int(r["duration_s"]) == longest]
    ref = paper()

    def get(pipeline, policy, workload="bursty", predictor="lstm", weights="default"):
        for r in rows:
            if (r["pipeline"], r["policy"], r["workload"], r["predictor"], r["weights"]) == \
                    (pipeline, policy, workload, predictor, weights):
                return r
        return None

    passed = {}
    print(f"{'pipeline':<11} {'tuples':>6} {'PAS ipa/low':>12} {'gain':>6} {'cores ipa':>9} {'paper':>6} {'ratio':>6} "
          f"{'viol lstm/react':>16} {'pref configs':>12} {'p99 lowest':>11}")
    for name in PIPELINES:
        ipa, low = get(name, "ipa"), get(name, "fa2-low")
        if ipa is None or low is None:
            print(f"{name:<11} (no bursty runs in {args.results / 'summary.csv'})")
            continue
        tuples = variant_tuples(args.results / ipa["run_dir"]) if (args.results / ipa["run_dir"]).exists() \
            else variant_tuples(Path(ipa["run_dir"]))
        gain = float(ipa["pas_mean"]) / float(low["pas_mean"]) - 1
        ratio = float(ipa["cost_cores_mean"]) / ref[(name, "ipa")]["cores"]
        lstm, react = get(name, "ipa", predictor="lstm"), get(name, "ipa", predictor="reactive")
        viol = (int(lstm["violations"]), int(react["violations"])) if lstm and react else None
        prefs = {(round(float(r["pas_mean"]), 4), round(float(r["cost_cores_mean"]), 3))
                 for w in ("accuracy", "balance", "cost") if (r := get(name, "ipa", weights=w)) is not None}
        p99 = {pol: float(r["latency_p99_s"]) for pol in ADAPTIVE if (r := get(name, pol)) and r["latency_p99_s"]}
        lowest = min(p99, key=p99.get) if p99 else "?"
        passed[name] = {"tuples": tuples >= 3, "gain": 0 < gain <= 0.26, "cores": 0.5 <= ratio <= 2.0,
                        "ablation": viol is not None and viol[0] < viol[1], "preference": len(prefs) == 3,
                        "rim_p99": lowest == "rim"}
        print(f"{name:<11} {tuples:>6} {float(ipa['pas_mean']) * 100:>5.1f}/{float(low['pas_mean']) * 100:<5.1f} "
              f"{gain:>+6.1%} {float(ipa['cost_cores_mean']):>9.1f} {ref[(name, 'ipa')]['cores']:>6.1f} {ratio:>6.2f} "
              f"{(f'{viol[0]}/{viol[1]}' if viol else '-'):>16} {len(prefs):>12} {lowest:>11}")
    checks = [
        ("IPA uses >= 3 variant tuples on bursty, every pipeline", all(v["tuples"] for v in passed.values()), 5),
        ("IPA's PAS exceeds FA2-low's by 0-26 %, >= 4 of 5", sum(v["gain"] for v in passed.values()) >= 4, 4),
        ("IPA's mean cores within 2x of the paper's, every pipeline", all(v["cores"] for v in passed.values()), 5),
        ("LSTM fewer violations than reactive, >= 4 of 5", sum(v["ablation"] for v in passed.values()) >= 4, 4),
        ("three distinct preference outcomes, >= 4 of 5", sum(v["preference"] for v in passed.values()) >= 4, 4),
        ("RIM's p99 the lowest of the adaptive policies, >= 3 of 5", sum(v["rim_p99"] for v in passed.values()) >= 3, 3),
    ]
    if args.markdown:
        print("\n| pipeline | policy | PAS x100 (paper) | cores (paper) | late or unanswered % | unanswered % | p99 s |")
        print("|---|---|---|---|---|---|---|")
        for name in PIPELINES:
            for pol in ADAPTIVE:
                r = get(name, pol)
                if r is None:
                    continue
                pp = ref[(name, pol)]
                print(f"| {name} | {pol} | {float(r['pas_mean']) * 100:.1f} ({pp['pas']:.1f}) | "
                      f"{float(r['cost_cores_mean']):.1f} ({pp['cores']:g}) | {float(r['sla_violation_rate']) * 100:.2f} | "
                      f"{float(r['unanswered_rate']) * 100:.2f} | {float(r['latency_p99_s']):.2f} |")
    keys = ("tuples", "gain", "cores", "ablation", "preference", "rim_p99")
    for (text, ok, _), key in zip(checks, keys):
        which = ", ".join(n for n, v in passed.items() if v[key])
        print(f"{'PASS' if ok else 'FAIL'}  {text}  (holds for: {which or 'none'})")
    return 0 if len(passed) == len(PIPELINES) and all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
