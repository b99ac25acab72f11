"""The discrete-event simulator: queueing, batching, drops, configuration changes, conservation,
determinism, and sanity on the synthetic and (when profiled) the reference pipelines."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipa.backends.sim import SimBackend
from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError
from ipa.pipelines import Pipeline, load_catalogue, load_pipeline
from ipa.pipelines.profiles import read_profile_csv
from ipa.sim import DROPPED, LATE, OK, PENDING, Simulator
from ipa.pipelines.latency import Z_99, batch_latency_params, lognormal_params
from ipa.workloads import load_workload

REFERENCE = ("video", "audio-qa", "audio-sent", "sum-qa", "nlp")
_TINY_PIPELINE: list[Pipeline] = []  # filled once for the hypothesis test (function fixtures do not mix with @given)


@pytest.fixture(autouse=True, scope="module")
def _tiny_for_hypothesis(tmp_path_factory):
    from conftest import write_tiny_catalogue
    pp, vv, pr = write_tiny_catalogue(tmp_path_factory.mktemp("tiny"))
    _TINY_PIPELINE[:] = [Pipeline(load_catalogue(pp, vv).pipeline("tiny-video"), read_profile_csv(pr))]


def config(pipeline: Pipeline, **stages: tuple[str, int, int]) -> Configuration:
    """config(p, detector=("det-s", batch, replicas), ...)"""
    return Configuration({name: StageConfig(v, b, n, pipeline.base_cores(name, v)) for name, (v, b, n) in stages.items()})


@pytest.fixture
def exact_pipeline(tiny_files):
    """tiny-video with p99 == p50 in every profile row: service times are exactly the p50."""
    pipelines, variants, profiles = tiny_files
    rows = list(csv.DictReader(open(profiles)))
    with open(profiles, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, latency_p99_s=r["latency_p50_s"]))

    def make(name="tiny-video", **overrides):
        cat = load_catalogue(pipelines, variants, overrides={name: overrides} if overrides else None)
        return Pipeline(cat.pipeline(name), read_profile_csv(profiles))
    return make


def p50(pipeline, stage, variant, batch=1):
    return pipeline.stage_profile(stage, variant).rows[batch].latency_p50_s


def run_sim(pipeline, initial, times, seed=0, changes=()):
    """Run to the end (applying (time, configuration) changes on the way) and drain."""
    sim = Simulator(pipeline, times, seed)
    sim.start(initial)
    for t, c in changes:
        sim.run_until(t)
        sim.apply(c)
    sim.drain()
    return sim


# --- latency model ------------------------------------------------------------------------

def test_lognormal_fit_reproduces_the_profiled_median_and_p99():
    mu, sigma = lognormal_params(0.1, 0.2)
    assert math.exp(mu) == pytest.approx(0.1)
    assert math.exp(mu + Z_99 * sigma) == pytest.approx(0.2)
    draws = np.exp(mu + sigma * np.random.default_rng(0).standard_normal(200_000))
    assert np.percentile(draws, 50) == pytest.approx(0.1, rel=0.01)
    assert np.percentile(draws, 99) == pytest.approx(0.2, rel=0.02)


def test_partial_batch_latency_is_interpolated_between_profiled_batches(tiny_pipeline):
    prof = tiny_pipeline.stage_profile("detector", "det-s")
    params = batch_latency_params(prof, 8)
    for b in (1, 2, 4, 8):
        assert math.exp(params[b][0]) == pytest.approx(prof.rows[b].latency_p50_s)
    assert math.exp(params[3][0]) == pytest.approx((prof.rows[2].latency_p50_s + prof.rows[4].latency_p50_s) / 2)


def test_extrapolation_past_the_profiled_batches_never_falls():
    # a noisy profile whose batch-2 latency is below batch 1 must not extrapolate to <= 0 at batch 8
    from ipa.pipelines.pipeline import StageProfile
    from ipa.pipelines.profiles import ProfileRow
    row = lambda b, lat: ProfileRow("k", b, 1, lat, lat * 1.2, lat, 0.0, b / lat, 1.0, 1.0, "measured")
    prof = StageProfile("s", "v", 0.5, 1.0, 1, True, {1: row(1, 0.30), 2: row(2, 0.10)})
    params = batch_latency_params(prof, 8)
    medians = [math.exp(mu) for mu, _ in params[1:]]
    assert all(m > 0 for m in medians)
    assert medians[2:] == [pytest.approx(0.10)] * 6  # held at the last profiled value


# --- queueing, batching, drops ------------------------------------------------------------

def test_fifo_service_times_are_exact_with_a_degenerate_distribution(exact_pipeline):
    p = exact_pipeline()
    sim = run_sim(p, config(p, detector=("det-s", 1, 1), classifier=("cls-s", 1, 1)), [0.0, 0.0, 0.0])
    d, c = p50(p, "detector", "det-s"), p50(p, "classifier", "cls-s")
    # one detector replica serves them one after another; the classifier is faster than it
    assert sim.done == pytest.approx([d + c, 2 * d + c, 3 * d + c])
    assert list(sim.status) == [OK, OK, OK]


def test_each_stages_load_per_second_is_what_fifo_arithmetic_gives(exact_pipeline):
    # 30 requests at t=0 on one detector replica serving each in exactly d seconds: by the end of
    # second 0 it finished floor(1 / d) of them (their service time is that second's busy time);
    # the k-th leaves at k * d, so second s holds 30 requests less one for each (k * d, s + 1]
    # already gone; the classifier has seen the finished ones
    p = exact_pipeline()
    sim = Simulator(p, [0.0] * 30, 0)
    sim.start(config(p, detector=("det-s", 1, 1), classifier=("cls-s", 1, 2)))
    sim.run_until(2.0)
    d = p50(p, "detector", "det-s")
    done_in_0, done_in_1 = math.floor(1 / d), math.floor(2 / d) - math.floor(1 / d)
    series = sim.stage_series(0, 2)
    busy, ongoing, ready = series["detector"]
    assert busy == pytest.approx([done_in_0 * d, done_in_1 * d])
    left = [k * d for k in range(1, done_in_0 + done_in_1 + 1)]
    mean_at = [30 - sum(min(1.0, max(0.0, s + 1 - t)) for t in left) for s in (0, 1)]
    assert ongoing == pytest.approx(mean_at)
    assert ready == [1, 1]
    assert series["classifier"][2] == [2, 2]
    # nothing recorded for seconds not over yet
    assert sim.stage_series(0, 5)["detector"][1] == ongoing


def test_a_lone_request_waits_the_batching_timeout_then_leaves_in_a_partial_batch(exact_pipeline):
    p = exact_pipeline()
    prof = p.stage_profile("detector", "det-s")
    sim = run_sim(p, config(p, detector=("det-s", 4, 2), classifier=("cls-s", 1, 1)), [1.0])
    timeout = 3 / (2 * prof.throughput(4))  # (b - 1) / (n * h(b))
    assert sim.done[0] == pytest.approx(1.0 + timeout + p50(p, "detector", "det-s", 1) + p50(p, "classifier", "cls-s"))


def test_a_full_batch_leaves_at_once_and_takes_the_batch_latency(exact_pipeline):
    p = exact_pipeline()
    sim = run_sim(p, config(p, detector=("det-s", 4, 1), classifier=("cls-s", 4, 1)), [0.5] * 4)
    expected = 0.5 + p50(p, "detector", "det-s", 4) + p50(p, "classifier", "cls-s", 4)
    assert sim.done == pytest.approx([expected] * 4)


def test_requests_older_than_the_drop_limit_are_dropped_counted_and_never_served(exact_pipeline):
    p = exact_pipeline()
    d = p50(p, "detector", "det-s")
    n = int(p.drop_limit_s / d) + 20  # one replica cannot serve them all within the drop limit
    sim = run_sim(p, config(p, detector=("det-s", 1, 1), classifier=("cls-s", 1, 1)), [0.0] * n)
    status = list(sim.status)
    dropped = [i for i, s in enumerate(status) if s == DROPPED]
    assert dropped and PENDING not in status
    served = [i for i, s in enumerate(status) if s in (OK, LATE)]
    # FIFO: the first ones are served, the rest are dropped once they reach the head, too old
    assert max(served) < min(dropped)
    assert all(sim.done[i] > p.drop_limit_s for i in dropped)
    assert len(served) == pytest.approx(p.drop_limit_s / d, abs=2)
    # at the detector's queue, but for the one whose detector batch ended past the limit: it is
    # dropped as it would enter the classifier
    assert sum(sim.where[i] == 0 for i in dropped) >= len(dropped) - 1


def test_late_means_finished_after_the_sla(exact_pipeline):
    p = exact_pipeline()
    d = p50(p, "detector", "det-s")
    n = int(p.sla_s / d) + 3
    sim = run_sim(p, config(p, detector=("det-s", 1, 1), classifier=("cls-s", 1, 1)), [0.0] * n)
    for i in range(n):
        if sim.status[i] in (OK, LATE):
            assert (sim.status[i] == LATE) == (sim.done[i] > p.sla_s)
    assert LATE in sim.status and OK in sim.status


# --- configuration changes ------------------------------------------------------------------

def test_a_variant_switch_loads_new_replicas_while_the_old_ones_serve(exact_pipeline):
    p = exact_pipeline()
    old = config(p, detector=("det-s", 1, 1), classifier=("cls-s", 1, 1))
    new = config(p, detector=("det-l", 1, 2), classifier=("cls-s", 1, 1))
    load = p.stage_profile("detector", "det-l").load_time_s
    times = list(np.arange(0, 20, 0.5))
    sim = run_sim(p, old, times, changes=[(5.0, new)])
    det_l = 2 * p.base_cores("detector", "det-l")
    cls = p.base_cores("classifier", "cls-s")
    det_s = p.base_cores("detector", "det-s")
    cores = dict(sim.cores_log)
    assert cores[0.0] == det_s + cls
    assert cores[5.0] == det_s + cls + det_l  # new replicas count from the moment they are requested
    assert sim.cores_log[-1][1] == det_l + cls  # the old one is gone in the end
    # the old replica goes at the switch (5 + load time) or when its batch there is done
    gone_at = [t for t, c in sim.cores_log if c == det_l + cls][0]
    assert 5.0 + load <= gone_at <= 5.0 + load + p50(p, "detector", "det-s")
    assert ("detector", "det-l") in [(s, v) for t, s, v in sim.serving_log if t == pytest.approx(5.0 + load)]
    # service never stopped: every request is on time (capacity was ample throughout)
    assert set(sim.status) == {OK}


def test_scale_down_frees_idle_replicas_at_once(exact_pipeline):
    p = exact_pipeline()
    big = config(p, detector=("det-s", 1, 4), classifier=("cls-s", 1, 2))
    small = config(p, detector=("det-s", 1, 1), classifier=("cls-s", 1, 1))
    sim = run_sim(p, big, [0.1, 3.0], changes=[(2.0, small)])
    assert dict(sim.cores_log)[2.0] == small.total_cores
    assert set(sim.status) == {OK}


def test_a_superseded_switch_drops_the_replicas_still_loading(exact_pipeline):
    p = exact_pipeline()
    a = config(p, detector=("det-s", 1, 1), classifier=("cls-s", 1, 1))
    b = config(p, detector=("det-l", 1, 3), classifier=("cls-s", 1, 1))
    sim = run_sim(p, a, [0.0, 1.5], changes=[(1.0, b), (1.2, a)])
    assert dict(sim.cores_log)[1.2] == a.total_cores  # det-l replicas were loading: gone at once
    assert [v for _, s, v in sim.serving_log if s == "detector"] == ["det-s"]


def test_the_old_variant_serves_until_the_new_replicas_are_up_even_after_a_rescale(exact_pipeline):
    p = exact_pipeline()
    a = config(p, detector=("det-s", 1, 1), classifier=("cls-s", 1, 1))
    b3 = config(p, detector=("det-l", 1, 3), classifier=("cls-s", 1, 1))
    b2 = config(p, detector=("det-l", 1, 2), classifier=("cls-s", 1, 1))
    load = p.stage_profile("detector", "det-l").load_time_s
    # det-l asked for at 1.0, scaled down at 1.5 while still loading: two keep loading until 1 + load
    sim = run_sim(p, a, list(np.arange(0, 10, 0.25)), changes=[(1.0, b3), (1.5, b2)])
    switch = [t for t, s, v in sim.serving_log if s == "detector" and v == "det-l"]
    assert switch == [pytest.approx(1.0 + load)]
    det_s = p.base_cores("detector", "det-s")
    # det-s stays provisioned (and serving) until then, so nothing waits for a replica to load
    assert all(c >= b2.total_cores + det_s for t, c in sim.cores_log if 1.5 <= t < 1.0 + load)
    assert set(sim.status) == {OK}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), rate=st.floats(1, 60),
       steps=st.lists(st.tuples(st.sampled_from(["det-s", "det-m", "det-l"]), st.sampled_from([1, 2, 4, 8]),
                                st.integers(1, 4), st.sampled_from(["cls-s", "cls-m", "cls-l"]), st.integers(1, 3)),
                      min_size=1, max_size=6))
def test_any_sequence_of_changes_conserves_requests_and_ends_at_the_last_configuration(seed, rate, steps):
    p = _TINY_PIPELINE[0]
    times = np.sort(np.random.default_rng(seed).random(int(rate * 30)) * 30)
    configs = [config(p, detector=(d, b, n), classifier=(c, 1, m)) for d, b, n, c, m in steps]
    sim = run_sim(p, configs[0], times, seed=seed, changes=[(3.0 * (i + 1), c) for i, c in enumerate(configs[1:])])
    assert PENDING not in sim.status and len(sim.status) == len(times)
    assert all(c >= 0 for _, c in sim.cores_log)
    assert sim.cores_log[-1][1] == configs[-1].total_cores
    assert [t for t, _ in sim.cores_log] == sorted(t for t, _ in sim.cores_log)
    served = [sim.done[i] - times[i] for i in range(len(times)) if sim.status[i] in (OK, LATE)]
    assert all(x > 0 for x in served)


def test_invalid_configurations_are_refused(tiny_pipeline):
    sim = Simulator(tiny_pipeline, [0.0], 0)
    with pytest.raises(ConfigError, match="batch 3"):
        sim.start(config(tiny_pipeline, detector=("det-s", 3, 1), classifier=("cls-s", 1, 1)))
    with pytest.raises(ConfigError, match="stages"):
        sim.start(config(tiny_pipeline, detector=("det-s", 1, 1)))
    with pytest.raises(Exception, match="no variant"):
        sim.start(config(tiny_pipeline, detector=("det-s", 1, 1), classifier=("det-s", 1, 1)))


# --- backend: monitor, conservation, determinism ----------------------------------------------

def test_monitor_exposes_whole_past_seconds_with_the_scrape_lag(tiny_pipeline):
    times = [0.2, 0.5, 1.1, 2.9, 2.95, 3.5, 7.0]
    b = SimBackend(seed=0, scrape_lag_s=1.5)
    b.start(tiny_pipeline, config(tiny_pipeline, detector=("det-s", 1, 1), classifier=("cls-s", 1, 1)), times)
    b.clock.sleep_until(5.0)
    r = b.monitor.read(120)
    assert r.until_s == 3.0 and list(r.arrivals_per_s) == [2, 1, 2]  # second 3 is not scraped yet
    assert list(b.monitor.read(2).arrivals_per_s) == [1, 2]
    b.clock.sleep_until(12.0)
    assert list(b.monitor.read(120).arrivals_per_s) == [2, 1, 2, 1, 0, 0, 0, 1, 0, 0]
    out = b.stop()
    assert len(out.requests) == len(times)


@pytest.mark.parametrize("workload,replicas", [("bursty", 1), ("bursty", 3), ("steady-high", 2), ("constant-80", 2)])
def test_every_request_ends_in_exactly_one_outcome(tiny_pipeline, workload, replicas):
    w = load_workload(workload).window(0, 300)
    times = w.send_times(3)
    b = SimBackend(seed=3)
    b.start(tiny_pipeline, config(tiny_pipeline, detector=("det-m", 4, replicas), classifier=("cls-s", 2, 1)), times)
    for t in range(10, 300, 10):
        b.clock.sleep_until(t)
        if t == 150:
            b.apply(config(tiny_pipeline, detector=("det-s", 8, replicas + 1), classifier=("cls-m", 1, 2)))
    out = b.stop()
    req = out.requests
    assert len(req) == len(times)
    assert set(req.status) <= {"ok", "late", "dropped"}
    assert req.status.value_counts().sum() == len(times)
    assert np.all(np.isfinite(req.done_s)) and np.all(req.done_s >= req.intended_s)
    dropped = req[req.status == "dropped"]
    assert (dropped.latency_s > tiny_pipeline.drop_limit_s).all()
    assert dropped.detail.str.startswith("drop limit at ").all()


def test_same_seed_same_run_other_seed_other_run(tiny_pipeline):
    times = load_workload("bursty").window(0, 200).send_times(0)
    c = config(tiny_pipeline, detector=("det-m", 2, 2), classifier=("cls-m", 1, 1))

    def once(seed):
        b = SimBackend(seed=seed)
        b.start(tiny_pipeline, c, times)
        b.clock.sleep_until(100)
        b.apply(config(tiny_pipeline, detector=("det-s", 4, 2), classifier=("cls-m", 1, 1)))
        return b.stop()

    a, a2, other = once(1), once(1), once(2)
    assert a.requests.equals(a2.requests) and a.provisioned_cores == a2.provisioned_cores
    assert not a.requests.done_s.equals(other.requests.done_s)


# --- sanity: ample capacity, overload ------------------------------------------------------

def _max_throughput(pipeline: Pipeline) -> tuple[float, Configuration]:
    """The highest-throughput configuration within the caps, and its throughput."""
    stages, caps = {}, []
    for s in pipeline.stage_names:
        best = max(((p.throughput(b), p.variant, b) for p in pipeline.stage_profiles[s] for b in p.rows))
        stages[s] = (best[1], best[2], pipeline.scaling_cap)
        caps.append(best[0] * pipeline.scaling_cap)
    return min(caps), config(pipeline, **stages)


def _sanity(pipeline: Pipeline) -> None:
    top, strongest = _max_throughput(pipeline)
    # ample: a tenth of the top throughput on the strongest configuration -> nothing dropped
    light = load_workload(f"constant-{max(1.0, round(top / 10, 1))}").window(0, 60)
    b = SimBackend(seed=0)
    b.start(pipeline, strongest, light.send_times(0))
    b.clock.sleep_until(60)
    assert (b.stop().requests.status != "dropped").all()
    # above the top throughput: drops appear, and every request is still accounted for. At 1.5x
    # the queue passes the drop limit after about 2 drop limits, so overload for 4 of them.
    duration = max(30, math.ceil(4 * pipeline.drop_limit_s))
    heavy = load_workload(f"constant-{round(top * 1.5, 1)}").window(0, duration)
    times = heavy.send_times(0)
    b = SimBackend(seed=0)
    b.start(pipeline, strongest, times)
    b.clock.sleep_until(duration)
    counts = b.stop().requests.status.value_counts()
    assert counts.get("dropped", 0) > 0.1 * len(times)
    assert counts.sum() == len(times)


def test_sanity_on_the_synthetic_pipelines(make_tiny_pipeline):
    _sanity(make_tiny_pipeline("tiny-video", scaling_cap=3))
    _sanity(make_tiny_pipeline("tiny-audio", scaling_cap=3))


@pytest.mark.parametrize("name", REFERENCE)
def test_sanity_on_the_reference_pipelines(name):
    # a small replica cap keeps the overload run short (its load is 1.5x the top throughput)
    _sanity(load_pipeline(name, overrides={name: {"scaling_cap": 4}}))
