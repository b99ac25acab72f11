"""The one interface every backend implements, so the adapter, the optimiser and the analysis
never know which backend they drive.

A run is: ``start`` -> repeatedly (``clock.sleep_until`` the next interval, ``monitor`` read,
``apply``) -> ``stop``. The simulator's clock advances simulated time (processing events up to
the target time); a live backend's clock sleeps on the wall clock.
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from ipa.configuration import Configuration
from ipa.monitoring.reading import Monitor
from ipa.pipelines.pipeline import Pipeline


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the run started."""

    def sleep_until(self, t: float) -> None:
        """Return when ``now() >= t`` (in the simulator: after processing every event before t)."""


class WallClock:
    """A live run's clock: seconds since ``t0_wall``, the instant the load starts, in epoch seconds
    (the time base of the load generator and of the Prometheus monitor). ``reset`` puts t0 on the
    next whole second at least START_MARGIN_S ahead, so that the load generator hears of it in
    time and the run's seconds are those the router's arrival counter is stamped with."""

    START_MARGIN_S = 0.5

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        now_wall, now = time.time(), time.monotonic()
        self.t0_wall = math.ceil(now_wall + self.START_MARGIN_S)
        self._t0 = now + (self.t0_wall - now_wall)

    def now(self) -> float:
        return time.monotonic() - self._t0

    def sleep_until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            time.sleep(delay)


@dataclass(frozen=True)
class AppliedChange:
    """A configuration the backend was asked to apply, when asked and when it took effect."""

    requested_at_s: float
    configuration: Configuration
    completed_at_s: float | None = None
    note: str = ""


@dataclass
class RunOutput:
    """What a backend hands back at ``stop``; written to the run folder by ipa.runs."""

    requests: "object"  # pandas.DataFrame, one row per request (see docs/run-folder.md)
    applied: list[AppliedChange] = field(default_factory=list)
    extra_files: dict[str, str] = field(default_factory=dict)  # name -> path of logs etc.
    # Step functions behind the per-second `cores` and `pas` columns, for backends that observe
    # them exactly: (time_s, total cores provisioned from then on, loading replicas included) and
    # (time_s, stage, variant serving that stage from then on). Left empty, ipa.runs derives
    # both from `applied` (cores from requested_at_s, variants from completed_at_s).
    provisioned_cores: list[tuple[float, int]] = field(default_factory=list)
    serving_variants: list[tuple[float, str, str]] = field(default_factory=list)


class Backend(Protocol):
    clock: Clock
    monitor: Monitor

    def start(self, pipeline: Pipeline, initial: Configuration, send_times_s: Sequence[float]) -> None:
        """Bring the pipeline up at ``initial`` and begin replaying the intended send times."""

    def apply(self, configuration: Configuration) -> None:
        """Move to ``configuration``; never lose a request in flight."""

    def stop(self) -> RunOutput:
        """Finish (drain or account every request), tear everything down, return the records."""

    # Optional: ``abort()`` (a run cut short by Ctrl-C, SIGTERM or an error) stops the load at once
    # and tears everything down; the adapter loop calls it instead of ``stop`` when it exists.


def write_table(path: Path, columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    """One of a backend's extra CSV files (RunOutput.extra_files); returns its path as text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
    return str(path)
