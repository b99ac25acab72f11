"""hpa and ray-serve against their published algorithms, on hand-made load steps whose replica
counts are worked out here from the documented formulas (not from the code's output), and the
oracle predictor against send times laid out by hand."""
from __future__ import annotations

import math

import pytest

from ipa.monitoring.reading import StageSeries
from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError
from ipa.policies import make_policy, policy_options
from ipa.policies.autoscalers import (HpaSettings, RayServeSettings, ScalerState, hpa_step, ray_desired,
                                      ray_serve_step)
from ipa.policies.observation import Observation
from ipa.predictors.oracle import TruePeak


def _config(replicas: int) -> Configuration:
    return Configuration({"detector": StageConfig("det-s", 1, replicas, 1)})


def _busy(utilisation: float, ready: int, ongoing: float = 0.0, seconds: int = 30) -> dict:
    """A stage whose ready replicas were busy ``utilisation`` of every second."""
    return {"detector": StageSeries([utilisation * ready] * seconds, [ongoing] * seconds, [ready] * seconds)}


def _run(step, settings, readings, start: int = 2, cap: int = 20):
    """Feed (time, stages) readings through ``step``; the replicas after each."""
    config, state, out = _config(start), ScalerState(), []
    for t, stages in readings:
        config, state, _ = step(Observation(t, 0.0, config, stages), config, state, settings, cap)
        out.append(config["detector"].replicas)
    return out


def test_hpa_follows_a_load_step_up_then_holds_through_its_downscale_window():
    s = HpaSettings()  # target 80 %, tolerance 0.1, 300 s down-stabilisation
    readings = [
        (10, _busy(0.8, 2)),    # ratio 1.0: inside the tolerance -> 2
        (20, _busy(0.85, 2)),   # ratio 1.0625, |0.0625| <= 0.1 -> 2
        (30, _busy(1.0, 2)),    # the step: ratio 1.25 -> ceil(1.25 * 2) = 3
        (40, _busy(1.0, 2)),    # 3 requested, 2 ready: the loading one counts idle,
                                # 1.0 * 2 / (3 * 0.8) = 0.83 <= 1.1 -> stay 3
        (50, _busy(1.0, 3)),    # all 3 ready, still saturated: ceil(1.25 * 3) = 4
        (60, _busy(0.2, 4)),    # load gone: ceil(0.25 * 4) = 1, but the window's highest is 4 -> 4
        (355, _busy(0.2, 4)),   # t - 60 < 300: the recommendation 4 at t=50 is 305 s old, gone;
                                # the window holds 1 (t=60) and 1 -> 1
    ]
    assert _run(hpa_step, s, readings) == [2, 2, 3, 3, 4, 4, 1]


def test_hpa_scale_up_is_limited_to_four_pods_or_double_per_period():
    s = HpaSettings(target_utilisation=0.1)
    # ratio 10 -> ceil(10 * 2) = 20, limited to max(2 + 4, 2 * 2) = 6; then max(6 + 4, 12) = 12
    assert _run(hpa_step, s, [(10, _busy(1.0, 2)), (20, _busy(1.0, 6))]) == [6, 12]


def test_hpa_never_leaves_its_bounds():
    # 1 % busy at 3 replicas: ceil(0.0125 * 3) = 1 >= minReplicas 1; saturation at the cap stays there
    assert _run(hpa_step, HpaSettings(downscale_stabilisation_s=0), [(10, _busy(0.01, 3))], start=3) == [1]
    assert _run(hpa_step, HpaSettings(), [(10, _busy(1.0, 5))], start=5, cap=5) == [5]


def test_ray_serve_scales_after_its_delays_and_a_blip_restarts_the_count():
    s = RayServeSettings()  # target 2 ongoing per replica, up after 30 s, down after 600 s
    readings = [
        (100, _busy(1, 2, ongoing=10)),  # desired 10 / 2 = 5 > 2: the up streak starts at 100
        (110, _busy(1, 2, ongoing=10)),
        (120, _busy(1, 2, ongoing=10)),
        (130, _busy(1, 2, ongoing=10)),  # wanted for 30 s -> 5 (Ray: the 4th of 3 + 1 periods)
        (140, _busy(1, 5, ongoing=2)),   # desired ceil(2 / 2) = 1 < 5: the down streak starts at 140
        (150, _busy(1, 5, ongoing=10)),  # desired 5 = target: the streak is reset
        (160, _busy(1, 5, ongoing=2)),   # down again, from 160
        (750, _busy(1, 5, ongoing=2)),   # 590 s: not yet
        (760, _busy(1, 5, ongoing=2)),   # 600 s -> 1
    ]
    assert _run(ray_serve_step, s, readings) == [2, 2, 2, 5, 5, 5, 5, 5, 1]


def test_ray_serve_smoothing_factors_move_part_of_the_way():
    up = RayServeSettings(upscaling_factor=0.5)
    # desired 5 from 2 running: ceil(2 + 0.5 * 3) = ceil(3.5) = 4
    assert ray_desired(10, 2, up) == 4
    down = RayServeSettings(downscaling_factor=0.1)
    # desired 1.5 from 3: ceil(3 - 0.15) = 3 = running while ceil(1.5) = 2 < 3 -> one down, 2
    assert ray_desired(3, 3, down) == 2
    # desired 2.9 from 3: ceil(2.9) = 3 is not below 3 -> stays 3
    assert ray_desired(5.8, 3, down) == 3


def test_ray_serve_waits_for_a_running_replica():
    stages = {"detector": StageSeries([0.0] * 30, [8.0] * 30, [0] * 30)}
    assert _run(ray_serve_step, RayServeSettings(upscale_delay_s=0), [(10, stages)]) == [2]


