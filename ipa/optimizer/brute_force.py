"""Exhaustive reference solver over the same model, to check the ILP's optimality in tests.

It enumerates every (option, replicas) per stage that respects the pins, keeps the feasible
ones (``evaluate``, shared with the ILP's decoding), and ranks them as ``solve`` does: highest
objective, then, among answers within the same tolerance of it, fewest changes.

Replicas are not enumerated over the whole [1, cap] range: for a fixed option, any replica
count other than the fewest that carry the load (``min_replicas``) or the current one costs at
least as much (beta >= 0) and changes at least as much, so these two candidates are enough.
"""
from __future__ import annotations

import itertools
import time

from ipa.configuration import Decision
from ipa.optimizer.problem import (Problem, allowed_options, evaluate, fallback_picks, infeasibility,
                                   min_replicas, replica_bounds, to_configuration)
from ipa.optimizer.solver import TIE_TOLERANCE


def _candidates(problem: Problem, stage):
    lo, hi = replica_bounds(problem, stage.name)
    current = problem.current.stages.get(stage.name) if problem.current is not None else None
    for _, o in allowed_options(problem, stage):
        need = max(lo, min_replicas(o, problem.rate_rps))
        counts = {need}
        if current is not None and need <= current.replicas <= hi:
            counts.add(current.replicas)
        for r in sorted(counts):
            yield (o, r)


def brute_force(problem: Problem) -> Decision:
    started = time.perf_counter()
    reason = infeasibility(problem)
    if reason:
        picks = fallback_picks(problem)
        ev = evaluate(problem, picks)
        return Decision(to_configuration(problem, picks), False, reason, ev.objective, ev.accuracy,
                        ev.cost_cores, ev.latency_s, time.perf_counter() - started,
                        {"solver": "brute-force", "changes": ev.changes})
    scored = []
    for picks in itertools.product(*(list(_candidates(problem, s)) for s in problem.stages)):
        ev = evaluate(problem, picks)
        if ev.feasible:
            scored.append((ev, picks))
    best = max(ev.objective for ev, _ in scored)
    tolerance = TIE_TOLERANCE * max(1.0, abs(best))
    ev, picks = min(((ev, p) for ev, p in scored if ev.objective >= best - tolerance),
                    key=lambda pair: (pair[0].changes, -pair[0].objective))
    return Decision(to_configuration(problem, picks), True, "", ev.objective, ev.accuracy, ev.cost_cores,
                    ev.latency_s, time.perf_counter() - started,
                    {"solver": "brute-force", "changes": ev.changes, "candidates": len(scored)})
