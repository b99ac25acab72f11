"""The adaptation loop: every interval read the monitor, predict, decide, apply, log.

It sees only the backend interface (``clock``, ``monitor``, ``start``/``apply``/``stop``), the
predictor and the policy, so the simulator and a live deployment are driven by the same code.
Nothing a policy, a predictor or the monitor does stops the loop: an exception or a missing
reading keeps the running configuration and is logged in the decision row.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ipa.backends.base import Backend, RunOutput
from ipa.configuration import Configuration, Decision
from ipa.errors import ConfigError, IpaError
from ipa.policies.observation import DEFAULT_INTERVAL_S, Observation
from ipa.predictors.uncertainty import CALIBRATION, quantile_factor, settle

MONITOR_WINDOW_S = 120    # fact 23: the adapter looks 2 minutes back

# What happened at one adaptation step (the decisions.csv `status` column).
DECIDED, NO_DATA, POLICY_ERROR, APPLY_ERROR = "decided", "no_data", "policy_error", "apply_error"


@dataclass(frozen=True)
class DecisionRecord:
    """One adaptation step, as decisions.csv logs it."""

    time_s: float
    status: str                        # DECIDED, NO_DATA, POLICY_ERROR or APPLY_ERROR
    observed_rps: float                # peak per-second arrivals of the last interval (nan: none)
    predicted_rps: float               # the load provisioned for (margin applied; nan: none)
    configuration: Configuration       # what runs after this step
    applied: bool                      # whether the backend was asked to change
    changes: int                       # knobs changed by this step
    decision: Decision | None          # the policy's answer (None when it gave none)
    reason: str
    solve_time_s: float                # wall-clock time of the predictor + policy call

    @property
    def feasible(self) -> bool:
        return self.decision is not None and self.decision.feasible and self.status == DECIDED


def first_interval_peak(send_times_s: Sequence[float], interval_s: float) -> float:
    """The peak per-second count of the first interval: the load the pipeline is brought up for
    (as an experiment starts from a deployment sized for its starting load)."""
    counts: dict[int, int] = {}
    for t in send_times_s:
        if t >= interval_s:
            break
        counts[int(t)] = counts.get(int(t), 0) + 1
    return float(max(counts.values(), default=0))


class AdapterLoop:
    """One run: ``run(...)`` brings the backend up, adapts until ``duration_s``, stops it."""

    def __init__(self, backend: Backend, pipeline, policy, predictor, *, interval_s: int = DEFAULT_INTERVAL_S,
                 window_s: int = MONITOR_WINDOW_S, margin: float | None = None,
                 progress: Callable[[float, float, list[DecisionRecord]], None] | None = None):
        if int(interval_s) != interval_s or interval_s < 1:
            # whole seconds, so that decisions line up with the per-second series
            raise ConfigError(f"adaptation interval must be a whole number of seconds >= 1, got {interval_s!r}")
        if int(window_s) != window_s or window_s < 1:
            raise ConfigError(f"monitoring window must be a whole number of seconds >= 1, got {window_s!r}")
        self.backend = backend
        self.pipeline = pipeline
        self.policy = policy
        self.predictor = predictor
        self.interval_s = int(interval_s)
        self.window_s = int(window_s)
        self.margin = float(pipeline.params.get("predictor_margin", 0.0) if margin is None else margin)
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise ConfigError(f"predictor margin must be a finite number >= 0, got {self.margin!r}")
        self.progress = progress
        self.records: list[DecisionRecord] = []
        # ipa-plus: provision for a quantile of the forecasts' recent errors instead of the margin
        self.quantile = getattr(policy, "forecast_quantile", None)
        self._pending: list[tuple[float, float]] = []  # (time, forecast) not yet settled
        self._ratios: list[float] = []                 # realised / forecast peaks, newest last

    def _decide(self, t: float, rate: float, current: Configuration | None, state, stages=None):
        """Call the policy; returns (decision or None, state, reason, wall seconds)."""
        started = time.perf_counter()
        try:
            observation = Observation(time_s=t, rate_rps=rate, current=current, stages=stages or {})
            decision, state = self.policy(observation, state)
            if not isinstance(decision, Decision):
                raise TypeError(f"policy returned {type(decision).__name__}, not a Decision")
            return decision, state, "", time.perf_counter() - started
        except Exception as e:  # noqa: BLE001 - a policy failure must never stop the loop
            return None, state, f"policy error: {type(e).__name__}: {e}", time.perf_counter() - started

    def run(self, send_times_s: Sequence[float], duration_s: float, initial_rate_rps: float) -> RunOutput:
        """Bring the pipeline up for ``initial_rate_rps`` (the decision at time 0), adapt every
        interval until ``duration_s``, then stop the backend and return its records."""
        state = self.policy.initial_state()
        rate0 = initial_rate_rps * (1.0 + self.margin)
        decision, state, error, took = self._decide(0.0, rate0, None, state)
        if decision is None:
            raise IpaError(f"the policy cannot give an initial configuration: {error}")
        current = decision.configuration
        self.records.append(DecisionRecord(0.0, DECIDED, math.nan, rate0, current, True,
                                           current.changes_from(None), decision,
                                           decision.reason or "initial configuration", took))
        backend = self.backend
        backend.start(self.pipeline, current, send_times_s)
        try:
            t = float(self.interval_s)
            while t < duration_s:
                backend.clock.sleep_until(t)
                current, state = self._step(t, current, state)
                if self.progress is not None:
                    self.progress(t, duration_s, self.records)
                t += self.interval_s
            backend.clock.sleep_until(float(duration_s))
        except BaseException:
            # cut short: never leave a live backend's processes behind, and stop at once where the
            # backend can (a live run's stop() would first replay the rest of the trace)
            getattr(backend, "abort", backend.stop)()
            raise
        return backend.stop()

    def _provision(self, t: float, forecast: float, history, until_s: float) -> float:
        """The load to provision for: the forecast with the fixed margin, or (ipa-plus) times the
        chosen quantile of recent realised / forecast ratios once there are enough of them."""
        if self.quantile is None:
            return forecast * (1.0 + self.margin)
        ratios, self._pending = settle(self._pending, history, until_s)
        self._ratios = (self._ratios + ratios)[-CALIBRATION:]
        self._pending.append((t, forecast))
        factor = quantile_factor(self._ratios, self.quantile)
        return forecast * (1.0 + self.margin) if factor is None else forecast * factor

    def _step(self, t: float, current: Configuration, state):
        reading = self.backend.monitor.read(self.window_s)
        if reading is None:
            self.records.append(DecisionRecord(t, NO_DATA, math.nan, math.nan, current, False, 0, None,
                                               "no monitor data: keeping the configuration", 0.0))
            return current, state
        history = list(reading.arrivals_per_s)
        observed = float(max(history[-self.interval_s:])) if history else math.nan
        started = time.perf_counter()
        try:
            predicted = self._provision(t, float(self.predictor.predict(history)), history, reading.until_s)
        except Exception as e:  # noqa: BLE001 - like a policy error: keep running
            self.records.append(DecisionRecord(t, POLICY_ERROR, observed, math.nan, current, False, 0, None,
                                               f"predictor error: {type(e).__name__}: {e}",
                                               time.perf_counter() - started))
            return current, state
        predict_s = time.perf_counter() - started
        decision, state, error, took = self._decide(t, predicted, current, state, reading.stages)
        if decision is None:
            self.records.append(DecisionRecord(t, POLICY_ERROR, observed, predicted, current, False, 0, None,
                                               error + "; keeping the configuration", predict_s + took))
            return current, state
        chosen = decision.configuration
        changes = chosen.changes_from(current)
        if changes:
            try:
                self.backend.apply(chosen)
            except IpaError as e:
                # a backend that changed some stages before failing says where it is (ApplyFailed)
                reached = getattr(e, "reached", None) or current
                kept = "keeping the configuration" if reached == current else "some stages changed"
                self.records.append(DecisionRecord(t, APPLY_ERROR, observed, predicted, reached, False, 0, decision,
                                                   f"apply failed: {e}; {kept}", predict_s + took))
                return reached, state
        self.records.append(DecisionRecord(t, DECIDED, observed, predicted, chosen, bool(changes), changes,
                                           decision, decision.reason, predict_s + took))
        return chosen, state
