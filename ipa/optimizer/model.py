"""The integer program, built purely from a ``Problem``.

Per stage s and candidate option o = (variant, batch), a binary ``x_s_o``, exactly one per
stage. Everything else about a stage follows from its option:

* Replicas. The throughput constraint ``n_s * h(o) >= rate`` with n_s integer in
  [1, scaling_cap] has, for a fixed o, the feasible set [need_o, cap] (need_o = fewest replicas
  carrying the rate, computed exactly). The objective falls by beta x base cores per replica,
  so the optimum is need_o (or, when beta = 0 and every count costs the same, the current
  count, which changes nothing: ``problem.replicas_for``). So instead of an integer replica
  variable linked to the binaries (``m_s_o <= cap x_s_o``, ``m_s_o >= need_o x_s_o``) the
  replica count of each option is a constant: the same optimum, with none of the integer
  variables a branch-and-bound would branch on. Options with need_o > cap are left out.
  Pinned replicas (RIM) are the pin; options the pin cannot carry are left out.
* Cores = sum x_s_o * replicas_o * base_cores_o; latency = sum x_s_o * (latency_o + (b_o - 1)
  / rate) <= SLA (profiled latency plus the worst-case batch-fill wait, fact 12).
* Options that cannot be in any best answer are left out (``candidates``): o is dropped when
  another option of the stage is no slower, no less accurate, no costlier in cores + batch
  penalty and changes no more knobs. Swapping it in keeps any answer feasible and at least as
  good, so the optimum (and its tie-break) is unchanged.

Pipeline accuracy:

* ``rank_sum`` is linear: sum x_s_o * rank_accuracy_o.
* ``pas`` (product over stages) is bilinear in the choices. Two exact linearisations:
  - ``combinations`` (while the variant combinations number at most ``COMBINATION_LIMIT``):
    one continuous ``y_c`` in [0, 1] per combination c of stage variants, ``sum_c y_c = 1`` and
    ``y_c <= X_s,c_s`` for every stage, where X_s,v = sum_b x_s_(v,b). Only the chosen
    combination has all its X at 1, so y is its indicator without being declared integer.
  - ``chain`` (past the limit): the running product p_s = p_(s-1) * acc(variant of s), with
    w_s_v = X_s,v * p_(s-1) linearised exactly (McCormick with a binary factor: ``w <= U X``,
    ``w >= L X``, ``w <= p - L (1 - X)``, ``w >= p - U (1 - X)``, with [L, U] the range of
    p_(s-1): the full McCormick envelope), and
    p_s = sum_v acc_v w_s_v. No approximation error: with X binary the four inequalities force
    w = X p. It needs sum(variants) extra columns instead of prod(variants).

Objective: maximise alpha * accuracy - beta * cores - gamma * sum of batch sizes, where with a
switch cost (ipa-plus) a changed variant's cores also count for the share of the interval its new
replicas spend loading (``option_penalty``, shared with ``evaluate``).
"""
from __future__ import annotations

import itertools
import math

import pulp

from ipa.optimizer.problem import (Option, Problem, allowed_options, option_latency_s, option_penalty,
                                   replicas_for, stage_changes)

# Past a few dozen combinations the chain is faster with both solvers (benchmarks/solver/README.md:
# 729 combinations took 0.2-1.7 s as combinations, 15-17 ms as a chain); below, the two are on par.
COMBINATION_LIMIT = 32

Candidate = tuple[int, Option, int]  # (index into the stage's options, option, replicas)


def candidates(problem: Problem, stage) -> list[Candidate]:
    """The stage's options that can be part of a best answer, with their replica counts."""
    rows = []
    for oi, o in allowed_options(problem, stage):
        r = replicas_for(problem, stage.name, o)
        accuracy = o.accuracy if problem.accuracy_method == "pas" else o.rank_accuracy
        penalty = option_penalty(problem, stage.name, o, r)
        key = (option_latency_s(o, problem.rate_rps), -accuracy, penalty, stage_changes(problem, stage.name, o, r))
        rows.append((key, oi, o, r))
    kept = []
    for key, oi, o, r in rows:
        dominated = any(all(a <= b for a, b in zip(other, key)) and (other != key or other_oi < oi)
                        for other, other_oi, _, _ in rows if other_oi != oi)
        if not dominated:
            kept.append((oi, o, r))
    return kept


def pas_formulation(problem: Problem, stage_candidates: list[list[Candidate]] | None = None) -> str:
    """Which PAS linearisation ``build_model`` uses for this problem (both exact)."""
    if problem.accuracy_method != "pas":
        return "linear"
    stage_candidates = stage_candidates or [candidates(problem, s) for s in problem.stages]
    count = math.prod(len({o.variant for _, o, _ in c}) for c in stage_candidates)
    return "combinations" if count <= COMBINATION_LIMIT else "chain"


