"""The `sim` backend: the discrete-event simulator (ipa/sim) behind the backend interface.

Its clock is simulated time (``sleep_until`` processes every event before the target), so the
adapter loop that drives a live deployment drives this one unchanged, ~1000x faster than real
time and deterministic for a seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ipa.backends.base import AppliedChange, RunOutput
from ipa.monitoring.reading import MonitorReading, StageSeries
from ipa.configuration import Configuration
from ipa.errors import ConfigError
from ipa.pipelines.pipeline import Pipeline
from ipa.records import REQUEST_COLUMNS
from ipa.sim.engine import DROPPED, STATUS_NAMES, Simulator



class SimClock:
    def __init__(self, backend: "SimBackend"):
        self._backend = backend

    def now(self) -> float:
        sim = self._backend.sim
        return sim.now if sim is not None else 0.0

    def sleep_until(self, t: float) -> None:
        sim = self._backend._running()
        if t > sim.now:
            sim.run_until(t)


# The live monitor's newest readable second at run time t ends at t-1: the router's arrival
# counter is stamped on whole seconds and each boundary is scraped (every 1 s) during the second
# after it (ipa.monitoring.monitor). The simulator sees the same, so the two decide alike.
DEFAULT_SCRAPE_LAG_S = 1.0


class SimMonitor:
    """Per-second arrival counts as Prometheus would give them from the router's request counter:
    whole seconds only, and only those older than the scrape lag."""

    def __init__(self, backend: "SimBackend", scrape_lag_s: float):
        self._backend = backend
        self.scrape_lag_s = float(scrape_lag_s)

    def read(self, window_s: int) -> MonitorReading | None:
        sim = self._backend._running()
        until = max(0, int(math.floor(sim.now - self.scrape_lag_s)))
        counts = self._backend._arrivals_per_s
        start = max(0, until - int(window_s))
        stages = {name: StageSeries(*series) for name, series in sim.stage_series(start, until).items()}
        return MonitorReading(float(until), counts[start:min(until, len(counts))]
                              + [0.0] * max(0, until - max(start, len(counts))), stages)


class SimBackend:
    name = "sim"

    def __init__(self, seed: int = 0, scrape_lag_s: float = DEFAULT_SCRAPE_LAG_S):
        if scrape_lag_s < 0 or not math.isfinite(scrape_lag_s):
            raise ConfigError(f"sim backend: scrape_lag_s must be a finite number >= 0, got {scrape_lag_s!r}")
        self.seed = int(seed)
        self.sim: Simulator | None = None
        self.clock = SimClock(self)
        self.monitor = SimMonitor(self, scrape_lag_s)
        self._applied: list[AppliedChange] = []
        self._arrivals_per_s: list[float] = []

    def _running(self) -> Simulator:
        if self.sim is None:
            raise RuntimeError("the sim backend is not started")
        return self.sim

    def start(self, pipeline: Pipeline, initial: Configuration, send_times_s: Sequence[float]) -> None:
        if self.sim is not None:
            raise RuntimeError("the sim backend runs one experiment; make a new one")
        sim = Simulator(pipeline, send_times_s, self.seed)
        sim.start(initial)
        self.sim = sim
        times = np.asarray(send_times_s, dtype=float)
        seconds = np.floor(times).astype(np.int64)
        self._arrivals_per_s = np.bincount(seconds, minlength=int(seconds[-1]) + 1 if seconds.size else 0
                                           ).astype(float).tolist()
        self._applied = [AppliedChange(0.0, initial, 0.0, "initial")]

    def apply(self, configuration: Configuration) -> None:
        sim = self._running()
        requested = sim.now
        complete = sim.apply(configuration)
        self._applied.append(AppliedChange(requested, configuration, complete))

    def stop(self) -> RunOutput:
        sim = self._running()
        sim.drain()
        n = len(sim.intended)
        intended = np.asarray(sim.intended, dtype=float)
        done = np.asarray(sim.done, dtype=float)
        codes = np.frombuffer(bytes(sim.status), dtype=np.uint8)
        names = np.asarray(STATUS_NAMES, dtype=object)
        detail = np.full(n, "", dtype=object)
        dropped = np.flatnonzero(codes == DROPPED)
        if dropped.size:
            where = np.frombuffer(bytes(sim.where), dtype=np.uint8)[dropped]
            stage_names = np.asarray([f"drop limit at {s}" for s in sim.pipeline.stage_names], dtype=object)
            detail[dropped] = stage_names[where]
        requests = pd.DataFrame({
            "id": np.arange(n, dtype=np.int64), "intended_s": intended, "sent_s": intended,
            "done_s": done, "status": names[codes], "latency_s": done - intended, "detail": detail,
        }, columns=list(REQUEST_COLUMNS))
        return RunOutput(requests=requests, applied=list(self._applied),
                         provisioned_cores=list(sim.cores_log), serving_variants=list(sim.serving_log))


@dataclass(frozen=True)
class SimSettings:
    """The options of `ipa run --backend sim --backend-option KEY=VALUE`."""

    seed: int = 0  # every random draw of the run (arrivals are drawn by the workload)
    scrape_lag_s: float = DEFAULT_SCRAPE_LAG_S  # the monitor sees up to t - lag, as a 1-s scrape does


SETTINGS = SimSettings


def make_backend(settings: SimSettings) -> SimBackend:
    return SimBackend(seed=settings.seed, scrape_lag_s=settings.scrape_lag_s)
