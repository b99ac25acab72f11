"""Derived parameters (base cores, SLA, drop limit) and pipeline accuracy in both definitions."""
from __future__ import annotations

import math

import pytest


def test_pas_is_the_product_of_stage_accuracies(tiny_pipeline):
    acc = tiny_pipeline.accuracy({"detector": "det-m", "classifier": "cls-l"}, "pas")
    assert acc == pytest.approx(0.50 * 0.78)


def test_rank_sum_normalises_ranks_per_stage(tiny_pipeline):
    assert tiny_pipeline.accuracy({"detector": "det-s", "classifier": "cls-s"}, "rank_sum") == 0
    assert tiny_pipeline.accuracy({"detector": "det-l", "classifier": "cls-l"}, "rank_sum") == 2
    assert tiny_pipeline.accuracy({"detector": "det-m", "classifier": "cls-l"}, "rank_sum") == pytest.approx(1.5)


def test_pas_maps_wer_to_100_minus_value(make_tiny_pipeline):
    audio = make_tiny_pipeline("tiny-audio")
    assert audio.accuracy({"asr": "asr-s", "classifier": "cls-s"}) == pytest.approx(0.92 * 0.70)


def test_more_accurate_variant_never_gets_fewer_cores(make_tiny_pipeline):
    for threshold in (1, 4, 10, 30):
        p = make_tiny_pipeline("tiny-video", threshold_rps=threshold)
        for stage in p.stage_names:
            cores = [sp.base_cores for sp in p.stage_profiles[stage]]  # least accurate first
            assert cores == sorted(cores), (threshold, stage, cores)


def test_base_cores_is_the_smallest_allocation_meeting_the_threshold(make_tiny_pipeline):
    p = make_tiny_pipeline("tiny-video", threshold_rps=10, batching_cap=1)
    for stage in p.stage_names:
        floor = 1
        for sp in p.stage_profiles[stage]:
            key = p.spec.stage(stage).profile_key(sp.variant)
            ok = [c for c in p.profiles.cores(key)
                  if p.profiles.get(key, 1, c).throughput_rps >= 10
                  and p.profiles.get(key, 1, c).latency_p99_s <= p.stage_sla_s[stage]]
            expected = max(min(ok), floor) if ok else max(p.profiles.cores(key))
            assert sp.base_cores == expected
            assert sp.threshold_met == bool(ok)
            floor = sp.base_cores


def test_sla_is_factor_times_mean_batch1_latency_at_base_cores(tiny_pipeline):
    p = tiny_pipeline
    total = 0.0
    for stage in p.stages:
        lat = [p.profiles.get(stage.profile_key(v), 1, p.base_cores(stage.name, v.name)).latency_mean_s
               for v in stage.variants]
        assert p.stage_sla_s[stage.name] == pytest.approx(5 * sum(lat) / len(lat))
        total += p.stage_sla_s[stage.name]
    assert p.sla_s == pytest.approx(total)
    assert p.drop_limit_s == pytest.approx(2 * total)


def test_sla_factor_and_drop_limit_are_overridable(make_tiny_pipeline):
    base = make_tiny_pipeline("tiny-video")
    tighter = make_tiny_pipeline("tiny-video", sla_factor=2.5)
    assert tighter.sla_s < base.sla_s
    assert make_tiny_pipeline("tiny-video", drop_limit_s=7).drop_limit_s == 7


def test_batch_sizes_follow_the_batching_cap(make_tiny_pipeline):
    assert make_tiny_pipeline("tiny-video").batch_sizes("detector", "det-s") == [1, 2, 4, 8]
    assert make_tiny_pipeline("tiny-audio").batch_sizes("asr", "asr-s") == [1]


