"""`ipa solve`: one decision of a policy for a pipeline at a given load.

Exit status: 0 with a feasible configuration, 1 when none is feasible (the fallback is printed,
with the reason), 2 for bad input.
"""
from __future__ import annotations

import json
from pathlib import Path

from ipa.optimizer import check_rate
from ipa.optimizer.solver import DEFAULT_SOLVER, SOLVERS
from ipa.pipelines import load_catalogue, load_pipeline
from ipa.policies import POLICIES, Observation, make_policy


def add_parser(sub) -> None:
    p = sub.add_parser("solve", help="choose variant, batch and replicas per stage for a load",
                       description=__doc__)
    p.add_argument("--pipeline", required=True, help="pipeline name (see `ipa pipelines`)")
    p.add_argument("--rate", required=True, type=float, help="arrival rate to provision for, requests/s (> 0)")
    p.add_argument("--policy", default="ipa", help=f"one of {', '.join(POLICIES)} (default ipa)")
    p.add_argument("--sla", type=float, help="end-to-end SLA in seconds (default: the pipeline's)")
    p.add_argument("--alpha", type=float, help="accuracy weight (default: the pipeline's)")
    p.add_argument("--beta", type=float, help="cost (cores) weight (default: the pipeline's)")
    p.add_argument("--gamma", type=float, help="batch-size weight (default: the pipeline's)")
    p.add_argument("--statistic", choices=["p50", "p99", "mean"],
                   help="latency statistic of the SLA constraint (default: the pipeline's, p99)")
    p.add_argument("--accuracy-method", choices=["pas", "rank_sum"], help="pipeline accuracy (default: the pipeline's)")
    p.add_argument("--peak-rate", type=float,
                   help="policy rim: the workload's peak rate its replica pins are sized for (default: --rate)")
    p.add_argument("--solver", choices=SOLVERS, default=DEFAULT_SOLVER, help=f"MILP solver (default {DEFAULT_SOLVER})")
    p.add_argument("--time-limit", type=float, default=10.0, help="solver time limit, seconds (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pipelines-file", type=Path, help="your own pipelines.yaml (default: the shipped catalogue)")
    p.add_argument("--variants-file", type=Path, help="your own variants.csv (default: the shipped one)")
    p.add_argument("--profiles-file", type=Path, help="your own profiles.csv (default: the shipped one)")
    p.set_defaults(func=run)


def run(args) -> int:
    check_rate(args.rate)
    catalogue = None
    if args.pipelines_file or args.variants_file:
        catalogue = load_catalogue(args.pipelines_file, args.variants_file)
    pipeline = load_pipeline(args.pipeline, catalogue=catalogue, profiles_path=args.profiles_file)
    policy = make_policy(args.policy, pipeline, sla_s=args.sla, alpha=args.alpha, beta=args.beta,
                         gamma=args.gamma, statistic=args.statistic, accuracy_method=args.accuracy_method,
                         solver=args.solver, time_limit_s=args.time_limit,
                         peak_rate_rps=args.rate if args.peak_rate is None else args.peak_rate)
    decision, _ = policy(Observation(time_s=0.0, rate_rps=args.rate), policy.initial_state())
    t = policy.context.template
    doc = {
        "pipeline": pipeline.name, "policy": policy.name, "rate_rps": args.rate, "sla_s": t.sla_s,
        "alpha": t.alpha, "beta": t.beta, "gamma": t.gamma, "accuracy_method": t.accuracy_method,
        "solver": args.solver, "feasible": decision.feasible, "reason": decision.reason,
        "stages": [{"stage": name, "variant": s.variant, "batch": s.batch, "replicas": s.replicas,
                    "cores_per_replica": s.cores, "cores": s.total_cores}
                   for name, s in decision.configuration.stages.items()],
        "accuracy": decision.accuracy, "cost_cores": decision.cost_cores, "latency_s": decision.latency_s,
        "objective": decision.objective, "solve_time_s": decision.solve_time_s,
        "pas_formulation": decision.extra.get("pas_formulation"), "pins": policy.pins,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_table(doc)
    return 0 if decision.feasible else 1


def _print_table(doc: dict) -> None:
    print(f"pipeline {doc['pipeline']}, policy {doc['policy']}, load {doc['rate_rps']:g} rps, "
          f"SLA {doc['sla_s']:.3f} s, solver {doc['solver']}")
    width = max(len("variant"), *(len(s["variant"]) for s in doc["stages"]))
    print(f"  {'stage':<14} {'variant':<{width}} {'batch':>5} {'replicas':>8} {'cores/rep':>9} {'cores':>6}")
    for s in doc["stages"]:
        print(f"  {s['stage']:<14} {s['variant']:<{width}} {s['batch']:>5} {s['replicas']:>8} "
              f"{s['cores_per_replica']:>9} {s['cores']:>6}")
    print(f"  accuracy ({doc['accuracy_method']}) {doc['accuracy']:.4f}, cost {doc['cost_cores']} cores, "
          f"latency {doc['latency_s']:.3f} s, objective {doc['objective']:.6g}")
    verdict = "yes" if doc["feasible"] else f"NO: {doc['reason']}"
    print(f"  feasible: {verdict}; decided in {doc['solve_time_s'] * 1000:.1f} ms")
