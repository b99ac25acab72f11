"""What several variants per stage could gain over IPA's one: the two programs' optima, decision
by decision, on the workloads' true peaks (no runtime: ipa.optimizer.mixed is not a policy yet).

    python benchmarks/ipa_plus/mixing.py [--solver highs]

For every rank-sum pipeline (video's PAS objective is not linear in the shares) and workload, one
decision per 10-s interval at that interval's true peak rate (trace rates x the pipeline's load
scale): IPA's program (ipa.optimizer.solve) and the mixed one (solve_mixed), same weights, SLA
and cap. Printed per cell and over the cells: the mean PAS (mixed: a request's expected PAS,
each stage's accuracy weighted by the load its variants carry), mean cores, the mean objective,
and in how many decisions the mixed optimum is strictly better. This is an upper bound on what
the part can give a policy: a perfect forecast, a split the router would have to realise, and no
switching cost.
"""
from __future__ import annotations

import argparse
import math
import os
import platform

import numpy as np

from ipa.optimizer import problem_from_pipeline, solve
from ipa.optimizer.mixed import solve_mixed
from ipa.pipelines import load_pipeline
from ipa.workloads import load_workload

PIPELINES = ("audio-qa", "audio-sent", "sum-qa", "nlp")
WORKLOADS = ("bursty", "steady-low", "steady-high", "fluctuating")
INTERVAL_S = 10


def interval_peaks(workload: str, load_scale: float) -> list[float]:
    rates = np.asarray(load_workload(workload).rates, dtype=float) * load_scale
    return [float(rates[i:i + INTERVAL_S].max()) for i in range(0, len(rates), INTERVAL_S)]


def single_pas(problem, configuration) -> float:
    accuracy = {(s.name, o.variant): o.accuracy for s in problem.stages for o in s.options}
    return math.prod(accuracy[(name, sc.variant)] for name, sc in configuration.stages.items())


def cell(pipeline_name: str, workload: str, solver: str) -> dict:
    pipeline = load_pipeline(pipeline_name)
    rows = []
    for rate in interval_peaks(workload, float(pipeline.params["load_scale"])):
        problem = problem_from_pipeline(pipeline, max(rate, 1e-3))
        one, mixed = solve(problem, solver), solve_mixed(problem, solver)
        if not one.feasible or mixed is None:
            continue  # the same decision space's edge: both fall back; not a mix's gain or loss
        rows.append((single_pas(problem, one.configuration), one.cost_cores, one.objective,
                     mixed.pas, mixed.cost_cores, mixed.objective))
    a = np.asarray(rows, dtype=float)
    return {"decisions": len(rows), "pas_one": a[:, 0].mean(), "cores_one": a[:, 1].mean(),
            "objective_one": a[:, 2].mean(), "pas_mixed": a[:, 3].mean(), "cores_mixed": a[:, 4].mean(),
            "objective_mixed": a[:, 5].mean(), "better": int((a[:, 5] > a[:, 2] + 1e-6).sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--solver", default="highs", choices=("highs", "cbc"))
    a = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; solver {a.solver}")
    print("| pipeline | workload | decisions | PAS one / mixed | cores one / mixed | objective one / mixed | mixed better |")
    print("|---|---|---|---|---|---|---|")
    cells = []
    for name in PIPELINES:
        for workload in WORKLOADS:
            c = cell(name, workload, a.solver)
            cells.append(c)
            print(f"| {name} | {workload} | {c['decisions']} | {100 * c['pas_one']:.2f} / {100 * c['pas_mixed']:.2f} "
                  f"| {c['cores_one']:.2f} / {c['cores_mixed']:.2f} | {c['objective_one']:.3f} / "
                  f"{c['objective_mixed']:.3f} | {c['better']} |", flush=True)
    pas = np.mean([c["pas_mixed"] / c["pas_one"] - 1 for c in cells])
    cores = np.mean([c["cores_mixed"] / c["cores_one"] - 1 for c in cells])
    better = sum(c["better"] for c in cells)
    total = sum(c["decisions"] for c in cells)
    print(f"\nover the {len(cells)} cells (mean of per-cell changes): PAS {100 * pas:+.2f} %, cores {100 * cores:+.2f} %; "
          f"the mixed optimum is strictly better in {better} of {total} decisions; load average now "
          f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
