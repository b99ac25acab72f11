"""What a monitor reports to the adapter, and the one method every monitor has.

The simulator's monitor and the Prometheus monitor (``ipa.monitoring.monitor``) both answer
``read(window_s)`` with a ``MonitorReading``: the per-second arrivals the adapter forecasts
from, and each stage's load (``StageSeries``) the autoscalers act on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence


@dataclass(frozen=True)
class StageSeries:
    """One stage's load, per whole second of a reading (oldest first, the newest ending at the
    reading's ``until_s``): what the utilisation- and queue-driven autoscalers (``hpa``,
    ``ray-serve``) act on, as a live stage's metrics expose it.

    ``busy_s[i]``: replica-seconds of service finished in second i (a batch's whole service time
    counts in the second it finished, as a Prometheus histogram's ``_sum`` grows);
    ``ongoing[i]``: requests at the stage, queued or in service, averaged over second i (the
    time integral's increase, live and simulated alike);
    ``ready[i]``: replicas ready to serve at the end of second i.
    """

    busy_s: Sequence[float]
    ongoing: Sequence[float]
    ready: Sequence[float]

    def utilisation(self, window_s: int) -> float | None:
        """Busy share of the ready replicas' time over the last ``window_s`` seconds (None: no
        replica was ready in them)."""
        available = float(sum(self.ready[-window_s:]))
        return float(sum(self.busy_s[-window_s:])) / available if available > 0 else None

    def mean_ongoing(self, window_s: int) -> float | None:
        recent = self.ongoing[-window_s:]
        return float(sum(recent)) / len(recent) if len(recent) else None


@dataclass(frozen=True)
class MonitorReading:
    """What the adapter may know about the recent past, as Prometheus would expose it.

    ``arrivals_per_s`` holds per-second arrival counts for whole seconds ending at ``until_s``
    (oldest first); it may be shorter than asked for at the start of a run. ``None`` from a
    monitor means no data (e.g. Prometheus down): the adapter then keeps the configuration.
    ``stages`` holds each stage's load over the same seconds where the backend measures it
    (empty where it could not be read: a policy that needs it then keeps its configuration).
    """

    until_s: float
    arrivals_per_s: Sequence[float]
    stages: Mapping[str, StageSeries] = field(default_factory=dict)


class Monitor(Protocol):
    def read(self, window_s: int) -> MonitorReading | None:
        """Per-second arrivals over the last ``window_s`` seconds, or None when unavailable."""
