"""ipa-plus against ipa on the calibrated matrix (simulator, seed 0, LSTM): each part alone, and
both policies against an oracle of their own (the true peak of the next 20 s).

    python benchmarks/ipa_plus/run.py [--workers 2] [--out DIR]

Prints, as markdown, the means over the 5 pipelines x 4 workloads of PAS, cores and both
violation rates per variant, the issue's check (ipa-plus against ipa: +5 % PAS at no more cores,
or 15 % fewer cores at no less PAS, violations at most IPA's + 1 point), and each cell where a
policy beats its oracle's objective.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from multiprocessing import get_context
from pathlib import Path

VARIANTS = {  # name -> (policy, predictor, policy options)
    "ipa": ("ipa", "lstm", {}),
    "ipa-plus": ("ipa-plus", "lstm", {}),
    "ipa-plus switch cost only": ("ipa-plus", "lstm", {"forecast_quantile": "none"}),
    "ipa-plus quantile only": ("ipa-plus", "lstm", {"switch_cost": "false"}),
    "oracle (ipa, true peak)": ("oracle", "oracle", {}),
    "ipa-plus oracle (true peak)": ("ipa-plus", "oracle", {}),
}
METRICS = ("pas_mean", "cost_cores_mean", "sla_violation_rate", "unanswered_rate")


def run_cell(job):
    from ipa.runs.experiment import RunSpec, execute

    variant, pipeline, workload, out = job
    policy, predictor, options = VARIANTS[variant]
    folder = Path(out) / variant.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "") / pipeline / workload
    summary = execute(RunSpec(pipeline=pipeline, policy=policy, workload=workload, predictor=predictor,
                              policy_options=options), folder, force=True)
    import pandas as pd
    decisions = pd.read_csv(folder / "decisions.csv")
    return variant, pipeline, workload, {m: summary[m] for m in METRICS} | {
        "objective_mean": float(decisions["objective"].mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="where the run folders go (default: a temporary folder)")
    args = ap.parse_args(argv)
    from ipa.pipelines import load_catalogue
    from ipa.workloads import WORKLOADS

    pipelines = list(load_catalogue().pipelines)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(args.out or tmp)
        jobs = [(v, p, w, out) for v in VARIANTS for p in pipelines for w in WORKLOADS]
        with get_context("spawn").Pool(args.workers) as pool:
            rows = pool.map(run_cell, jobs, chunksize=1)
    import pandas as pd
    table = pd.DataFrame([{"variant": v, "pipeline": p, "workload": w, **m} for v, p, w, m in rows])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; python {platform.python_version()}")
    means = table.groupby("variant", sort=False)[list(METRICS)].mean()
    print("\n| variant | PAS x100 | cores | late or unanswered % | unanswered % |\n|---|---|---|---|---|")
    for variant, r in means.iterrows():
        print(f"| {variant} | {100 * r.pas_mean:.2f} | {r.cost_cores_mean:.2f} | {100 * r.sla_violation_rate:.2f} "
              f"| {100 * r.unanswered_rate:.2f} |")
    ipa, plus = means.loc["ipa"], means.loc["ipa-plus"]
    pas_gain = plus.pas_mean / ipa.pas_mean - 1
    core_cut = 1 - plus.cost_cores_mean / ipa.cost_cores_mean
    violations_ok = plus.sla_violation_rate <= ipa.sla_violation_rate + 0.01
    passed = violations_ok and ((pas_gain >= 0.05 and core_cut >= 0) or (core_cut >= 0.15 and pas_gain >= 0))
    print(f"\nipa-plus against ipa (means over {len(pipelines) * len(WORKLOADS)} cells): PAS {100 * pas_gain:+.2f} %, "
          f"cores {-100 * core_cut:+.2f} %, late or unanswered {100 * plus.sla_violation_rate:.2f} % against "
          f"{100 * ipa.sla_violation_rate:.2f} %: {'PASS' if passed else 'MISS'} (target: +5 % PAS at no more cores, "
          "or -15 % cores at no less PAS, violations <= ipa's + 1 point)")
    pivot = table.pivot_table(index=["pipeline", "workload"], columns="variant", values="objective_mean")
    for policy, bound in (("ipa", "oracle (ipa, true peak)"), ("ipa-plus", "ipa-plus oracle (true peak)")):
        beats = pivot[pivot[policy] > pivot[bound] + 1e-9]
        print(f"\n{policy} beats its oracle's mean objective in {len(beats)} of {len(pivot)} cells"
              + "".join(f"\n  {p}/{w}: {r[policy]:.3f} against {r[bound]:.3f}" for (p, w), r in beats.iterrows()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
