"""The integer program, built purely from a ``Problem``.

Variables (stage s, allowed option o = (variant, batch)):

* ``x_s_o`` binary, exactly one per stage: the chosen option.
* ``m_s_o`` integer in [0, cap]: the replicas if o is chosen, else 0. ``m <= cap * x`` and
  ``m >= need_o * x`` with ``need_o`` the fewest replicas carrying the rate
  (``need_o * throughput_o >= rate``, computed exactly beforehand). This is the throughput
  constraint ``n_s * h(o) >= rate`` without a product of variables, and a tighter relaxation.
  A stage with pinned replicas (RIM) has no ``m``: its replicas are the constant pin.
* cores = sum m_s_o * base_cores_o; batch wait and latency are constants per option, so the
  SLA constraint ``sum_s x_s_o * (latency_o + (b_o - 1) / rate) <= SLA`` is linear.

Pipeline accuracy:

* ``rank_sum`` is linear: sum x_s_o * rank_accuracy_o.
* ``pas`` (product over stages) is bilinear in the choices. Two exact linearisations:
  - ``combinations`` (used while the variant combinations number at most ``COMBINATION_LIMIT``):
    one continuous ``y_c`` in [0, 1] per combination c of stage variants, ``sum_c y_c = 1`` and
    ``y_c <= X_s,c_s`` for every stage, where X_s,v = sum_b x_s_(v,b). Only the chosen
    combination has all its X at 1, so y is its indicator without being declared integer.
    Its relaxation is tight, but it has prod(variants) columns and sum(stages) x that rows.
  - ``chain`` (past the limit): the running product p_s = p_(s-1) * acc(chosen variant of s)
    with w_s_v = X_s,v * p_(s-1) linearised exactly (McCormick with a binary factor:
    ``w <= U X``, ``w <= p``, ``w >= p - U (1 - X)``, ``w >= 0``, U the largest p_(s-1) can be);
    p_s = sum_v acc_v w_s_v. Exact (no approximation error: with X binary the four
    inequalities force w = X p), with sum(variants) extra columns instead of prod(variants).

Objective: maximise alpha * accuracy - beta * cores - gamma * sum of batch sizes.
"""
from __future__ import annotations

import itertools
import math

import pulp

from ipa.optimizer.problem import Problem, allowed_options, min_replicas, option_latency_s, replica_bounds

COMBINATION_LIMIT = 5000


def pas_formulation(problem: Problem) -> str:
    """Which PAS linearisation ``build_model`` uses for this problem (both exact)."""
    if problem.accuracy_method != "pas":
        return "linear"
    count = math.prod(len({o.variant for _, o in allowed_options(problem, s)}) for s in problem.stages)
    return "combinations" if count <= COMBINATION_LIMIT else "chain"


