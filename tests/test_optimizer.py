"""The ILP against the exhaustive reference, its tie-break, infeasibility and bad input."""
from __future__ import annotations

import math
from dataclasses import replace

import pulp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipa.optimizer.model as model_module
from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError, IpaError
from ipa.optimizer import (Option, Problem, StageOptions, brute_force, build_model, evaluate, infeasibility,
                           pas_formulation, picks_of, problem_from_pipeline, solve)

REFERENCE_PIPELINES = ("video", "audio-qa", "audio-sent", "sum-qa", "nlp")


def same_objective(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-7)


def assert_matches_brute_force(problem: Problem, solver: str = "cbc") -> None:
    got, want = solve(problem, solver), brute_force(problem)
    assert got.feasible == want.feasible, (got.reason, want.reason)
    if not want.feasible:
        assert got.reason == want.reason
        assert got.configuration == want.configuration
        return
    assert same_objective(got.objective, want.objective), (got.configuration, want.configuration)
    # the answer is what it claims: feasible under exact arithmetic
    assert evaluate(problem, picks_of(problem, got.configuration)).feasible
    if problem.current is not None:
        assert got.extra["changes"] == want.extra["changes"]


# --- random small instances ---------------------------------------------------------------------

@st.composite
def problems(draw, max_stages: int = 3, max_variants: int = 3):
    stages = []
    for si in range(draw(st.integers(1, max_stages))):
        options = []
        n_variants = draw(st.integers(1, max_variants))
        for vi in range(n_variants):
            latency_1 = draw(st.floats(0.01, 1.0))
            cores = draw(st.integers(1, 4))
            accuracy = draw(st.floats(0.05, 1.0))
            load_time = draw(st.floats(0.0, 30.0))
            for b in sorted(draw(st.sets(st.sampled_from([2, 4, 8]), max_size=2)) | {1}):
                latency = latency_1 * (0.4 + 0.6 * b) * draw(st.floats(0.8, 1.2))
                options.append(Option(f"v{vi}", b, cores, latency, b / latency, accuracy, vi / max(1, n_variants - 1),
                                      load_time))
        stages.append(StageOptions(f"s{si}", tuple(options)))
    fastest = sum(min(o.latency_s for o in s.options) for s in stages)
    cap = draw(st.integers(1, 8))
    problem = Problem(
        stages=tuple(stages), rate_rps=draw(st.floats(0.5, 80.0)),
        sla_s=fastest * draw(st.floats(1.0, 6.0)),
        alpha=draw(st.sampled_from([0.0, 1.0, 2.0, 10.0, 40.0])),
        beta=draw(st.sampled_from([0.0, 0.5, 1.0])),
        gamma=draw(st.sampled_from([0.0, 1e-6, 0.01])),
        scaling_cap=cap, accuracy_method=draw(st.sampled_from(["pas", "rank_sum"])),
        switch_interval_s=draw(st.sampled_from([None, 10.0])),  # ipa-plus's switch cost, or none
    )
    if draw(st.booleans()):  # a current configuration to break ties towards
        current = {}
        for s in stages:
            o = draw(st.sampled_from(s.options))
            current[s.name] = StageConfig(o.variant, o.batch, draw(st.integers(1, cap)), o.base_cores)
        problem = replace(problem, current=Configuration(current))
    return problem


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_cbc_equals_brute_force_on_random_instances(problem):
    assert_matches_brute_force(problem, "cbc")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_highs_equals_brute_force_on_random_instances(problem):
    assert_matches_brute_force(problem, "highs")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_stages=4, max_variants=3))
def test_chain_pas_formulation_is_exact(problem):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_module, "COMBINATION_LIMIT", 0)
        if problem.accuracy_method == "pas" and not infeasibility(problem):
            assert pas_formulation(problem) == "chain"
        assert_matches_brute_force(problem, "cbc")


# --- reference pipelines ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCE_PIPELINES)
@pytest.mark.parametrize("solver", ["cbc", "highs"])
def test_reference_pipelines_match_brute_force_over_rates(reference_pipeline, name, solver):
    pipeline = reference_pipeline(name)
    previous = None
    for rate in (0.5, 1, 2, 4, 8, 12, 20, 30, 40, 60, 100):
        problem = problem_from_pipeline(pipeline, rate, current=previous)
        assert_matches_brute_force(problem, solver)
        previous = solve(problem, solver).configuration


# --- the model on the synthetic catalogue ----------------------------------------------------------

def test_tiny_pipeline_matches_brute_force_with_both_solvers_and_both_accuracies(make_tiny_pipeline):
    for name in ("tiny-video", "tiny-audio"):
        pipeline = make_tiny_pipeline(name)
        for method in ("pas", "rank_sum"):
            for rate in (0.2, 3, 12, 40, 90):
                problem = problem_from_pipeline(pipeline, rate, accuracy_method=method)
                for solver in ("cbc", "highs"):
                    assert_matches_brute_force(problem, solver)