def test_unreachable_threshold_takes_the_most_cost_efficient_allocation(make_tiny_pipeline):
    # The fixture's latency is l1 * (0.4 + 0.6 b) * (s + (1 - s) / c): throughput per core,
    # b / (l1 (0.4 + 0.6 b) (s c + 1 - s)), falls with c for any s > 0, so 1 core is the most
    # efficient, and the SLA (5x the mean batch-1 latency at 1 core) admits it.
    p = make_tiny_pipeline("tiny-audio", threshold_rps=1000)
    for stage in p.stage_names:
        for sp in p.stage_profiles[stage]:
            assert not sp.threshold_met and sp.base_cores == 1


def test_a_scaled_load_scales_the_threshold(make_tiny_pipeline):
    # threshold 4 rps at load scale 1 needs more cores than 4 x 0.25 = 1 rps does
    full, quarter = make_tiny_pipeline("tiny-video"), make_tiny_pipeline("tiny-video", load_scale=0.25)
    assert quarter.threshold_rps == pytest.approx(1.0) and full.threshold_rps == pytest.approx(4.0)
    for stage in full.stage_names:
        for a, b in zip(full.stage_profiles[stage], quarter.stage_profiles[stage]):
            assert b.base_cores <= a.base_cores


def test_a_baselines_own_threshold_sets_its_base_cores_under_the_pipelines_sla(make_tiny_pipeline):
    from ipa.policies import Observation, PolicyState, make_policy

    p = make_tiny_pipeline("tiny-video", threshold_rps=10, batching_cap=1, baseline_threshold_rps=1)
    low = p.with_threshold(1)
    assert low.stage_sla_s == p.stage_sla_s  # one SLA for every policy
    for stage in p.stage_names:
        floor = 1
        for sp in low.stage_profiles[stage]:
            # the threshold rule (fact 16) at 1 rps, from the profile rows, under the pipeline's SLA
            key = p.spec.stage(stage).profile_key(sp.variant)
            ok = [c for c in p.profiles.cores(key)
                  if p.profiles.get(key, 1, c).throughput_rps >= 1
                  and p.profiles.get(key, 1, c).latency_p99_s <= p.stage_sla_s[stage]]
            assert sp.base_cores == (max(min(ok), floor) if ok else max(p.profiles.cores(key)))
            floor = sp.base_cores
    assert any(a.base_cores < b.base_cores for stage in p.stage_names
               for a, b in zip(low.stage_profiles[stage], p.stage_profiles[stage]))  # the fixture makes them differ
    # the baselines' problems offer every variant at the low-threshold allocation, IPA's at its own
    for name, source in (("fa2-low", low), ("rim", low), ("ipa", p), ("fa2-high", p)):
        template = make_policy(name, p, peak_rate_rps=2.0).context.template
        offered = {(s.name, o.variant): o.base_cores for s in template.stages for o in s.options}
        assert offered == {(s, v.name): source.base_cores(s, v.name)
                           for s in p.stage_names for v in p.spec.stage(s).variants}, name
    decision, _ = make_policy("fa2-low", p)(Observation(time_s=0.0, rate_rps=2.0), PolicyState())
    assert all(s.cores == low.base_cores(stage, s.variant) for stage, s in decision.configuration.stages.items())


def test_replica_start_is_a_floor_on_load_time(make_tiny_pipeline):
    p = make_tiny_pipeline("tiny-video", replica_start_s=8.0)
    assert all(sp.load_time_s == 8.0 for sps in p.stage_profiles.values() for sp in sps)  # fixture loads in 2 s
    assert all(sp.load_time_s == 2.0 for sps in make_tiny_pipeline("tiny-video").stage_profiles.values() for sp in sps)


@pytest.mark.parametrize("name", ["video", "audio-qa", "audio-sent", "sum-qa", "nlp"])
def test_reference_pipelines_derive_finite_parameters(reference_pipeline, name):
    p = reference_pipeline(name)
    assert math.isfinite(p.sla_s) and p.sla_s > 0
    desc = p.describe()
    for stage in desc["stages"]:
        for v in stage["variants"]:
            assert v["base_cores"] >= 1
            assert {r["batch"] for r in v["profile"]} >= {1}
            assert all(r["latency_p99_s"] >= r["latency_p50_s"] * 0.5 for r in v["profile"])
