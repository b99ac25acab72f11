"""A real-mode run on a host slower than its profiles is refused before its load starts.

The verdict and the refusal are checked here on numbers worked by hand; the path through real
stage processes is in test_local_backend.py."""
from __future__ import annotations

import math

from ipa.backends.local import speed_refusal
from ipa.configuration import Configuration, StageConfig
from ipa.serving.compute import profiled_latency_s, speed_check_verdict
from ipa.serving.spec import VariantSpec

Z_99 = 2.3263478740408408


def _variant(p50_batch1: float, p50_batch2: float, p99_over_p50: float = 1.2) -> VariantSpec:
    sigma = math.log(p99_over_p50) / Z_99
    return VariantSpec("org/m", 1.0, 1, [[0.0, 0.0], [math.log(p50_batch1), sigma], [math.log(p50_batch2), sigma]], {})


def test_the_profiled_quantiles_are_the_lognormals_and_scale_past_the_largest_batch():
    v = _variant(0.2, 0.3)
    p50, p99 = profiled_latency_s(v, 1)
    assert math.isclose(p50, 0.2) and math.isclose(p99, 0.24)
    # batch 4 is beyond the profiled 2: twice the rows, twice batch 2's time
    p50, p99 = profiled_latency_s(v, 4)
    assert math.isclose(p50, 0.6) and math.isclose(p99, 0.72)


def test_a_replica_is_slower_only_when_its_median_exceeds_the_profile_by_more_than_ten_percent():
    v = _variant(0.2, 0.3)
    # median 0.219 s: 9.5 % over the profiled 0.2 s, inside the same-host repeatability
    within = speed_check_verdict([0.3, 0.21, 0.219, 0.1, 0.25], v, 1)
    assert within["median_s"] == 0.219 and math.isclose(within["ratio"], 1.095) and not within["slower"]
    # one slow batch (a neighbour's burst) does not decide it
    assert not speed_check_verdict([0.2, 0.2, 0.2, 0.2, 5.0], v, 1)["slower"]
    # median 0.221 s: 10.5 % over
    assert speed_check_verdict([0.221, 0.221, 0.3, 0.1, 0.2], v, 1)["slower"]
    # a faster host is not refused
    assert not speed_check_verdict([0.05] * 5, v, 1)["slower"]
    # compared at the batch it ran: 0.32 s is slow for batch 1, not for batch 2 (0.3 s profiled)
    assert speed_check_verdict([0.32] * 5, v, 1)["slower"]
    assert not speed_check_verdict([0.32] * 5, v, 2)["slower"]


def _check(variant: str, median_s: float, profiled_s: float, slower: bool) -> dict:
    return {"variant": variant, "batch": 1, "cores": 1, "replica": 1, "samples_s": [median_s] * 5,
            "median_s": median_s, "profiled_p50_s": profiled_s, "profiled_p99_s": profiled_s * 1.2,
            "ratio": median_s / profiled_s, "slower": slower}


def test_the_refusal_names_the_slow_stage_and_the_cores_the_first_configuration_would_need(tiny_pipeline):
    first = Configuration({"detector": StageConfig("det-m", 1, 2, 1), "classifier": StageConfig("cls-s", 1, 1, 1)})
    fine = {"detector": [_check("det-m", 0.2, 0.2, False)], "classifier": [_check("cls-s", 0.02, 0.02, False)]}
    assert speed_refusal(tiny_pipeline, first, fine) is None
    # the detector's batches take 2.6x their profile: 2 replicas carry what 2 / 2.6 did, so the
    # same throughput needs ceil(2 x 2.6) = 6, and the run 6 + the classifier's 1 = 7 cores
    assert tiny_pipeline.stage_sla_s["detector"] > 0.52
    slow = dict(fine, detector=[_check("det-m", 0.2, 0.2, False), _check("det-m", 0.52, 0.2, True)])
    message = speed_refusal(tiny_pipeline, first, slow)
    assert "stage detector (det-m" in message and "x2.6" in message and "0.52 s a batch" in message
    assert "about 6 replicas (6 cores)" in message and "needs about 7 cores" in message
    assert "provisions 3" in message and "classifier" not in message.split("At this speed")[0]
    assert "--profiles-file" in message and "ipa profile --pipeline tiny-video" in message
    # a batch slower than the stage's SLA cannot be made up with replicas
    sla = tiny_pipeline.stage_sla_s["detector"]
    too_slow = dict(fine, detector=[_check("det-m", sla * 1.5, 0.2, True)])
    assert "no replica count: one batch alone exceeds the stage's" in speed_refusal(tiny_pipeline, first, too_slow)