def test_decision_reports_the_evaluated_configuration(tiny_pipeline):
    problem = problem_from_pipeline(tiny_pipeline, 25)
    d = solve(problem)
    ev = evaluate(problem, picks_of(problem, d.configuration))
    assert d.feasible and d.extra["path"] == "ilp"
    assert (d.objective, d.accuracy, d.cost_cores, d.latency_s) == (ev.objective, ev.accuracy, ev.cost_cores, ev.latency_s)
    assert d.cost_cores == d.configuration.total_cores
    assert d.latency_s <= problem.sla_s
    for name, s in d.configuration.stages.items():
        o = next(o for o in problem.stage(name).options if (o.variant, o.batch) == (s.variant, s.batch))
        assert s.replicas * o.throughput_rps >= 25
        assert s.cores == o.base_cores


def test_build_model_is_a_pulp_problem_over_the_allowed_options(tiny_pipeline):
    problem = problem_from_pipeline(tiny_pipeline, 25)
    lp = build_model(problem)
    assert isinstance(lp, pulp.LpProblem) and lp.sense == pulp.LpMaximize
    names = {v.name for v in lp.variables()}
    # options that cannot carry 25 rps within 20 replicas never enter the model
    for si, stage in enumerate(problem.stages):
        for oi, o in enumerate(stage.options):
            if 20 * o.throughput_rps < 25:
                assert f"x_{si}_{oi}" not in names
    assert any(n.startswith("x_0_") for n in names) and any(n.startswith("x_1_") for n in names)


def test_batching_wait_keeps_batches_small_at_low_load(tiny_pipeline):
    # at 0.5 rps a batch of 8 waits 14 s to fill, far past the SLA
    d = solve(problem_from_pipeline(tiny_pipeline, 0.5, gamma=0.0))
    assert all(s.batch == 1 for s in d.configuration.stages.values())


# --- tie-break: fewest changes among optimal answers -----------------------------------------------

def test_keeps_the_current_configuration_when_it_is_optimal(tiny_pipeline):
    first = solve(problem_from_pipeline(tiny_pipeline, 25))
    again = solve(problem_from_pipeline(tiny_pipeline, 25, current=first.configuration))
    assert again.configuration == first.configuration
    assert again.extra["changes"] == 0 and again.extra["solves"] == 1


def test_free_replicas_stay_where_they_are(tiny_pipeline):
    # beta = 0: every replica count that carries the load is optimal; keep the current ones
    base = solve(problem_from_pipeline(tiny_pipeline, 10, beta=0.0))
    current = Configuration({n: StageConfig(s.variant, s.batch, 7, s.cores)
                             for n, s in base.configuration.stages.items()})
    problem = problem_from_pipeline(tiny_pipeline, 10, beta=0.0, current=current)
    d = solve(problem)
    assert same_objective(d.objective, base.objective)
    assert d.configuration == current and d.extra["changes"] == 0
    assert d.extra["changes"] == brute_force(problem).extra["changes"]


# --- infeasible problems and failing solvers -------------------------------------------------------

def test_load_beyond_the_caps_is_marked_with_the_stage_and_numbers(tiny_pipeline):
    problem = problem_from_pipeline(tiny_pipeline, 5000)
    d = solve(problem)
    assert not d.feasible and d.reason.startswith("throughput:")
    assert "stage detector" in d.reason and "5000" in d.reason
    # the most the pipeline can serve: each stage's highest-throughput option at the cap
    for name, s in d.configuration.stages.items():
        best = max(o.throughput_rps for o in problem.stage(name).options)
        o = next(o for o in problem.stage(name).options if (o.variant, o.batch) == (s.variant, s.batch))
        assert s.replicas == problem.scaling_cap and o.throughput_rps == best


def test_unmeetable_sla_at_this_load_is_marked(make_tiny_pipeline):
    pipeline = make_tiny_pipeline("tiny-video")
    pins = {"detector": "det-l", "classifier": "cls-l"}
    fastest_pinned = sum(min(o.latency_s for o in s.options if o.variant == pins[s.name])
                         for s in problem_from_pipeline(pipeline, 1).stages)
    problem = problem_from_pipeline(pipeline, 10, sla_s=fastest_pinned * 0.9, pinned_variants=pins)
    d = solve(problem)
    assert not d.feasible and d.reason.startswith("latency:") and "SLA" in d.reason
    assert d.configuration.variants == pins  # the fallback respects the pins too
    assert brute_force(problem).configuration == d.configuration


class StopsAtTimeLimit(pulp.LpSolver):
    """Stands in for a solver that hits its time limit without a proven optimum (a real CBC or
    HiGHS run cannot be made to time out deterministically on a model this small)."""

    def actualSolve(self, lp):
        lp.assignStatus(pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound)
        return lp.status


class Crashes(pulp.LpSolver):
    def actualSolve(self, lp):
        raise pulp.PulpSolverError("solver binary died")


