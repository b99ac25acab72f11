"""The autoscalers people run today, each from its published algorithm: replicas only.

Both keep the variants and batch sizes of their first decision (FA2-low's problem solved at the
starting load: a deployment sized for its start, as every policy's is) and from then on change
only replica counts, per stage, from the stage's own load metrics (``Observation.stages``), not
from the load forecast. Each step below is a small pure function; ``hpa_rule`` and
``ray_serve_rule`` only thread them through the stages.

``hpa`` -- the Kubernetes Horizontal Pod Autoscaler on CPU utilisation
(https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/, "Algorithm
details" and "Configurable scaling behavior"):

* ``desired = ceil(ready * utilisation / target)``; no change while
  ``|utilisation / target - 1| <= tolerance`` (0.1, the controller's default).
* Replicas requested but not ready yet count as 0 % busy when the ratio says scale up, and the
  ratio is re-checked: the controller does not scale up again for load its starting pods will take.
* The recommendation applied is the highest of the last ``downscale_stabilisation_s`` (300 s) when
  it would scale down (no stabilisation up, the default ``behavior``); a scale-up adds at most
  ``max(100 %, 4 pods)`` per period (the default scale-up policies, 15 s periods; here per decision).
* ``minReplicas`` 1, ``maxReplicas`` the pipeline's scaling cap. The default target is 80 %
  (the autoscaling/v1 default, and what ``kubectl autoscale`` applies without ``--cpu-percent``).
* Utilisation is busy replica-seconds over ready replica-seconds in the last ``window_s`` (15 s,
  metrics-server's default resolution): a replica serving a batch uses all its cores.

``ray-serve`` -- Ray Serve's default autoscaling policy (``replica_queue_length_autoscaling_policy``,
https://docs.ray.io/en/latest/serve/advanced-guides/advanced-autoscaling.html):

* ``desired = ongoing / target_ongoing_requests`` where ``ongoing`` is the stage's requests, queued
  or in service, averaged over ``look_back_s`` (30 s); the default target is 2.
* Smoothing: ``ceil(running + factor * (desired - running))`` with the up- or downscaling factor
  (1.0 by default); a downscale stuck at ``running`` by rounding goes one down.
* Bounds ``[min_replicas, max_replicas]`` (1 and the scaling cap), then the delays: a change is
  made only once the same direction has been wanted for ``upscale_delay_s`` (30 s) or
  ``downscale_delay_s`` (600 s); a decision in between restarts the count (Ray counts 0.1-s control
  periods; here decisions, by their times).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from ipa.configuration import Configuration, Decision
from ipa.optimizer.problem import evaluate, picks_of
from ipa.policies.observation import Observation, PolicyState
from ipa.policies.settings import check_range, check_whole
from ipa.policies.rules import adaptive, problem_for


# --- settings, checked once when the policy is made ------------------------------------------

@dataclass(frozen=True)
class HpaSettings:
    target_utilisation: float = 0.8       # (0, 1]: the autoscaling/v1 default
    tolerance: float = 0.1                # the controller's --horizontal-pod-autoscaler-tolerance
    window_s: int = 15                    # the CPU-usage window (metrics-server resolution)
    downscale_stabilisation_s: float = 300.0
    scale_up_pods: int = 4                # default scale-up policies: +4 pods or +100 % per period,
    scale_up_percent: float = 100.0       # whichever allows more
    min_replicas: int = 1

    def check(self) -> None:
        check_range("target_utilisation", self.target_utilisation, 0, 1, low_open=True)
        check_range("tolerance", self.tolerance, 0, 1)
        check_whole("window_s", self.window_s, 1)
        check_range("downscale_stabilisation_s", self.downscale_stabilisation_s, 0, math.inf)
        check_whole("scale_up_pods", self.scale_up_pods, 0)
        check_range("scale_up_percent", self.scale_up_percent, 0, math.inf)
        check_whole("min_replicas", self.min_replicas, 1)


@dataclass(frozen=True)
class RayServeSettings:
    target_ongoing_requests: float = 2.0  # Ray >= 2.32's default (was 1 as target_num_ongoing_requests_per_replica)
    look_back_s: int = 30
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0
    min_replicas: int = 1

    def check(self) -> None:
        check_range("target_ongoing_requests", self.target_ongoing_requests, 0, math.inf, low_open=True)
        check_whole("look_back_s", self.look_back_s, 1)
        check_range("upscale_delay_s", self.upscale_delay_s, 0, math.inf)
        check_range("downscale_delay_s", self.downscale_delay_s, 0, math.inf)
        check_range("upscaling_factor", self.upscaling_factor, 0, math.inf, low_open=True)
        check_range("downscaling_factor", self.downscaling_factor, 0, math.inf, low_open=True)
        check_whole("min_replicas", self.min_replicas, 1)


# --- the Kubernetes HPA, per stage ----------------------------------------------------------

def hpa_recommendation(current: int, ready: int, utilisation: float, s: HpaSettings) -> int:
    """The replicas the controller recommends this period, before stabilisation."""
    ratio = utilisation / s.target_utilisation
    if abs(ratio - 1.0) <= s.tolerance or ready < 1:
        return current
    desired = math.ceil(ratio * ready - 1e-9)
    unready = max(0, current - ready)
    if desired > current and unready:
        # not-ready replicas count as idle: does the stage still need more with them?
        ratio = utilisation * ready / ((ready + unready) * s.target_utilisation)
        if ratio <= 1.0 + s.tolerance:
            return current
        desired = math.ceil(ratio * (ready + unready) - 1e-9)
    return desired


def hpa_stabilise(current: int, recommendation: int, recent: tuple[int, ...], s: HpaSettings,
                  max_replicas: int) -> int:
    """What the controller applies: up at once (rate-limited), down to the highest recommendation
    of the stabilisation window (``recent`` holds them, this one included), within bounds."""
    highest = max(recent) if recent else recommendation
    if recommendation > current:
        limit = max(current + s.scale_up_pods, math.floor(current * (1 + s.scale_up_percent / 100)))
        target = min(recommendation, limit)
    elif highest < current:
        target = highest
    else:
        target = current
    return max(s.min_replicas, min(max_replicas, target))


# --- Ray Serve's default policy, per stage ---------------------------------------------------

def ray_desired(ongoing: float, running: int, s: RayServeSettings) -> int:
    """Desired replicas from the stage's ongoing requests, smoothed by the scaling factors."""
    desired = ongoing / s.target_ongoing_requests
    delta = desired - running
    factor = s.upscaling_factor if delta > 0 else s.downscaling_factor
    scaled = math.ceil(running + factor * delta - 1e-9)
    if math.ceil(desired - 1e-9) < running and scaled == running:
        scaled -= 1
    return scaled


