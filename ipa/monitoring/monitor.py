"""The adapter's view of the live pipeline: per-second arrivals read from Prometheus (PromQL).

IPA reads the per-second rate of the router's request counter (fact 23). The router exposes that
counter as of the last whole wall-clock second, stamped with that second
(``ipa_router_requests_whole_seconds_total``, see ipa.serving.metrics.WholeSecondCounter), so
the raw samples of one range-vector query sit on second boundaries and their differences are
the exact count of each second, whatever the scrape's phase. A run's clock starts on a whole
second (``ipa.backends.base.WallClock``), so those seconds are the run's seconds, as in the simulator.
The newest second readable at run time t is the one ending at t-1: its boundary is scraped
during the second after it (the simulator's ``scrape_lag_s`` of 1 s). When that scrape has not
landed yet the reading ends a second earlier; a boundary a scrape slipped past for good is
noted in the monitor's log and its two seconds share their count.
Anything that is not clean data (Prometheus unreachable, an error, a gap in the samples, NaN)
gives ``None``: the adapter then keeps its configuration rather than act on a hole. After an
outage the reading restarts from the first fresh sample (a shorter history, as at a run's start).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable, Sequence

from ipa.monitoring.reading import MonitorReading

ARRIVALS_METRIC = "ipa_router_requests_whole_seconds_total"
# each stage's load, for the autoscalers (ipa.monitoring.reading.StageSeries): busy replica-seconds
# (the stages' compute-time histogram sum, a counter), and two router gauges
BUSY_METRIC = "ipa_stage_inference_duration_seconds_sum"
ONGOING_METRIC = "ipa_router_stage_ongoing_request_seconds_total"
READY_METRIC = "ipa_router_stage_ready_replicas"
MAX_GAP_S = 3.0  # samples further apart than this (scrape interval 1 s) mean Prometheus lost data

log = logging.getLogger("ipa.monitoring")


def per_second_counts(samples: Sequence[tuple[float, float]], first: int, last: int) -> list[float] | None:
    """Increments of a counter in each whole second (T-1, T] for T = first..last (epoch seconds).

    Samples stamped on the boundaries give each second's count exactly. A boundary with no
    sample of its own (a scrape slipped past it) gets the counter interpolated linearly between
    the samples around it, the estimate Prometheus' ``increase()`` makes, which spreads the two
    seconds' arrivals evenly rather than giving one of them both. At the newest boundary, with no
    sample after it, the last value holds. A decrease is a counter reset (the process restarted):
    it is not interpolated across, and the new value counts from zero. None when a second has no
    sample at or before its start, or on NaN.
    """
    if not samples:
        return None
    values_at: list[float | None] = []
    i = 0
    for t in range(first - 1, last + 1):
        while i < len(samples) and samples[i][0] <= t:
            i += 1
        if i == 0:
            values_at.append(None)
            continue
        t0, v0 = samples[i - 1]
        if i < len(samples):
            t1, v1 = samples[i]
            if v1 >= v0 and t1 > t0:
                v0 += (v1 - v0) * (t - t0) / (t1 - t0)
        values_at.append(v0)
    out: list[float] = []
    for a, b in zip(values_at, values_at[1:]):
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            return None
        out.append(b - a if b >= a else b)
    return out


def gauge_at_boundaries(samples: Sequence[tuple[float, float]], first: int, last: int) -> list[float] | None:
    """A gauge's value at each second boundary T = first..last: its last sample at or before T
    (what it read at the end of the second (T-1, T]). None when a boundary precedes every
    sample, or on NaN."""
    out: list[float] = []
    i = 0
    for t in range(first, last + 1):
        while i < len(samples) and samples[i][0] <= t:
            i += 1
        if i == 0 or math.isnan(samples[i - 1][1]):
            return None
        out.append(samples[i - 1][1])
    return out


def _counter_from(samples: Sequence[tuple[float, float]], first: int, last: int) -> list[float] | None:
    """``per_second_counts``, with the seconds before a series' first sample counted as 0: a
    variant started within the window (its busy-time series begins there) had done nothing before."""
    start = max(first, math.ceil(samples[0][0]) + 1) if samples else last + 1
    counts = per_second_counts(samples, start, last) if start <= last else []
    return None if counts is None else [0.0] * (min(start, last + 1) - first) + counts


class PrometheusMonitor:
    """``read(window_s)`` -> MonitorReading of per-second arrivals, or None when data is missing."""

    def __init__(self, url: str, t0_wall: float, *, metric: str = ARRIVALS_METRIC, timeout_s: float = 2.0,
                 wall: Callable[[], float] = time.time):
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.url, self.t0_wall, self.metric, self.wall = url, t0_wall, metric, wall
        # no retries: an unavailable Prometheus must answer None quickly, not after back-offs
        self.prom = PrometheusConnect(url=url, disable_ssl=True, retry=Retry(total=0), timeout=timeout_s)
        self.unavailable_since: float | None = None
        self._audited_until = -math.inf  # the newest boundary _audit_boundaries has looked at
        self.log: list[tuple[float, str]] = []  # (run seconds, message) for the run folder

    def _note(self, msg: str) -> None:
        now = self.wall() - self.t0_wall
        self.log.append((now, msg))
        log.warning("%s", msg)

    def _samples(self, window_s: int) -> list[list[tuple[float, float]]] | None:
        try:
            result = self.prom.custom_query(f"{self.metric}[{int(window_s) + 3}s]")
        except Exception as e:  # connection refused, timeout, HTTP 5xx, bad JSON: all mean "no data"
            self._unavailable(f"Prometheus at {self.url} unavailable ({type(e).__name__})")
            return None
        series = []
        for s in result or []:
            pts = [(float(t), float(v)) for t, v in s.get("values", [])]
            if pts:
                series.append(pts)
        return series

    def _audit_boundaries(self, pts: Sequence[tuple[float, float]], first: int, last: int) -> None:
        """Note, once each, the second boundaries a whole-second counter has no sample of: a
        scrape slipped past one (its phase right at a boundary), so the seconds on either side
        share their count (``per_second_counts``). Plain counters are not audited."""
        stamps = {t for t, _ in pts}
        if any(t != int(t) for t in stamps):
            return
        for boundary in range(max(first, self._audited_until + 1), last + 1):
            if boundary not in stamps:
                self._note(f"no sample at second {boundary - self.t0_wall:g} of the run (a scrape slipped "
                           "past it): the seconds either side share their count")
        self._audited_until = max(self._audited_until, last)

    def _unavailable(self, why: str) -> None:
        if self.unavailable_since is None:
            self.unavailable_since = self.wall()
            self._note(f"{why}: no reading, the adapter keeps the current configuration")

    def read(self, window_s: int) -> MonitorReading | None:
        now = self.wall()
        last = math.floor(now) - 1  # the newest second whose scrape has most likely landed
        if last < max(last - int(window_s) + 1, math.floor(self.t0_wall) + 1):
            return MonitorReading(until_s=last - self.t0_wall, arrivals_per_s=[])
        series = self._samples(window_s)
        if series is None:
            return None
        if not series:
            self._unavailable(f"no samples of {self.metric} in the last {window_s}s")
            return None
        for pts in series:
            if now - pts[-1][0] > MAX_GAP_S:
                self._unavailable(f"no fresh samples of {self.metric} (newest {now - pts[-1][0]:.1f}s old)")
                return None
        # a boundary not scraped yet (a scrape due just after it) ends the reading a second earlier
        # rather than count its second as empty
        last = min(last, min(math.floor(pts[-1][0]) for pts in series))
        first = max(last - int(window_s) + 1, math.floor(self.t0_wall) + 1)
        per: list[tuple[int, list[float]]] = []
        for pts in series:
            # after a gap (Prometheus was down), only the seconds since it came back are known:
            # the reading is shorter, never filled with guesses or the gap's lump sum
            cut = max((i for i in range(1, len(pts)) if pts[i][0] - pts[i - 1][0] > MAX_GAP_S), default=0)
            pts = pts[cut:]
            start = max(first, math.ceil(pts[0][0]) + 1)  # whole seconds after the first sample only
            counts = per_second_counts(pts, start, last) if start <= last else []
            if counts is None:
                self._unavailable(f"{self.metric} has NaN or missing samples")
                return None
            self._audit_boundaries(pts, start - 1, last)
            per.append((start, counts))
        common = max(s for s, _ in per)
        total = [sum(c[common - s + j] for s, c in per) for j in range(last - common + 1)]
        if not total:
            self._unavailable("no whole second of fresh samples yet")
            return None
        if self.unavailable_since is not None:
            self._note(f"Prometheus data back after {now - self.unavailable_since:.1f}s")
            self.unavailable_since = None
        return MonitorReading(until_s=last - self.t0_wall, arrivals_per_s=total,
                              stages=self._stage_series(window_s, last - len(total) + 1, last))

    def _by_stage(self, metric: str, window_s: int) -> dict[str, list[list[tuple[float, float]]]] | None:
        try:
            result = self.prom.custom_query(f"{metric}[{int(window_s) + 3}s]")
        except Exception:  # noqa: BLE001 - like a missing arrivals reading: no data, never a crash
            return None
        out: dict[str, list] = {}
        for series in result or []:
            stage = (series.get("metric") or {}).get("stage")
            pts = [(float(t), float(v)) for t, v in series.get("values", [])]
            if stage and pts:
                out.setdefault(stage, []).append(pts)
        return out

    def _stage_series(self, window_s: int, first: int, last: int) -> dict:
        """Each stage's busy seconds, ongoing requests and ready replicas for the boundaries
        first..last (the arrivals' seconds); {} with a note when any of them cannot be read, so a
        policy that needs them keeps its configuration rather than act on part of the picture."""
        from ipa.monitoring.reading import StageSeries

        busy, ongoing, ready = (self._by_stage(m, window_s) for m in (BUSY_METRIC, ONGOING_METRIC, READY_METRIC))
        if busy is None or ongoing is None or ready is None:
            self._stage_note("stage load metrics unavailable (Prometheus query failed)")
            return {}
        out = {}
        for stage in sorted(set(ongoing) & set(ready)):
            per_busy = [_counter_from(pts, first, last) for pts in busy.get(stage, [])]
            per_ongoing = [_counter_from(pts, first, last) for pts in ongoing[stage]]
            per_ready = [gauge_at_boundaries(pts, first, last) for pts in ready[stage]]
            if any(v is None for v in per_busy + per_ongoing + per_ready):
                self._stage_note(f"stage {stage}: load metrics have gaps in the last {window_s}s")
                return {}
            n = last - first + 1
            total = [[sum(vals) for vals in zip(*series)] if series else [0.0] * n
                     for series in (per_busy, per_ongoing, per_ready)]
            out[stage] = StageSeries(*total)
        return out

    def _stage_note(self, message: str) -> None:
        if not self.log or self.log[-1][1] != message:
            self._note(message)


# PromQL behind the run folder's Prometheus-derived series (prometheus_series.csv)
SERIES_QUERIES = {
    "arrivals_total": "sum(ipa_router_requests_total)",
    "arrivals_whole_seconds_total": f"sum({ARRIVALS_METRIC})",  # the monitor's counter, per boundary
    "responses_total": "sum by (outcome) (ipa_router_responses_total)",
    "latency_p99_s": "histogram_quantile(0.99, sum by (le) (rate(ipa_router_request_duration_seconds_bucket[5s])))",
    "queue_length": "sum by (stage) (ipa_router_queue_length)",
    "ready_replicas": "sum by (stage) (ipa_router_stage_ready_replicas)",
    "cores": "sum by (stage) (ipa_stage_cores)",
    "stage_up": "sum by (stage) (ipa_router_stage_up)",
    "drops_total": "sum by (stage) (ipa_router_drops_total)",
    # what the autoscalers act on (StageSeries)
    "ongoing_request_seconds_total": f"sum by (stage) ({ONGOING_METRIC})",
    "busy_seconds_total": f"sum by (stage) ({BUSY_METRIC})",
}


def export_series(url: str, t0_wall: float, t1_wall: float, path) -> int:
    """Query each SERIES_QUERIES expression at 1-s steps over the run and write a long CSV
    (second, series, labels, value); returns the rows written (0 when Prometheus is gone)."""
    import csv
    from datetime import datetime, timezone

    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    prom = PrometheusConnect(url=url, disable_ssl=True, retry=Retry(total=0), timeout=10)
    start = datetime.fromtimestamp(math.floor(t0_wall), tz=timezone.utc)
    end = datetime.fromtimestamp(math.ceil(t1_wall), tz=timezone.utc)
    rows = []
    for name, query in SERIES_QUERIES.items():
        try:
            result = prom.custom_query_range(query, start_time=start, end_time=end, step="1s")
        except Exception as e:  # noqa: BLE001 - a missing series must not lose the run
            log.warning("series %s not exported: %s", name, e)
            continue
        for s in result:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.get("metric", {}).items()))
            for t, v in s.get("values", []):
                rows.append((round(float(t) - t0_wall, 3), name, labels, v))
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("time_s", "series", "labels", "value"))
        w.writerows(rows)
    return len(rows)
