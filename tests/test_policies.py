"""Policies: each baseline respects its pins, whatever the load; none raises in the loop."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError, IpaError
from ipa.optimizer import brute_force, min_replicas, problem_from_pipeline, stage_options
from ipa.policies import POLICIES, Observation, PolicyState, make_policy

RATES = (0.3, 4, 12, 35, 80, 400)  # 400 rps is beyond the tiny pipeline's caps


def run(policy, rates, start=None):
    state, current, decisions = policy.initial_state(), start, []
    for i, rate in enumerate(rates):
        decision, state = policy(Observation(time_s=10.0 * i, rate_rps=rate, current=current), state)
        decisions.append(decision)
        current = decision.configuration
    return decisions, state


def test_ipa_is_the_unpinned_optimum_at_every_step(tiny_pipeline):
    decisions, state = run(make_policy("ipa", tiny_pipeline), RATES)
    assert state.decisions == len(RATES)
    previous = None
    for rate, d in zip(RATES, decisions):
        want = brute_force(problem_from_pipeline(tiny_pipeline, rate, current=previous))
        assert d.feasible == want.feasible
        assert math.isclose(d.objective, want.objective, rel_tol=1e-7, abs_tol=1e-7)
        previous = d.configuration
    assert not decisions[-1].feasible and "throughput" in decisions[-1].reason


@pytest.mark.parametrize("name,index", [("fa2-low", 0), ("fa2-high", -1)])
def test_fa2_pins_the_least_or_most_accurate_variants(tiny_pipeline, name, index):
    want = {s: tiny_pipeline.stage_profiles[s][index].variant for s in tiny_pipeline.stage_names}
    decisions, _ = run(make_policy(name, tiny_pipeline), RATES)
    assert all(d.configuration.variants == want for d in decisions)
    assert any(d.feasible for d in decisions) and not decisions[-1].feasible
    # batch and replicas stay free: they follow the load
    assert len({tuple((s.batch, s.replicas) for s in d.configuration.stages.values()) for d in decisions}) > 1


def test_fa2_pins_follow_the_pipeline_params(make_tiny_pipeline):
    pipeline = make_tiny_pipeline("tiny-video", fa2_low={"detector": "det-m"}, fa2_high={"classifier": "cls-m"})
    low, _ = run(make_policy("fa2-low", pipeline), RATES)
    high, _ = run(make_policy("fa2-high", pipeline), RATES)
    assert all(d.configuration.variants == {"detector": "det-m", "classifier": "cls-s"} for d in low)
    assert all(d.configuration.variants == {"detector": "det-l", "classifier": "cls-m"} for d in high)


def test_rim_pins_replicas_for_the_whole_run(tiny_pipeline):
    peak = 12.0
    want = {}
    for s in stage_options(tiny_pipeline):
        best = tiny_pipeline.stage_profiles[s.name][-1].variant  # no fa2_high set: the most accurate
        one = next(o for o in s.options if o.variant == best and o.batch == 1)
        want[s.name] = min(tiny_pipeline.scaling_cap, math.ceil(peak / one.throughput_rps))
    policy = make_policy("rim", tiny_pipeline, peak_rate_rps=peak)
    assert policy.pins["replicas"] == want
    decisions, _ = run(policy, RATES)
    for d in decisions:
        assert {n: s.replicas for n, s in d.configuration.stages.items()} == want
    # variants and batch stay free
    assert len({tuple(d.configuration.variants.values()) for d in decisions}) > 1


def test_rim_replicas_follow_the_pipeline_params(make_tiny_pipeline):
    pipeline = make_tiny_pipeline("tiny-video", rim_replicas={"detector": 6, "classifier": 2})
    decisions, _ = run(make_policy("rim", pipeline), RATES)  # no peak rate needed
    assert all({n: s.replicas for n, s in d.configuration.stages.items()} == {"detector": 6, "classifier": 2}
               for d in decisions)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(rates=st.lists(st.one_of(st.floats(0.01, 1000.0), st.sampled_from([0.0, -3.0, math.nan, math.inf])),
                      min_size=1, max_size=6))
def test_pins_hold_for_any_load_sequence(tiny_pipeline, rates):
    low = make_policy("fa2-low", tiny_pipeline)
    rim = make_policy("rim", tiny_pipeline, peak_rate_rps=20)
    pinned_variants = low.pins["variants"]
    pinned_replicas = rim.pins["replicas"]
    low_decisions, _ = run(low, rates)
    rim_decisions, _ = run(rim, rates)
    for d in low_decisions:
        assert d.configuration.variants == pinned_variants
    for d in rim_decisions:
        assert {n: s.replicas for n, s in d.configuration.stages.items()} == pinned_replicas


def test_static_decides_once_and_reports_when_its_configuration_falls_short(tiny_pipeline):
    decisions, state = run(make_policy("static", tiny_pipeline), RATES)
    first = run(make_policy("ipa", tiny_pipeline), RATES[:1])[0][0]
    assert decisions[0].configuration == first.configuration == state.fixed
    assert all(d.configuration == first.configuration for d in decisions)
    assert not decisions[-1].feasible and "< load 400 rps" in decisions[-1].reason


def test_static_keeps_a_given_configuration(tiny_pipeline):
    fixed = Configuration({"detector": StageConfig("det-s", 1, 3, 1), "classifier": StageConfig("cls-s", 1, 1, 1)})
    policy = make_policy("static", tiny_pipeline)
    state = policy.initial_state(fixed=fixed)
    d, _ = policy(Observation(0.0, 10.0), state)
    assert d.configuration == fixed and d.feasible
    with pytest.raises(ConfigError, match="does not fit"):
        policy.initial_state(fixed=Configuration({"detector": StageConfig("det-xl", 1, 3, 1)}))
    with pytest.raises(ConfigError, match="only policy 'static'"):
        make_policy("ipa", tiny_pipeline).initial_state(fixed=fixed)


@pytest.mark.reliability
@pytest.mark.parametrize("name", POLICIES)
def test_unusable_rates_never_raise(tiny_pipeline, name):
    policy = make_policy(name, tiny_pipeline, peak_rate_rps=10)
    good, state = policy(Observation(0.0, 10.0), policy.initial_state())
    for rate in (math.nan, math.inf, -math.inf):
        d, state = policy(Observation(10.0, rate, good.configuration), state)
        assert not d.feasible and "not a finite number" in d.reason
        assert d.configuration == good.configuration
    for rate in (0.0, -5.0):  # no load: provision a trickle
        d, state = policy(Observation(20.0, rate, good.configuration), state)
        assert d.feasible


def test_no_load_gets_the_smallest_configuration(tiny_pipeline):
    d, _ = make_policy("ipa", tiny_pipeline)(Observation(0.0, 0.0), PolicyState())
    assert all(s.replicas == 1 and s.batch == 1 for s in d.configuration.stages.values())


def test_policies_are_pure(tiny_pipeline):
    policy = make_policy("ipa", tiny_pipeline)
    state = policy.initial_state()
    obs = Observation(0.0, 30.0)
    a, state_a = policy(obs, state)
    b, state_b = policy(obs, state)
    assert a.configuration == b.configuration and a.objective == b.objective
    assert state_a == state_b and state == PolicyState()


@pytest.mark.reliability
def test_bad_policy_options_fail_at_construction(tiny_pipeline, make_tiny_pipeline):
    with pytest.raises(ConfigError, match="unknown policy 'fa3'; use one of ipa, fa2-low"):
        make_policy("fa3", tiny_pipeline)
    with pytest.raises(ConfigError, match="rim needs the workload's peak rate"):
        make_policy("rim", tiny_pipeline)
    with pytest.raises(IpaError, match="no variant 'det-xl'"):
        make_policy("fa2-low", make_tiny_pipeline("tiny-video", fa2_low={"detector": "det-xl"}))
    with pytest.raises(ConfigError, match=r"rim_replicas\['detector'\] must be an integer in \[1, 20\]"):
        make_policy("rim", make_tiny_pipeline("tiny-video", rim_replicas={"detector": 0}))
    with pytest.raises(ConfigError, match="unknown solver"):
        make_policy("ipa", tiny_pipeline, solver="glpk")
    with pytest.raises(ConfigError, match="below the fastest possible"):
        make_policy("ipa", tiny_pipeline, sla_s=0.001)


@pytest.mark.parametrize("name", ["fa2-low", "fa2-high", "rim"])
def test_reference_baselines_respect_their_pins(reference_pipeline, name):
    pipeline = reference_pipeline("video")
    policy = make_policy(name, pipeline, peak_rate_rps=12)
    decisions, _ = run(policy, (3, 12, 34, 60))
    for d in decisions:
        if name == "rim":
            assert {n: s.replicas for n, s in d.configuration.stages.items()} == policy.pins["replicas"]
        else:
            assert d.configuration.variants == policy.pins["variants"]


def test_rim_default_is_what_the_most_accurate_variant_needs(tiny_pipeline):
    policy = make_policy("rim", tiny_pipeline, peak_rate_rps=7.5)
    for s in stage_options(tiny_pipeline):
        best = tiny_pipeline.stage_profiles[s.name][-1].variant
        one = next(o for o in s.options if o.variant == best and o.batch == 1)
        assert policy.pins["replicas"][s.name] == min_replicas(one, 7.5)