@dataclass(frozen=True)
class Streak:
    """Since when one direction has been wanted (Ray's decision counter, as a time)."""

    direction: int = 0      # +1 up, -1 down, 0 none
    since_s: float = 0.0


def ray_delay(desired: int, target: int, streak: Streak, t: float, s: RayServeSettings) -> tuple[int, Streak]:
    """Apply the up/down delays: a change once the same direction has been wanted long enough."""
    direction = (desired > target) - (desired < target)
    if direction == 0:
        return target, Streak()
    if streak.direction != direction:
        streak = Streak(direction, t)
    delay = s.upscale_delay_s if direction > 0 else s.downscale_delay_s
    if t - streak.since_s >= delay:
        return desired, Streak()
    return target, streak


# --- the rules ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ScalerState:
    """What an autoscaler carries between decisions, per stage."""

    recommendations: Mapping[str, tuple[tuple[float, int], ...]] = None  # hpa: (time, recommendation)
    streaks: Mapping[str, Streak] = None                                  # ray-serve


def initial_state(configuration: Configuration, t: float) -> ScalerState:
    """A new autoscaler's memory: the replicas it starts with count as a recommendation made
    then (the HPA controller seeds a new autoscaler's history with the current replicas), so
    the start is not scaled down before the stabilisation window has seen the load."""
    return ScalerState(recommendations={name: ((t, sc.replicas),) for name, sc in configuration.stages.items()})


