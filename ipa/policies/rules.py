"""The policies' decision rules: pure functions of (observation, state, context).

All adaptive policies share one rule; they differ only in the pins their context carries
(``make_policy``). ``static`` decides once and keeps it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pulp

from ipa.configuration import Decision
from ipa.errors import IpaError
from ipa.optimizer.problem import Problem, evaluate, fallback_picks, picks_of, to_configuration
from ipa.optimizer.solver import solve
from ipa.policies.observation import Observation, PolicyState

# Below this the load is "none": provision for a trickle (batch 1, one replica) rather than 0,
# at which the batching wait (b - 1) / rate is undefined.
MIN_RATE_RPS = 1e-3
# The load assumed when the observation carries no usable number: provision the most we can.
UNKNOWN_RATE_RPS = 1e12


@dataclass(frozen=True)
class Context:
    """Fixed for the run: the problem with the policy's pins (its rate is replaced each call)."""

    template: Problem
    solver: pulp.LpSolver
    solver_name: str
    time_limit_s: float | None


def _decision_for(problem: Problem, picks, feasible: bool, reason: str, extra: dict) -> Decision:
    ev = evaluate(problem, picks)
    return Decision(to_configuration(problem, picks), feasible, reason, ev.objective, ev.accuracy,
                    ev.cost_cores, ev.latency_s, 0.0, dict(extra, changes=ev.changes))


def problem_for(observation: Observation, context: Context) -> tuple[Problem, str]:
    """The context's problem at the observation's rate and current configuration, and why the
    rate was unusable ('' when it was usable)."""
    rate = observation.rate_rps
    if not isinstance(rate, (int, float)) or math.isnan(rate) or math.isinf(rate):
        return replace(context.template, rate_rps=UNKNOWN_RATE_RPS, current=observation.current), \
            f"observed rate {rate!r} is not a finite number"
    return replace(context.template, rate_rps=max(float(rate), MIN_RATE_RPS), current=observation.current), ""


def adaptive(observation: Observation, state: PolicyState, context: Context) -> tuple[Decision, PolicyState]:
    """Solve the policy's problem at the observed rate (ipa, fa2-*, rim)."""
    problem, unusable = problem_for(observation, context)
    next_state = replace(state, decisions=state.decisions + 1)
    if unusable:
        kept = picks_of(problem, observation.current) if observation.current is not None else None
        picks = kept if kept is not None else fallback_picks(problem)
        what = "keeping the current configuration" if kept is not None else "provisioning the most throughput"
        return _decision_for(problem, picks, False, f"{unusable}; {what}", {"path": "unusable-rate"}), next_state
    try:
        return solve(problem, context.solver, context.time_limit_s), next_state
    except IpaError as e:  # not expected (the template was validated); never stop the loop for it
        kept = picks_of(problem, observation.current) if observation.current is not None else None
        picks = kept if kept is not None else fallback_picks(problem)
        return _decision_for(problem, picks, False, f"optimizer error: {e}", {"path": "error"}), next_state


def static(observation: Observation, state: PolicyState, context: Context) -> tuple[Decision, PolicyState]:
    """Decide once, on the first call, then keep that configuration, reporting at each call
    whether it still carries the observed load within the SLA."""
    if state.fixed is None:
        decision, next_state = adaptive(observation, state, context)
        return decision, replace(next_state, fixed=decision.configuration)
    problem, unusable = problem_for(observation, context)
    picks = picks_of(problem, state.fixed)
    next_state = replace(state, decisions=state.decisions + 1)
    if picks is None:  # initial_state() checks a given configuration; never stop the loop for it
        return _decision_for(problem, fallback_picks(problem), False,
                             f"static configuration {state.fixed.to_json()} does not fit the pipeline",
                             {"path": "static"}), next_state
    ev = evaluate(problem, picks)
    reason = unusable or ev.reason
    return _decision_for(problem, picks, ev.feasible and not unusable, reason, {"path": "static"}), next_state