@pytest.mark.reliability
@pytest.mark.parametrize("engine", [StopsAtTimeLimit(), Crashes()])
def test_solver_failure_keeps_the_current_configuration(tiny_pipeline, engine):
    current = solve(problem_from_pipeline(tiny_pipeline, 25)).configuration
    d = solve(problem_from_pipeline(tiny_pipeline, 40, current=current), engine)
    assert not d.feasible and "keeping the current configuration" in d.reason
    assert d.configuration == current
    without = solve(problem_from_pipeline(tiny_pipeline, 40), engine)
    assert not without.feasible and "fallback" in without.reason


@pytest.mark.parametrize("solver", ["cbc", "highs"])
def test_real_time_limit_is_passed_to_the_solver(tiny_pipeline, solver, monkeypatch):
    from ipa.optimizer import solver as solver_module

    made = []
    real = solver_module.make_solver
    monkeypatch.setattr(solver_module, "make_solver", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    problem = problem_from_pipeline(tiny_pipeline, 25)
    d = solve(problem, solver, time_limit_s=5)
    assert [m.timeLimit for m in made] == [5]  # the engine PuLP runs carries the limit
    # a generous limit changes nothing: the same optimum as without one
    assert d.feasible and d.configuration == solve(problem, solver).configuration


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.reliability
@pytest.mark.parametrize("rate", [0, -1, math.nan, math.inf, -math.inf])
def test_bad_rate_is_a_config_error(tiny_pipeline, rate):
    with pytest.raises(ConfigError, match="arrival rate must be a finite number > 0"):
        problem_from_pipeline(tiny_pipeline, rate)


@pytest.mark.reliability
def test_sla_below_the_fastest_latency_is_a_config_error(tiny_pipeline):
    fastest = sum(min(o.latency_s for o in s.options) for s in problem_from_pipeline(tiny_pipeline, 1).stages)
    problem_from_pipeline(tiny_pipeline, 1, sla_s=fastest)  # exactly the bound is allowed
    with pytest.raises(ConfigError, match=r"below the fastest possible end-to-end latency"):
        problem_from_pipeline(tiny_pipeline, 1, sla_s=fastest * 0.99)


@pytest.mark.reliability
@pytest.mark.parametrize("weight", ["alpha", "beta", "gamma"])
@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf])
def test_bad_weights_are_config_errors(tiny_pipeline, weight, value):
    with pytest.raises(ConfigError, match=f"weight {weight} must be a finite number >= 0"):
        problem_from_pipeline(tiny_pipeline, 1, **{weight: value})


@pytest.mark.reliability
def test_other_bad_input_names_the_problem(tiny_pipeline):
    with pytest.raises(ConfigError, match="unknown solver 'gurobi'"):
        solve(problem_from_pipeline(tiny_pipeline, 1), "gurobi")
    with pytest.raises(ConfigError, match="accuracy_method"):
        problem_from_pipeline(tiny_pipeline, 1, accuracy_method="mean")
    with pytest.raises(IpaError, match="no variant 'det-xl'"):
        problem_from_pipeline(tiny_pipeline, 1, pinned_variants={"detector": "det-xl"})
    with pytest.raises(IpaError, match="no stage 'tracker'"):
        problem_from_pipeline(tiny_pipeline, 1, pinned_replicas={"tracker": 2})
    with pytest.raises(ConfigError, match=r"replica pin .* \[1, scaling_cap=20\]"):
        problem_from_pipeline(tiny_pipeline, 1, pinned_replicas={"detector": 21})


def test_a_switch_pays_its_load_time_in_cores_so_a_small_upgrade_is_not_worth_it():
    # one stage, rate 1: "lo" (accuracy 0.5, 1 core, 1 replica) runs; "hi" (0.6, 1 core) also
    # needs 1 replica and loads for 20 s. Without a switch cost hi wins: 10 * 0.6 - 1 = 5 against
    # 10 * 0.5 - 1 = 4. With it, hi also pays 1 core x 20 s / 10 s = 2 cores: 5 - 2 = 3 < 4.
    lo = Option("lo", 1, 1, 0.1, 10.0, 0.5, 0.0, 20.0)
    hi = Option("hi", 1, 1, 0.1, 10.0, 0.6, 1.0, 20.0)
    problem = Problem(stages=(StageOptions("s", (lo, hi)),), rate_rps=1.0, sla_s=1.0, alpha=10.0, beta=1.0,
                      gamma=0.0, scaling_cap=4, current=Configuration({"s": StageConfig("lo", 1, 1, 1)}))
    assert solve(problem, "highs").configuration["s"].variant == "hi"
    switching = replace(problem, switch_interval_s=10.0)
    decision = solve(switching, "highs")
    assert decision.configuration["s"].variant == "lo" and decision.objective == pytest.approx(4.0)
    # the cost of hi as the switch sees it, evaluated the same way by the brute force
    assert evaluate(switching, [(hi, 1)]).objective == pytest.approx(3.0)
    # a load time of 5 s costs 0.5 cores: 5 - 0.5 = 4.5 > 4, so the upgrade pays for itself
    quick = replace(switching, stages=(StageOptions("s", (lo, replace(hi, load_time_s=5.0))),))
    assert solve(quick, "highs").configuration["s"].variant == "hi"