def _decision(problem, configuration: Configuration, notes: list[str], path: str) -> Decision:
    picks = picks_of(problem, configuration)
    ev = evaluate(problem, picks)
    reason = "; ".join([*notes, ev.reason] if ev.reason else notes)
    return Decision(configuration, ev.feasible, reason, ev.objective, ev.accuracy, ev.cost_cores, ev.latency_s,
                    0.0, {"path": path, "changes": ev.changes})


def _with_replicas(configuration: Configuration, replicas: Mapping[str, int]) -> Configuration:
    return Configuration({name: replace(sc, replicas=replicas.get(name, sc.replicas))
                          for name, sc in configuration.stages.items()})


def _stage_readings(observation: Observation, configuration: Configuration):
    """(stage, current config, series or None) in pipeline order."""
    for name, sc in configuration.stages.items():
        yield name, sc, observation.stages.get(name)


def hpa_step(observation: Observation, configuration: Configuration, state: ScalerState, s: HpaSettings,
             max_replicas: int) -> tuple[Configuration, ScalerState, list[str]]:
    t = observation.time_s
    history = dict(state.recommendations or {})
    replicas, notes = {}, []
    for name, sc, series in _stage_readings(observation, configuration):
        utilisation = series.utilisation(s.window_s) if series is not None else None
        if utilisation is None:
            notes.append(f"stage {name}: no utilisation reading, keeping {sc.replicas} replicas")
            continue
        ready = int(series.ready[-1])
        rec = hpa_recommendation(sc.replicas, ready, utilisation, s)
        kept = tuple((ts, r) for ts, r in history.get(name, ()) if t - ts < s.downscale_stabilisation_s)
        kept += ((t, rec),)
        history[name] = kept
        replicas[name] = hpa_stabilise(sc.replicas, rec, tuple(r for _, r in kept), s, max_replicas)
    return _with_replicas(configuration, replicas), replace(state, recommendations=history), notes


def ray_serve_step(observation: Observation, configuration: Configuration, state: ScalerState,
                   s: RayServeSettings, max_replicas: int) -> tuple[Configuration, ScalerState, list[str]]:
    t = observation.time_s
    streaks = dict(state.streaks or {})
    replicas, notes = {}, []
    for name, sc, series in _stage_readings(observation, configuration):
        ongoing = series.mean_ongoing(s.look_back_s) if series is not None else None
        running = int(series.ready[-1]) if series is not None and len(series.ready) else 0
        if ongoing is None or running < 1:
            notes.append(f"stage {name}: no running replicas or ongoing-request reading, keeping {sc.replicas}")
            continue
        desired = max(s.min_replicas, min(max_replicas, ray_desired(ongoing, running, s)))
        replicas[name], streaks[name] = ray_delay(desired, sc.replicas, streaks.get(name, Streak()), t, s)
    return _with_replicas(configuration, replicas), replace(state, streaks=streaks), notes


def autoscaler_rule(step, settings):
    """A rule (observation, state, context) -> (Decision, state) around one autoscaler's step:
    the first call solves the context's (FA2-low) problem for the starting configuration."""
    def rule(observation: Observation, state: PolicyState, context) -> tuple[Decision, PolicyState]:
        if state.fixed is None:  # the first decision: size the deployment for its start
            decision, next_state = adaptive(observation, state, context)
            return decision, replace(next_state, fixed=decision.configuration,
                                     scaler=initial_state(decision.configuration, observation.time_s))
        current = observation.current or state.fixed
        configuration, scaler, notes = step(observation, current, state.scaler, settings,
                                            context.template.scaling_cap)
        problem, unusable = problem_for(observation, context)
        decision = _decision(problem, configuration, [unusable, *notes] if unusable else notes, "autoscaler")
        return decision, replace(state, decisions=state.decisions + 1, scaler=scaler)

    return rule
