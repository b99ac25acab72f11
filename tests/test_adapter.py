"""The adaptation loop against a stand-in backend (a recording fake: the loop must see only the
backend interface) and stand-in policies and predictors; plus one run on the real simulator."""
from __future__ import annotations

import math

import pytest

from ipa.adapter import (APPLY_ERROR, DECIDED, NO_DATA, POLICY_ERROR, AdapterLoop, first_interval_peak)
from ipa.backends.base import RunOutput
from ipa.monitoring.reading import MonitorReading
from ipa.backends.sim import SimBackend
from ipa.configuration import Configuration, Decision, StageConfig
from ipa.errors import ConfigError
from ipa.policies import make_policy
from ipa.predictors import make_predictor


def cfg(replicas: int) -> Configuration:
    return Configuration({"a": StageConfig("v", 1, replicas, 1), "b": StageConfig("w", 1, 1, 2)})


class FakeBackend:
    """Stand-in backend: a clock that jumps, a monitor replaying scripted readings, and a log
    of what the loop asked for."""

    def __init__(self, readings=None, reject=()):
        self.t = 0.0
        self.readings = readings or {}
        self.reject = set(reject)
        self.calls: list[tuple] = []
        backend = self

        class Clock:
            def now(self):
                return backend.t

            def sleep_until(self, t):
                assert t >= backend.t, "the loop went back in time"
                backend.t = t
                backend.calls.append(("sleep_until", t))

        class Monitor:
            def read(self, window_s):
                backend.calls.append(("read", backend.t, window_s))
                if backend.t in backend.readings:
                    return backend.readings[backend.t]
                return MonitorReading(backend.t, [float(backend.t)] * 10)

        self.clock, self.monitor = Clock(), Monitor()

    def start(self, pipeline, initial, send_times):
        self.calls.append(("start", initial))

    def apply(self, configuration):
        if self.t in self.reject:
            from ipa.errors import IpaError
            raise IpaError("no such variant here")
        self.calls.append(("apply", self.t, configuration))

    def stop(self):
        self.calls.append(("stop", self.t))
        return RunOutput(requests=None)


class ScriptedPolicy:
    """Stand-in policy: replicas = ceil(rate / 10); raises at the times in ``fail_at``."""

    def __init__(self, fail_at=()):
        self.fail_at = set(fail_at)
        self.seen = []

    def initial_state(self):
        return 0

    def __call__(self, obs, state):
        self.seen.append(obs)
        if obs.time_s in self.fail_at:
            raise RuntimeError("solver crashed")
        c = cfg(max(1, math.ceil(obs.rate_rps / 10)))
        return Decision(c, True, cost_cores=c.total_cores), state + 1


class LastValue:
    def predict(self, arrivals):
        return float(arrivals[-1]) if len(arrivals) else 0.0


class Pipe:
    params = {"predictor_margin": 0.0}
    stage_names = ("a", "b")


def run_loop(backend, policy, duration=60, **kw):
    loop = AdapterLoop(backend, kw.pop("pipeline", Pipe()), policy, kw.pop("predictor", LastValue()), **kw)
    loop.run([], duration, initial_rate_rps=kw.pop("initial", 5.0))
    return loop


def test_one_decision_every_interval_and_changes_applied_only_when_the_configuration_changes():
    backend, policy = FakeBackend(), ScriptedPolicy()
    loop = run_loop(backend, policy, duration=60)
    assert [r.time_s for r in loop.records] == [0, 10, 20, 30, 40, 50]
    assert [c for c in backend.calls if c[0] == "read"] == [("read", float(t), 120) for t in (10, 20, 30, 40, 50)]
    # LastValue predicts t (the fake monitor reports t req/s): replicas ceil(t/10) -> 1,1,2,3,4,5
    applied = [(c[1], c[2].stages["a"].replicas) for c in backend.calls if c[0] == "apply"]
    assert applied == [(20.0, 2), (30.0, 3), (40.0, 4), (50.0, 5)]
    assert [r.applied for r in loop.records] == [True, False, True, True, True, True]
    assert backend.calls[0] == ("start", cfg(1)) and backend.calls[-1] == ("stop", 60)
    assert ("sleep_until", 60) in backend.calls  # runs the workload to its end before stopping


def test_the_predictor_margin_scales_the_rate_the_policy_sees():
    pipe = Pipe()
    pipe.params = {"predictor_margin": 0.2}
    policy = ScriptedPolicy()
    loop = run_loop(FakeBackend(), policy, duration=30, pipeline=pipe)
    assert [o.rate_rps for o in policy.seen] == pytest.approx([6.0, 12.0, 24.0])
    assert loop.records[1].observed_rps == 10.0 and loop.records[1].predicted_rps == pytest.approx(12.0)


