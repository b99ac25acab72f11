"""The optimum of an IPA decision, computed from the paper's formulation alone.

A check on ``ipa.optimizer`` that shares none of its code: nothing here imports the optimizer's
``evaluate``, ``allowed_options``, ``min_replicas``, ``replica_bounds`` or its latency and
objective helpers; only the problem's data (the ``Problem`` and ``Option`` records) is read.

The formulation (docs/facts.md, facts 11-13): per stage one variant m, one batch b and an integer
replica count n in [1, cap];

* throughput: n * h_m(b) >= lambda for every stage;
* latency: sum over stages of l_m(b) + (b - 1) / lambda <= SLA (the batch-fill wait);
* objective: maximise alpha * A - beta * sum n * R_m - gamma * sum b, where R_m is the variant's
  cores per replica and A is the product of the stages' accuracies (PAS) or the sum of their
  rank-normalised accuracies.

ipa-plus adds a switch cost: a stage whose variant differs from the current one pays, besides
its cores, beta * n * R_m * load_time_m / interval (its new replicas hold their cores while they
load). Pins fix a stage's variant or its replica count.

Search: every (variant, batch) of every stage, in every combination; for each combination, every
replica count 1..cap of every stage. The replica counts are searched stage by stage: with the
(variant, batch) of all stages fixed, the accuracy and the latency are fixed too and n enters only
its own stage's throughput constraint and cost, so the best n of each stage is the best of that
stage's column alone. This is exact, not a heuristic: it is the maximum of a separable sum.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Optimum:
    feasible: bool
    objective: float | None     # None when infeasible
    choice: tuple | None        # per stage (variant, batch, replicas) of one optimum


def _accuracy(problem, options) -> float:
    if problem.accuracy_method == "pas":
        a = 1.0
        for o in options:
            a *= o.accuracy
        return a
    return sum(o.rank_accuracy for o in options)


def _replica_cost(problem, stage_name: str, option, n: int) -> float | None:
    """-(beta x cores [+ switch]) of n replicas of ``option``, or None when n cannot carry the
    load or breaks a pin."""
    pinned = problem.pinned_replicas.get(stage_name)
    if pinned is not None and n != pinned:
        return None
    if n * option.throughput_rps < problem.rate_rps:
        return None
    cores = n * option.base_cores
    current = problem.current.stages.get(stage_name) if problem.current is not None else None
    if problem.switch_interval_s is not None and current is not None and current.variant != option.variant:
        cores += n * option.base_cores * option.load_time_s / problem.switch_interval_s
    return -problem.beta * cores


def _best_replicas(problem, stage_name: str, option) -> tuple[float, int] | None:
    best = None
    for n in range(1, problem.scaling_cap + 1):
        value = _replica_cost(problem, stage_name, option, n)
        if value is not None and (best is None or value > best[0]):
            best = (value, n)
    return best


def score(problem, choice) -> tuple[bool, float]:
    """(feasible, objective) of per-stage (option, replicas), by the formulation above."""
    options = [o for o, _ in choice]
    latency = sum(o.latency_s + (o.batch - 1) / problem.rate_rps for o in options)
    feasible = latency <= problem.sla_s
    cost = 0.0
    for stage, (o, n) in zip(problem.stages, choice):
        pinned = problem.pinned_variants.get(stage.name)
        if (pinned is not None and o.variant != pinned) or not 1 <= n <= problem.scaling_cap:
            feasible = False
        value = _replica_cost(problem, stage.name, o, n)
        if value is None:
            feasible = False
            value = -problem.beta * n * o.base_cores
        cost += value - problem.gamma * o.batch
    return feasible, problem.alpha * _accuracy(problem, options) + cost


def optimum(problem) -> Optimum:
    per_stage = []
    for stage in problem.stages:
        pinned = problem.pinned_variants.get(stage.name)
        column = []
        for o in stage.options:
            if pinned is not None and o.variant != pinned:
                continue
            best = _best_replicas(problem, stage.name, o)
            if best is not None:
                column.append((o, best[1], best[0] - problem.gamma * o.batch))
        if not column:
            return Optimum(False, None, None)
        per_stage.append(column)
    best_value, best_choice = -math.inf, None
    for combo in itertools.product(*per_stage):
        latency = sum(o.latency_s + (o.batch - 1) / problem.rate_rps for o, _, _ in combo)
        if latency > problem.sla_s:
            continue
        value = problem.alpha * _accuracy(problem, [o for o, _, _ in combo]) + sum(v for _, _, v in combo)
        if value > best_value:
            best_value, best_choice = value, tuple((o.variant, o.batch, n) for o, n, _ in combo)
    if best_choice is None:
        return Optimum(False, None, None)
    return Optimum(True, best_value, best_choice)
