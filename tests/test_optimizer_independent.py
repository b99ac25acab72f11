"""The ILP (CBC and HiGHS) against an optimum computed from the paper's formulation alone
(tests/independent_optimum.py, which shares no code with ipa.optimizer): on 400 seeded random
instances, feasible and infeasible, with pins, a current configuration and ipa-plus's switch
cost, and on the five reference pipelines over rates."""
from __future__ import annotations

import math
import random

import pytest

from independent_optimum import optimum, score
from ipa.configuration import Configuration, StageConfig
from ipa.optimizer import Option, Problem, StageOptions, problem_from_pipeline, solve

SOLVERS = ("cbc", "highs")
INSTANCES = 400


def random_problem(rng: random.Random) -> Problem:
    stages = []
    for si in range(rng.randint(1, 3)):
        n_variants = rng.randint(1, 4)
        options = []
        for vi in range(n_variants):
            latency_1, cores = rng.uniform(0.005, 1.5), rng.randint(1, 8)
            accuracy = rng.choice([rng.uniform(0.05, 1.0), 0.5])  # ties between variants happen
            load_time = rng.uniform(0.0, 40.0)
            for b in sorted({1} | set(rng.sample([2, 4, 8, 16], rng.randint(0, 3)))):
                latency = latency_1 * (0.3 + 0.7 * b) * rng.uniform(0.8, 1.2)
                options.append(Option(f"v{vi}", b, cores, latency, b / latency, accuracy,
                                      vi / max(1, n_variants - 1), load_time))
        stages.append(StageOptions(f"s{si}", tuple(options)))
    fastest = sum(min(o.latency_s for o in s.options) for s in stages)
    cap = rng.choice([1, 2, 3, 5, 8, 20, 100])
    pinned_variants, pinned_replicas, current = {}, {}, None
    if rng.random() < 0.25:
        s = rng.choice(stages)
        pinned_variants[s.name] = rng.choice(s.options).variant
    if rng.random() < 0.15:
        pinned_replicas[rng.choice(stages).name] = rng.randint(1, cap)
    if rng.random() < 0.5:
        current = Configuration({s.name: StageConfig(o.variant, o.batch, rng.randint(1, cap), o.base_cores)
                                 for s in stages for o in [rng.choice(s.options)]})
    return Problem(
        stages=tuple(stages), rate_rps=math.exp(rng.uniform(math.log(0.3), math.log(500.0))),
        sla_s=fastest * rng.uniform(1.0, 6.0),
        alpha=rng.choice([0.0, 0.5, 2.0, 10.0, 40.0, 100.0]), beta=rng.choice([0.0, 0.125, 0.5, 1.0, 10.0]),
        gamma=rng.choice([0.0, 1e-6, 0.01]), scaling_cap=cap, accuracy_method=rng.choice(["pas", "rank_sum"]),
        pinned_variants=pinned_variants, pinned_replicas=pinned_replicas, current=current,
        switch_interval_s=rng.choice([None, None, 10.0]))


def choice_of(problem: Problem, configuration: Configuration) -> list:
    out = []
    for s in problem.stages:
        c = configuration.stages[s.name]
        option = next(o for o in s.options if (o.variant, o.batch) == (c.variant, c.batch))
        out.append((option, c.replicas))
    return out


def assert_agrees(problem: Problem, solver: str) -> bool:
    """The solver's decision against the independent optimum; returns whether it was feasible."""
    want = optimum(problem)
    got = solve(problem, solver)
    assert got.feasible == want.feasible, (got.reason, want)
    if not want.feasible:
        assert got.reason  # says why
        return False
    feasible, value = score(problem, choice_of(problem, got.configuration))
    assert feasible, (got.configuration, want.choice)
    assert math.isclose(value, want.objective, rel_tol=1e-7, abs_tol=1e-7), (got.configuration, want)
    assert math.isclose(got.objective, want.objective, rel_tol=1e-7, abs_tol=1e-7)  # what it reports
    return True


@pytest.mark.parametrize("solver", SOLVERS)
def test_the_ilp_reaches_the_independent_optimum_on_random_instances(solver):
    rng = random.Random(20240817)
    outcomes = [assert_agrees(random_problem(rng), solver) for _ in range(INSTANCES)]
    # the instances cover both sides of feasibility (a seeded draw: these counts are fixed)
    assert outcomes.count(False) >= 100 and outcomes.count(True) >= 150, (outcomes.count(True), outcomes.count(False))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", ("video", "audio-qa", "audio-sent", "sum-qa", "nlp"))
def test_the_ilp_reaches_the_independent_optimum_on_the_reference_pipelines(reference_pipeline, name, solver):
    pipeline = reference_pipeline(name)
    previous = None
    for rate in (0.5, 2, 8, 20, 40, 100, 250):
        problem = problem_from_pipeline(pipeline, rate, current=previous, switch_interval_s=10.0 if previous else None)
        assert_agrees(problem, solver)
        previous = solve(problem, solver).configuration


def test_the_independent_optimum_is_the_hand_worked_one():
    # one stage, two variants, no batching: 10 rps; v-fast carries 6 rps per 1-core replica, v-good
    # 4 rps per 2-core replica. alpha 10, beta 1: v-fast needs 2 replicas (2 cores), 10 * 0.6 - 2 = 4;
    # v-good needs 3 replicas (6 cores), 10 * 0.9 - 6 = 3. v-fast wins, with 2 replicas.
    fast = Option("v-fast", 1, 1, 1 / 6, 6.0, 0.6, 0.0)
    good = Option("v-good", 1, 2, 1 / 4, 4.0, 0.9, 1.0)
    problem = Problem(stages=(StageOptions("s", (fast, good)),), rate_rps=10.0, sla_s=1.0, alpha=10.0, beta=1.0,
                      gamma=0.0, scaling_cap=10)
    assert optimum(problem).choice == (("v-fast", 1, 2),)
    assert optimum(problem).objective == pytest.approx(4.0)
    # alpha 30: v-good 27 - 6 = 21 beats v-fast 18 - 2 = 16
    assert optimum(Problem(**{**problem.__dict__, "alpha": 30.0})).choice == (("v-good", 1, 3),)
    # a cap of 2 replicas: v-good carries at most 8 rps, v-fast 12: only v-fast is possible
    assert optimum(Problem(**{**problem.__dict__, "alpha": 30.0, "scaling_cap": 2})).choice == (("v-fast", 1, 2),)
    # a cap of 1: nothing carries 10 rps
    assert not optimum(Problem(**{**problem.__dict__, "scaling_cap": 1})).feasible