class Model:
    """The LpProblem plus the handles needed to read a solution back and to add the tie-break."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.lp = pulp.LpProblem("ipa", pulp.LpMaximize)
        self.allowed = [allowed_options(problem, s) for s in problem.stages]
        if any(not a for a in self.allowed):
            raise ValueError("a stage has no allowed option; check problem.infeasibility() first")
        self.x: list[dict[int, pulp.LpVariable]] = []
        self.m: list[dict[int, pulp.LpVariable] | None] = []
        self.replicas: list[pulp.LpAffineExpression] = []
        cores, batches, latency = [], [], []
        for si, (stage, allowed) in enumerate(zip(problem.stages, self.allowed)):
            x = {oi: self.lp.add_variable(f"x_{si}_{oi}", cat=pulp.LpBinary) for oi, _ in allowed}
            self.lp += pulp.lpSum(x.values()) == 1, f"one_option_{si}"
            lo, hi = replica_bounds(problem, stage.name)
            if lo == hi:  # pinned replicas: a constant, no variable
                self.m.append(None)
                self.replicas.append(pulp.LpAffineExpression(constant=hi))
                cores += [hi * o.base_cores * x[oi] for oi, o in allowed]
            else:
                m = {oi: self.lp.add_variable(f"m_{si}_{oi}", 0, hi, cat=pulp.LpInteger) for oi, _ in allowed}
                for oi, o in allowed:
                    self.lp += m[oi] <= hi * x[oi], f"cap_{si}_{oi}"
                    self.lp += m[oi] >= min_replicas(o, problem.rate_rps) * x[oi], f"load_{si}_{oi}"
                self.m.append(m)
                self.replicas.append(pulp.lpSum(m.values()))
                cores += [o.base_cores * m[oi] for oi, o in allowed]
            batches += [o.batch * x[oi] for oi, o in allowed]
            latency += [option_latency_s(o, problem.rate_rps) * x[oi] for oi, o in allowed]
            self.x.append(x)
        self.lp += pulp.lpSum(latency) <= problem.sla_s, "sla"
        self.formulation = pas_formulation(problem)
        accuracy = self._accuracy()
        self.objective = problem.alpha * accuracy - problem.beta * pulp.lpSum(cores) - problem.gamma * pulp.lpSum(batches)
        self.lp.setObjective(self.objective)

    # -- accuracy ------------------------------------------------------------------------------
    def _variant_indicators(self, si: int) -> dict[str, pulp.LpAffineExpression]:
        """X_s,v: 1 if stage si runs variant v (at any batch)."""
        by_variant: dict[str, list] = {}
        for oi, o in self.allowed[si]:
            by_variant.setdefault(o.variant, []).append(self.x[si][oi])
        return {v: pulp.lpSum(xs) for v, xs in by_variant.items()}

    def _accuracy_of(self, si: int) -> dict[str, float]:
        return {o.variant: o.accuracy for _, o in self.allowed[si]}

    def _accuracy(self):
        p = self.problem
        if self.formulation == "linear":
            return pulp.lpSum(o.rank_accuracy * self.x[si][oi]
                              for si, allowed in enumerate(self.allowed) for oi, o in allowed)
        indicators = [self._variant_indicators(si) for si in range(len(p.stages))]
        accuracy = [self._accuracy_of(si) for si in range(len(p.stages))]
        if self.formulation == "combinations":
            terms = []
            for ci, combo in enumerate(itertools.product(*(sorted(ind) for ind in indicators))):
                y = self.lp.add_variable(f"y_{ci}", 0, 1)
                for si, v in enumerate(combo):
                    self.lp += y <= indicators[si][v], f"combo_{ci}_{si}"
                terms.append((y, math.prod(accuracy[si][v] for si, v in enumerate(combo))))
            self.lp += pulp.lpSum(y for y, _ in terms) == 1, "one_combination"
            return pulp.lpSum(value * y for y, value in terms)
        # chain
        product = pulp.lpSum(accuracy[0][v] * X for v, X in indicators[0].items())
        bound = max(accuracy[0].values())
        for si in range(1, len(p.stages)):
            ws = []
            for v, X in indicators[si].items():
                w = self.lp.add_variable(f"w_{si}_{len(ws)}", 0, bound)
                self.lp += w <= bound * X, f"w_le_x_{si}_{len(ws)}"
                self.lp += w <= product, f"w_le_p_{si}_{len(ws)}"
                self.lp += w >= product - bound * (1 - X), f"w_ge_{si}_{len(ws)}"
                ws.append(accuracy[si][v] * w)
            product = pulp.lpSum(ws)
            bound *= max(accuracy[si].values())
        return product

    # -- reading back ----------------------------------------------------------------------------
    def picks(self):
        out = []
        for si, allowed in enumerate(self.allowed):
            oi, o = max(allowed, key=lambda pair: self.x[si][pair[0]].varValue or 0.0)
            m = self.m[si]
            replicas = replica_bounds(self.problem, self.problem.stages[si].name)[1] if m is None \
                else int(round(m[oi].varValue or 0.0))
            out.append((o, replicas))
        return out

    # -- tie-break: fewest changes among the optimal answers -------------------------------------
    def changes_expression(self):
        """Changed knobs against ``problem.current``, linear (one binary per stage for replicas)."""
        current = self.problem.current
        assert current is not None
        terms = []
        for si, stage in enumerate(self.problem.stages):
            c = current.stages.get(stage.name)
            if c is None:
                terms.append(3)
                continue
            x = self.x[si]
            allowed = self.allowed[si]
            terms.append(1 - pulp.lpSum(x[oi] for oi, o in allowed if o.variant == c.variant))
            terms.append(1 - pulp.lpSum(x[oi] for oi, o in allowed if o.batch == c.batch))
            if self.m[si] is None:
                terms.append(int(replica_bounds(self.problem, stage.name)[1] != c.replicas))
            else:
                z = self.lp.add_variable(f"replicas_changed_{si}", cat=pulp.LpBinary)
                big = max(self.problem.scaling_cap, c.replicas)
                self.lp += self.replicas[si] - c.replicas <= big * z, f"rep_up_{si}"
                self.lp += c.replicas - self.replicas[si] <= big * z, f"rep_down_{si}"
                terms.append(z)
        return pulp.lpSum(terms)

    def restrict_to_optimum(self, objective_value: float, tolerance: float) -> None:
        """Keep only answers within ``tolerance`` of the optimum, then minimise changes."""
        self.lp += self.objective >= objective_value - tolerance, "optimal"
        self.lp.sense = pulp.LpMinimize
        self.lp.setObjective(self.changes_expression())


def build_model(problem: Problem) -> pulp.LpProblem:
    """The problem as a PuLP model (maximisation). Variable names: ``x_<stage>_<option>``,
    ``m_<stage>_<option>`` (indices into ``problem.stages`` and their ``options``)."""
    return Model(problem).lp