class Model:
    """The LpProblem plus the handles needed to read a solution back and to add the tie-break."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.lp = pulp.LpProblem("ipa", pulp.LpMaximize)
        self.candidates = [candidates(problem, s) for s in problem.stages]
        if any(not c for c in self.candidates):
            raise ValueError("a stage has no allowed option; check problem.infeasibility() first")
        self.x: list[dict[int, pulp.LpVariable]] = []
        penalty, latency = [], []
        for si, cands in enumerate(self.candidates):
            x = {oi: self.lp.add_variable(f"x_{si}_{oi}", cat=pulp.LpBinary) for oi, _, _ in cands}
            self.lp += pulp.lpSum(x.values()) == 1, f"one_option_{si}"
            name = problem.stages[si].name
            penalty += [option_penalty(problem, name, o, r) * x[oi] for oi, o, r in cands]
            latency += [option_latency_s(o, problem.rate_rps) * x[oi] for oi, o, _ in cands]
            self.x.append(x)
        self.lp += pulp.lpSum(latency) <= problem.sla_s, "sla"
        self.formulation = pas_formulation(problem, self.candidates)
        self.objective = problem.alpha * self._accuracy() - pulp.lpSum(penalty)
        self.lp.setObjective(self.objective)

    # -- accuracy ------------------------------------------------------------------------------
    def _variant_indicators(self, si: int) -> dict[str, pulp.LpAffineExpression]:
        """X_s,v: 1 if stage si runs variant v (at any batch)."""
        by_variant: dict[str, list] = {}
        for oi, o, _ in self.candidates[si]:
            by_variant.setdefault(o.variant, []).append(self.x[si][oi])
        return {v: pulp.lpSum(xs) for v, xs in by_variant.items()}

    def _accuracy(self):
        if self.formulation == "linear":
            return pulp.lpSum(o.rank_accuracy * self.x[si][oi]
                              for si, cands in enumerate(self.candidates) for oi, o, _ in cands)
        stages = range(len(self.candidates))
        indicators = [self._variant_indicators(si) for si in stages]
        accuracy = [{o.variant: o.accuracy for _, o, _ in self.candidates[si]} for si in stages]
        if self.formulation == "combinations":
            terms = []
            for ci, combo in enumerate(itertools.product(*(sorted(ind) for ind in indicators))):
                y = self.lp.add_variable(f"y_{ci}", 0, 1)
                for si, v in enumerate(combo):
                    self.lp += y <= indicators[si][v], f"combo_{ci}_{si}"
                terms.append((y, math.prod(accuracy[si][v] for si, v in enumerate(combo))))
            self.lp += pulp.lpSum(y for y, _ in terms) == 1, "one_combination"
            return pulp.lpSum(value * y for y, value in terms)
        product = pulp.lpSum(accuracy[0][v] * X for v, X in indicators[0].items())
        low, high = min(accuracy[0].values()), max(accuracy[0].values())
        for si in stages[1:]:
            ws = []
            for k, (v, X) in enumerate(indicators[si].items()):
                w = self.lp.add_variable(f"w_{si}_{k}", 0, high)
                self.lp += w <= high * X, f"w_le_x_{si}_{k}"
                self.lp += w >= low * X, f"w_ge_x_{si}_{k}"
                self.lp += w <= product - low * (1 - X), f"w_le_p_{si}_{k}"
                self.lp += w >= product - high * (1 - X), f"w_ge_p_{si}_{k}"
                ws.append(accuracy[si][v] * w)
            product = pulp.lpSum(ws)
            low *= min(accuracy[si].values())
            high *= max(accuracy[si].values())
        return product

    # -- reading back ----------------------------------------------------------------------------
    def picks(self):
        out = []
        for si, cands in enumerate(self.candidates):
            _, o, r = max(cands, key=lambda c: self.x[si][c[0]].varValue or 0.0)
            out.append((o, r))
        return out

    # -- tie-break: fewest changes among the optimal answers -------------------------------------
    def restrict_to_optimum(self, objective_value: float, tolerance: float) -> None:
        """Keep only answers within ``tolerance`` of the optimum, then minimise changed knobs
        (a constant per option, since each option's replica count is fixed)."""
        self.lp += self.objective >= objective_value - tolerance, "optimal"
        self.lp.sense = pulp.LpMinimize
        self.lp.setObjective(pulp.lpSum(
            stage_changes(self.problem, self.problem.stages[si].name, o, r) * self.x[si][oi]
            for si, cands in enumerate(self.candidates) for oi, o, r in cands))


def build_model(problem: Problem) -> pulp.LpProblem:
    """The problem as a PuLP model (maximisation); binaries ``x_<stage>_<option>`` (indices into
    ``problem.stages`` and their ``options``)."""
    return Model(problem).lp