def test_the_policies_keep_fa2_lows_variants_and_batch_and_change_replicas_only(tiny_pipeline):
    for name in ("hpa", "ray-serve"):
        policy = make_policy(name, tiny_pipeline, options={"upscale_delay_s": 0} if name == "ray-serve" else {})
        first, state = policy(Observation(0.0, 5.0), policy.initial_state())
        low = make_policy("fa2-low", tiny_pipeline)
        expected, _ = low(Observation(0.0, 5.0), low.initial_state())
        assert first.configuration == expected.configuration
        stages = {n: StageSeries([1.0 * sc.replicas] * 30, [20.0 * sc.replicas] * 30, [sc.replicas] * 30)
                  for n, sc in first.configuration.stages.items()}
        second, _ = policy(Observation(10.0, 5.0, first.configuration, stages), state)
        for n, sc in second.configuration.stages.items():
            before = first.configuration[n]
            assert (sc.variant, sc.batch) == (before.variant, before.batch)
            assert sc.replicas > before.replicas  # saturated: both scale up


@pytest.mark.parametrize("name, options, message", [
    ("hpa", {"target_utilisation": 0}, r"target_utilisation must be a number in \(0, 1\], got 0"),
    ("hpa", {"target_utilisation": 1.5}, r"target_utilisation must be a number in \(0, 1\], got 1.5"),
    ("hpa", {"target_utilisation": "x"}, r"option target_utilisation='x' is not a number"),
    ("hpa", {"window": 10}, r"unknown option\(s\) \['window'\]; known: target_utilisation"),
    ("ray-serve", {"target_ongoing_requests": -1}, r"target_ongoing_requests must be a number > 0"),
    ("ray-serve", {"look_back_s": 0}, r"look_back_s must be a whole number >= 1"),
    ("ipa", {"target_utilisation": 0.5}, r"policy ipa takes no options"),
])
def test_bad_policy_options_name_the_option_and_its_range(name, options, message):
    with pytest.raises(ConfigError, match=message):
        policy_options(name, options)


def test_command_line_strings_are_typed_by_the_settings():
    assert policy_options("hpa", {"target_utilisation": "0.6", "window_s": "30"}) == \
        {"target_utilisation": 0.6, "window_s": 30}


class _Clock:
    def __init__(self, t: float):
        self.t = t

    def now(self) -> float:
        return self.t


def test_the_oracle_reads_the_true_peak_of_the_next_20_seconds():
    # one request a second for 40 s, plus a burst of 5 more in second 25
    times = [float(s) + 0.5 for s in range(40)] + [25.1, 25.2, 25.3, 25.4, 25.5]
    clock = _Clock(0.0)
    oracle = TruePeak(times, clock)
    assert oracle.predict([]) == 1.0          # seconds 0..19
    clock.t = 10.0
    assert oracle.predict([1.0] * 10) == 6.0  # seconds 10..29 hold the burst
    clock.t = 30.0
    assert oracle.predict([]) == 1.0          # seconds 30..39: past it
    clock.t = 60.0
    assert oracle.predict([]) == 0.0          # after the last send
    assert math.isfinite(TruePeak([], clock).predict([]))


# --- ipa-plus: its options, and the forecast-error quantile it provisions for ------------------

@pytest.mark.parametrize("options, message", [
    ({"forecast_quantile": 1.0}, r"forecast_quantile must be a number in \(0, 1\) or none, got 1.0"),
    ({"forecast_quantile": 0}, r"forecast_quantile must be a number in \(0, 1\) or none"),
    ({"switch_cost": "maybe"}, r"switch_cost='maybe' must be true or false"),
])
def test_bad_ipa_plus_options_name_the_option_and_its_range(options, message):
    with pytest.raises(ConfigError, match=message):
        policy_options("ipa-plus", options)


def test_ipa_plus_parts_switch_off_from_the_command_line(tiny_pipeline):
    assert policy_options("ipa-plus", {"switch_cost": "false", "forecast_quantile": "none"}) == \
        {"switch_cost": False, "forecast_quantile": None}
    both = make_policy("ipa-plus", tiny_pipeline, interval_s=10)
    assert both.forecast_quantile == 0.9 and both.context.template.switch_interval_s == 10.0
    neither = make_policy("ipa-plus", tiny_pipeline, options={"switch_cost": False, "forecast_quantile": None})
    assert neither.forecast_quantile is None and neither.context.template.switch_interval_s is None


def test_forecasts_settle_once_their_horizon_is_in_the_history():
    from ipa.predictors.uncertainty import quantile_factor, settle

    # history: seconds 40..99 (until 100), one request a second but 9 in second 55
    history = [9.0 if s == 55 else 1.0 for s in range(40, 100)]
    pending = [(30.0, 2.0),   # horizon 30..49 starts before the history: dropped
               (50.0, 3.0),   # 50..69 holds the 9: ratio 3
               (70.0, 2.0),   # 70..89: peak 1, ratio 0.5
               (85.0, 1.0)]   # 85..104 is not over yet: waits
    ratios, waiting = settle(pending, history, 100.0)
    assert ratios == [3.0, 0.5] and waiting == [(85.0, 1.0)]
    # the conformal rank ceil((n + 1) q): n = 9 ratios 0.1 .. 0.9, q = 0.9 -> rank 9 -> 0.9
    assert quantile_factor([k / 10 for k in range(1, 10)], 0.9) == pytest.approx(0.9)
    assert quantile_factor([k / 10 for k in range(1, 10)], 0.5) == pytest.approx(0.5)  # rank 5
    assert quantile_factor([1.0] * 5, 0.9) is None  # fewer than 6: the fixed margin applies
