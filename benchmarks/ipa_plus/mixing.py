"""What several variants per stage could gain over IPA's one: the two programs' optima, decision
by decision, on the workloads' true peaks (no runtime: ipa.optimizer.mixed is not a policy yet).

    python benchmarks/ipa_plus/mixing.py [--solver highs]

For every pipeline and workload, one decision per 10-s interval at that interval's true peak
rate (trace rates x the pipeline's load scale): IPA's program (ipa.optimizer.solve) against the
best mix, same weights, SLA and cap. For the rank-sum pipelines the mix is the mixed program's
optimum (solve_mixed). Video's objective is PAS, a product of the stages' share-weighted
accuracies, which that program does not take; its mix is found by search (``pas_mix``): per stage
every batch size and every pair of variants with every replica count up to what each would need
alone (the rank-sum optima use at most two variants per stage), the load split most-accurate
first, each stage's candidates cut to those not dominated in (accuracy, cores, latency), then
every pair of the two stages' candidates. Printed per cell and over the cells: the mean PAS (mixed: a request's expected PAS,
each stage's accuracy weighted by the load its variants carry), mean cores, the mean objective,
and in how many decisions the mixed optimum is strictly better. This is an upper bound on what
the part can give a policy: a perfect forecast, a split the router would have to realise, and no
switching cost.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import platform

import numpy as np

from ipa.optimizer import problem_from_pipeline, solve
from ipa.optimizer.problem import min_replicas, option_latency_s
from ipa.optimizer.mixed import solve_mixed, split_load
from ipa.pipelines import load_pipeline
from ipa.workloads import load_workload

PIPELINES = ("video", "audio-qa", "audio-sent", "sum-qa", "nlp")
WORKLOADS = ("bursty", "steady-low", "steady-high", "fluctuating")
INTERVAL_S = 10


def interval_peaks(workload: str, load_scale: float) -> list[float]:
    rates = np.asarray(load_workload(workload).rates, dtype=float) * load_scale
    return [float(rates[i:i + INTERVAL_S].max()) for i in range(0, len(rates), INTERVAL_S)]


def single_pas(problem, configuration) -> float:
    accuracy = {(s.name, o.variant): o.accuracy for s in problem.stages for o in s.options}
    return math.prod(accuracy[(name, sc.variant)] for name, sc in configuration.stages.items())


def stage_mixes(problem, stage) -> list[tuple[float, int, float, int]]:
    """(share-weighted accuracy, cores, latency, batch) of every mix of at most two variants of
    ``stage`` carrying the load, without the dominated ones."""
    rate, found = problem.rate_rps, []
    for b in sorted({o.batch for o in stage.options}):
        opts = [o for o in stage.options if o.batch == b]
        need = [min(problem.scaling_cap, min_replicas(o, rate)) for o in opts]
        for i, j in itertools.combinations_with_replacement(range(len(opts)), 2):
            for ni in range(1, need[i] + 1):
                for nj in ([0] if i == j else range(1, need[j] + 1)):
                    if ni + nj > problem.scaling_cap:
                        continue
                    pairs = [(opts[i], ni)] + ([(opts[j], nj)] if nj else [])
                    if sum(o.throughput_rps * n for o, n in pairs) < rate:
                        continue
                    # most accurate first, as for the rank sum (a stage's ranks order it as its accuracies do)
                    accuracy = sum(sh.option.accuracy * sh.rate_rps for sh in split_load(pairs, rate)) / rate
                    found.append((accuracy, sum(o.base_cores * n for o, n in pairs),
                                  max(option_latency_s(o, rate) for o, _ in pairs), b))
    found.sort(key=lambda c: (c[1], c[2], -c[0]))
    kept: list[tuple[float, int, float, int]] = []
    for c in found:  # by cores, then latency: a candidate stays if no cheaper-or-equal one is as good
        if not any(k[0] >= c[0] and k[2] <= c[2] for k in kept):
            kept.append(c)
    return kept


def pas_mix(problem) -> tuple[float, float, float] | None:
    """(objective, PAS, cores) of the best mix of a two-stage PAS problem, or None."""
    first, second = (stage_mixes(problem, s) for s in problem.stages)
    best = None
    for a1, c1, l1, b1 in first:
        for a2, c2, l2, b2 in second:
            if l1 + l2 <= problem.sla_s:
                value = problem.alpha * a1 * a2 - problem.beta * (c1 + c2) - problem.gamma * (b1 + b2)
                if best is None or value > best[0]:
                    best = (value, a1 * a2, c1 + c2)
    return best


def best_mix(problem, solver: str) -> tuple[float, float, float] | None:
    """(objective, PAS, cores) of the best mix."""
    if problem.accuracy_method == "pas":
        if len(problem.stages) != 2:
            raise SystemExit("the PAS search covers two-stage pipelines")
        return pas_mix(problem)
    answer = solve_mixed(problem, solver)
    return None if answer is None else (answer.objective, answer.pas, answer.cost_cores)


def cell(pipeline_name: str, workload: str, solver: str) -> dict:
    pipeline = load_pipeline(pipeline_name)
    rows = []
    for rate in interval_peaks(workload, float(pipeline.params["load_scale"])):
        problem = problem_from_pipeline(pipeline, max(rate, 1e-3))
        one, mixed = solve(problem, solver), best_mix(problem, solver)
        if not one.feasible or mixed is None:
            continue  # the same decision space's edge: both fall back; not a mix's gain or loss
        objective, pas, cores = mixed
        rows.append((single_pas(problem, one.configuration), one.cost_cores, one.objective, pas, cores, objective))
    a = np.asarray(rows, dtype=float)
    return {"decisions": len(rows), "pas_one": a[:, 0].mean(), "cores_one": a[:, 1].mean(),
            "objective_one": a[:, 2].mean(), "pas_mixed": a[:, 3].mean(), "cores_mixed": a[:, 4].mean(),
            "objective_mixed": a[:, 5].mean(), "better": int((a[:, 5] > a[:, 2] + 1e-6).sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--solver", default="highs", choices=("highs", "cbc"))
    p.add_argument("--pipeline", choices=PIPELINES, action="append", help="default: all five")
    a = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; solver {a.solver}")
    print("| pipeline | workload | decisions | PAS one / mixed | cores one / mixed | objective one / mixed | mixed better |")
    print("|---|---|---|---|---|---|---|")
    cells = []
    for name in a.pipeline or PIPELINES:
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