def test_no_monitor_data_keeps_the_configuration_and_is_logged():
    backend = FakeBackend(readings={30.0: None})
    loop = run_loop(backend, ScriptedPolicy(), duration=50)
    row = loop.records[3]
    assert row.time_s == 30 and row.status == NO_DATA and not row.applied
    assert row.configuration == loop.records[2].configuration
    assert loop.records[4].status == DECIDED  # and the loop went on


def test_a_policy_error_is_logged_and_never_stops_the_loop():
    backend, policy = FakeBackend(), ScriptedPolicy(fail_at={20.0})
    loop = run_loop(backend, policy, duration=40)
    row = loop.records[2]
    assert row.status == POLICY_ERROR and "solver crashed" in row.reason and not row.feasible
    assert row.configuration == loop.records[1].configuration
    assert [r.status for r in loop.records] == [DECIDED, DECIDED, POLICY_ERROR, DECIDED]


def test_a_predictor_error_and_a_refused_apply_keep_the_configuration():
    class Broken:
        def predict(self, arrivals):
            raise ValueError("bad history")

    loop = run_loop(FakeBackend(), ScriptedPolicy(), duration=20, predictor=Broken())
    assert loop.records[1].status == POLICY_ERROR and "predictor error" in loop.records[1].reason
    backend = FakeBackend(reject={20.0})
    loop = run_loop(backend, ScriptedPolicy(), duration=30)
    assert loop.records[2].status == APPLY_ERROR and loop.records[2].configuration == cfg(1)


def test_a_partly_applied_change_becomes_the_loops_configuration():
    # the backend changed one stage, then failed, and says where it is: the next decision starts
    # there, so a decision that goes back to the old configuration is applied, not skipped
    from ipa.errors import ApplyFailed

    half = Configuration({"a": StageConfig("m", 1, 3, 1), "b": StageConfig("m", 1, 1, 1)})

    class HalfWay(FakeBackend):
        def apply(self, configuration):
            if self.t == 20.0:
                raise ApplyFailed("stage b: injected", reached=half)
            super().apply(configuration)

    backend = HalfWay()
    readings = {20.0: MonitorReading(20.0, [25.0] * 10), 30.0: MonitorReading(30.0, [5.0] * 10)}
    backend.readings = readings
    loop = run_loop(backend, ScriptedPolicy(), duration=40)
    assert loop.records[2].status == APPLY_ERROR and loop.records[2].configuration == half
    assert "some stages changed" in loop.records[2].reason
    # at 30 s the policy wants cfg(1) again: the loop's configuration was the half-way one, so it applies
    assert ("apply", 30.0, cfg(1)) in backend.calls


def test_the_loop_stops_the_backend_when_something_unexpected_escapes():
    backend = FakeBackend()

    def boom(t, duration, records):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_loop(backend, ScriptedPolicy(), duration=30, progress=boom)
    assert backend.calls[-1][0] == "stop"


def test_bad_intervals_are_refused():
    with pytest.raises(ConfigError, match="whole number"):
        AdapterLoop(FakeBackend(), Pipe(), ScriptedPolicy(), LastValue(), interval_s=2.5)
    with pytest.raises(ConfigError):
        AdapterLoop(FakeBackend(), Pipe(), ScriptedPolicy(), LastValue(), interval_s=0)


def test_first_interval_peak():
    assert first_interval_peak([0.1, 0.2, 1.5, 9.9, 10.0, 10.1, 10.2], 10) == 2.0
    assert first_interval_peak([], 10) == 0.0


def test_the_real_policy_drives_the_simulator(tiny_pipeline):
    from ipa.workloads import load_workload

    times = load_workload("step-5-30").window(500, 200).send_times(0)  # the step is at 100 s
    loop = AdapterLoop(SimBackend(seed=0), tiny_pipeline, make_policy("ipa", tiny_pipeline), make_predictor("max"))
    out = loop.run(times, 200, first_interval_peak(times, 10))
    assert len(loop.records) == 20 and all(r.status == DECIDED for r in loop.records)
    # the load steps up: the configuration must follow it to more throughput
    first, last = loop.records[1].configuration, loop.records[-1].configuration
    assert last != first and loop.records[-1].predicted_rps > loop.records[1].predicted_rps
    assert len(out.requests) == len(times)
