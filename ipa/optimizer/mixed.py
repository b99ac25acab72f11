"""Several variants in one stage, the stage's load split between them inside the program.

The first of ipa-plus's improvements (issue 15): IPA runs one variant per stage, so the capacity
it adds comes in whole replicas of one variant, and the last replica of an accurate variant is
often bought for a small remainder of the load. Here a stage may run replicas of several
variants at once; the program decides how much of the stage's load each variant carries.

This module is the program and the value of its optimum; no backend serves a mixed stage yet
(a configuration is still one variant per stage), so no policy uses it. ``benchmarks/ipa_plus/
mixing.py`` measures what it could gain.

Per stage s and option o = (variant, batch): replicas ``n_o`` (integer, 0 to the cap), the load
it carries ``l_o`` (continuous) and whether it is used ``y_o`` (binary); per stage and batch
size b a binary ``z_s,b``, since the stage's queue forms batches of one size:

* capacity: ``l_o <= n_o * h(o)``; the stage's load is carried: ``sum_o l_o = rate``;
* ``y_o <= n_o <= cap * y_o``, ``sum_o n_o <= cap`` (the cap is the stage's, whatever the mix);
* one batch size: ``y_o <= z_s,b(o)``, ``sum_b z_s,b = 1``;
* latency: a stage is as slow as its slowest variant in use, ``L_s >= (latency_o + (b - 1) /
  rate) * y_o``, and ``sum_s L_s <= SLA`` (the fill wait is the stage's, its queue being one);
* objective: ``alpha * sum_s sum_o rank_accuracy_o * l_o / rate - beta * sum_o base_cores_o * n_o
  - gamma * sum_s sum_b b * z_s,b``: each variant's accuracy weighted by the share of load it
  carries.

Only the rank-sum objective is linear in the shares. Under PAS (the product over stages of each
stage's share-weighted accuracy) the objective is a product of continuous sums, which no exact
linearisation with few variables covers; such a problem is refused, not approximated. Pins
(the baselines) and a switch cost are not part of this program either, and are refused.

A single-variant configuration is one of this program's points (one option per stage with the
fewest replicas carrying the load), so its optimum is never below IPA's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pulp

from ipa.errors import ConfigError
from ipa.optimizer.problem import Option, Problem, option_latency_s
from ipa.optimizer.solver import DEFAULT_SOLVER, make_solver


@dataclass(frozen=True)
class Share:
    """One variant of a mixed stage: its option, replicas and the load it carries."""

    option: Option
    replicas: int
    rate_rps: float


@dataclass(frozen=True)
class MixedAnswer:
    stages: tuple[tuple[Share, ...], ...]  # per stage (problem order), the options in use
    objective: float
    rank_accuracy: float  # sum over stages of the share-weighted rank accuracy (the objective's)
    pas: float            # product over stages of the share-weighted accuracy (a request's expected PAS)
    cost_cores: int
    latency_s: float      # per stage the slowest variant in use, plus its batch fill wait


def check_mixable(problem: Problem) -> None:
    if problem.accuracy_method != "rank_sum":
        raise ConfigError(f"a mixed stage's accuracy is linear in its shares only under rank_sum; this "
                          f"problem's accuracy method is {problem.accuracy_method!r} (under PAS the "
                          "objective is a product of share-weighted sums, not built)")
    if problem.pinned_variants or problem.pinned_replicas:
        raise ConfigError("pinned variants or replicas are a baseline's; the mixed program takes none")
    if problem.switch_interval_s is not None:
        raise ConfigError("the mixed program has no switch cost; give a problem without switch_interval_s")


def answer_metrics(problem: Problem, stages: tuple[tuple[Share, ...], ...]) -> tuple[float, float, float, int, float]:
    """(objective, rank accuracy, PAS, cores, latency) of a mix, from the problem's data alone."""
    rate = problem.rate_rps
    rank = sum(sh.option.rank_accuracy * sh.rate_rps / rate for shares in stages for sh in shares)
    pas = math.prod(sum(sh.option.accuracy * sh.rate_rps / rate for sh in shares) for shares in stages)
    cores = sum(sh.option.base_cores * sh.replicas for shares in stages for sh in shares)
    batch = sum(shares[0].option.batch for shares in stages)
    latency = sum(max(option_latency_s(sh.option, rate) for sh in shares) for shares in stages)
    objective = problem.alpha * rank - problem.beta * cores - problem.gamma * batch
    return objective, rank, pas, cores, latency


