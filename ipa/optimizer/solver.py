"""Solve a ``Problem`` with an injected solver and decode the answer into a ``Decision``.

Ties: among optimal answers the one with the fewest changed knobs (variant, batch, replicas)
against ``problem.current`` wins. This is a second, lexicographic solve, not a tiny penalty in
the objective: accuracies are arbitrary reals, so two different configurations can differ in
objective by an arbitrarily small amount and no penalty weight is provably below every real
difference. The second solve keeps the answers within ``TIE_TOLERANCE`` (relative, at least
absolute 1e-9) of the optimum and minimises changes. It runs only when there is a current
configuration and the first answer changes something, so a steady load costs one solve.

Nothing here raises for a solver that stops early, fails or finds the model infeasible: the
result is a ``Decision`` with ``feasible=False``, the reason, and the current configuration
(or, without one, the fallback of ``problem.fallback_picks``). Bad input raises ``ConfigError``
when the ``Problem`` is built, before any of this.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings

import pulp

from ipa.configuration import Decision
from ipa.errors import ConfigError
from ipa.optimizer.model import Model
from ipa.optimizer.problem import (Problem, evaluate, fallback_picks, infeasibility, picks_of,
                                   to_configuration)

SOLVERS = ("cbc", "highs")
# HiGHS runs in-process (CBC goes through files and a subprocess): ~2x faster per decision here.
DEFAULT_SOLVER = "highs"
TIE_TOLERANCE = 1e-9
# Both solvers stop at a relative gap of 1e-4 (HiGHS) or similar by default: far coarser than
# gamma (1e-6) x a batch step, so the batch term would be noise. Ask for the optimum.
GAP = 1e-10

_banner_lock = threading.Lock()
_banner_done = False


def _silence_highs_banner() -> None:
    """HiGHS prints a banner to C stdout the first time a Highs object is made in a process,
    before ``output_flag`` can be set; it would corrupt `ipa solve --json`. Take it once with
    stdout pointed at /dev/null."""
    global _banner_done
    with _banner_lock:
        if _banner_done:
            return
        import highspy
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
        _banner_done = True


def make_solver(solver: str | pulp.LpSolver = DEFAULT_SOLVER, time_limit_s: float | None = None) -> pulp.LpSolver:
    """A PuLP solver by name (``cbc``, bundled with PuLP; ``highs``, through highspy), or the
    given solver object unchanged."""
    if isinstance(solver, pulp.LpSolver):
        return solver
    if time_limit_s is not None and not (time_limit_s > 0):
        raise ConfigError(f"solver time limit must be > 0 seconds, got {time_limit_s!r}")
    if solver == "cbc":
        with warnings.catch_warnings():
            # PuLP 3.3 announces that 4.0 drops its bundled CBC; 3.x (pinned <4) still ships it
            warnings.simplefilter("ignore", DeprecationWarning)
            return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, gapRel=GAP, gapAbs=GAP)
    if solver == "highs":
        _silence_highs_banner()
        return pulp.HiGHS(msg=False, timeLimit=time_limit_s, gapRel=GAP, gapAbs=GAP)
    raise ConfigError(f"unknown solver {solver!r}; use one of {', '.join(SOLVERS)}")


def solver_name(solver: str | pulp.LpSolver) -> str:
    if isinstance(solver, str):
        return solver
    return {"PULP_CBC_CMD": "cbc", "HiGHS": "highs"}.get(type(solver).__name__, type(solver).__name__)


def _run(model: Model, solver: pulp.LpSolver) -> str:
    """'' when the solver proved optimality, else what happened."""
    try:
        model.lp.solve(solver)
    except pulp.PulpSolverError as e:
        return f"solver error: {e}"
    if model.lp.status == pulp.LpStatusOptimal and model.lp.sol_status == pulp.LpSolutionOptimal:
        return ""
    return (f"solver status {pulp.LpStatus.get(model.lp.status, model.lp.status)}, "
            f"solution {pulp.LpSolution.get(model.lp.sol_status, model.lp.sol_status)}")


def solve(problem: Problem, solver: str | pulp.LpSolver = DEFAULT_SOLVER, time_limit_s: float | None = None) -> Decision:
    """The optimal configuration for ``problem``, or a ``feasible=False`` decision saying why not."""
    started = time.perf_counter()
    engine = make_solver(solver, time_limit_s)
    name = solver_name(solver)
    reason = infeasibility(problem)
    if reason:
        return _decision(problem, fallback_picks(problem), False, reason, started,
                         {"solver": name, "path": "infeasible"})
    model = Model(problem)
    failure = _run(model, engine)
    if failure:
        return _fallback_decision(problem, f"{name}: {failure}", started, name, model.formulation)
    picks = model.picks()
    first = evaluate(problem, picks)
    solves = 1
    if problem.current is not None and first.changes > 0:
        tolerance = TIE_TOLERANCE * max(1.0, abs(first.objective))
        model.restrict_to_optimum(first.objective, tolerance)
        solves = 2
        if not _run(model, engine):
            second = model.picks()
            ev2 = evaluate(problem, second)
            # The solver checks the optimum restriction only to its own feasibility tolerance
            # (HiGHS: ~1e-7 scaled), loose enough to let through an answer gamma x one batch
            # step worse; keep the second answer only if exact arithmetic agrees it is optimal.
            if ev2.feasible and ev2.objective >= first.objective - tolerance:
                picks = second
    ev = evaluate(problem, picks)
    extra = {"solver": name, "path": "ilp", "pas_formulation": model.formulation, "solves": solves,
             "changes": ev.changes}
    if not ev.feasible:  # the solver's tolerances accepted what exact arithmetic rejects
        return _fallback_decision(problem, f"{name} returned an answer that violates {ev.reason}",
                                  started, name, model.formulation)
    return _decision(problem, picks, True, "", started, extra)


def _fallback_decision(problem: Problem, reason: str, started: float, name: str, formulation: str) -> Decision:
    """Keep what runs now; without a current configuration, run the fallback."""
    picks = picks_of(problem, problem.current) if problem.current is not None else None
    kept = picks is not None
    reason += "; keeping the current configuration" if kept else "; using the fallback configuration"
    return _decision(problem, picks if kept else fallback_picks(problem), False, reason, started,
                     {"solver": name, "path": "solver-failed", "pas_formulation": formulation})


def _decision(problem: Problem, picks, feasible: bool, reason: str, started: float, extra: dict) -> Decision:
    ev = evaluate(problem, picks)
    extra = dict(extra, changes=ev.changes)
    return Decision(configuration=to_configuration(problem, picks), feasible=feasible, reason=reason,
                    objective=ev.objective, accuracy=ev.accuracy, cost_cores=ev.cost_cores,
                    latency_s=ev.latency_s, solve_time_s=time.perf_counter() - started, extra=extra)