def split_load(replicas: list[tuple[Option, int]], rate_rps: float) -> tuple[Share, ...]:
    """The best split of a stage's load over fixed replica counts: the most accurate variants'
    capacity first (exact: with the replicas fixed the objective is linear in the shares, with
    one constraint, the load carried). Read back this way, the answer does not carry the
    solver's tolerance on the continuous loads."""
    left, shares = rate_rps, []
    for o, n in sorted(replicas, key=lambda p: (-p[0].rank_accuracy, -p[0].accuracy)):
        carried = min(left, n * o.throughput_rps)
        shares.append(Share(o, n, carried))
        left -= carried
    return tuple(shares)


def solve_mixed(problem: Problem, solver: str = DEFAULT_SOLVER, time_limit_s: float | None = None) -> MixedAnswer | None:
    """The best mix per stage, or None when no mix meets the SLA and carries the load."""
    check_mixable(problem)
    rate, cap = problem.rate_rps, problem.scaling_cap
    lp = pulp.LpProblem("ipa_mixed", pulp.LpMaximize)
    handles, accuracy, cores, batches, latencies = [], [], [], [], []
    for si, stage in enumerate(problem.stages):
        n, load, used = {}, {}, {}
        sizes = sorted({o.batch for o in stage.options})
        z = {b: lp.add_variable(f"z_{si}_{b}", cat=pulp.LpBinary) for b in sizes}
        lp += pulp.lpSum(z.values()) == 1, f"one_batch_{si}"
        stage_latency = lp.add_variable(f"L_{si}", 0)
        for oi, o in enumerate(stage.options):
            n[oi] = lp.add_variable(f"n_{si}_{oi}", 0, cap, cat=pulp.LpInteger)
            load[oi] = lp.add_variable(f"l_{si}_{oi}", 0, rate)
            used[oi] = lp.add_variable(f"y_{si}_{oi}", cat=pulp.LpBinary)
            lp += load[oi] <= o.throughput_rps * n[oi], f"capacity_{si}_{oi}"
            lp += n[oi] <= cap * used[oi], f"used_if_replicas_{si}_{oi}"
            lp += n[oi] >= used[oi], f"replicas_if_used_{si}_{oi}"
            lp += used[oi] <= z[o.batch], f"batch_{si}_{oi}"
            lp += stage_latency >= option_latency_s(o, rate) * used[oi], f"latency_{si}_{oi}"
            accuracy.append(o.rank_accuracy / rate * load[oi])
            cores.append(o.base_cores * n[oi])
        lp += pulp.lpSum(load.values()) == rate, f"carried_{si}"
        lp += pulp.lpSum(n.values()) <= cap, f"cap_{si}"
        batches.extend(b * z[b] for b in sizes)
        latencies.append(stage_latency)
        handles.append((n, load))
    lp += pulp.lpSum(latencies) <= problem.sla_s, "sla"
    lp.setObjective(problem.alpha * pulp.lpSum(accuracy) - problem.beta * pulp.lpSum(cores)
                    - problem.gamma * pulp.lpSum(batches))
    lp.solve(make_solver(solver, time_limit_s))
    if lp.status != pulp.LpStatusOptimal or lp.sol_status != pulp.LpSolutionOptimal:
        return None
    stages = tuple(split_load([(o, int(round(n[oi].varValue or 0))) for oi, o in enumerate(stage.options)
                               if round(n[oi].varValue or 0) > 0], rate)
                   for stage, (n, _) in zip(problem.stages, handles))
    objective, rank, pas, cores_total, latency = answer_metrics(problem, stages)
    return MixedAnswer(stages, objective, rank, pas, cores_total, latency)
