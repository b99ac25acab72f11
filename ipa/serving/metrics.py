"""Counters, gauges and histograms exposed in the Prometheus text format (version 0.0.4).

A few dozen lines instead of ``prometheus_client`` (not installed here); names follow the
Prometheus conventions: base units, ``_seconds``, ``_total`` on counters, and the latency
histograms carry a bucket edge at the SLA so "within SLA" is an exact bucket count.
"""
from __future__ import annotations

import bisect
import math
import time
from typing import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _fmt(v: float) -> str:
    return "+Inf" if v == math.inf else repr(float(v))


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
             for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help_: str, labels: Iterable[str] = ()):
        self.name, self.help, self.label_names = name, help_, tuple(labels)
        self._values: dict[tuple[str, ...], object] = {}

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        k = self._key(labels)
        self._values[k] = self._values.get(k, 0.0) + amount  # type: ignore[operator]

    def value(self, **labels: str) -> float:
        return float(self._values.get(self._key(labels), 0.0))  # type: ignore[arg-type]

    def lines(self) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, k)} {_fmt(v)}" for k, v in self._values.items()]  # type: ignore[arg-type]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def clear(self) -> None:
        self._values.clear()


class WholeSecondCounter(_Metric):
    """A counter exposed as of the last whole second, with that second as the sample's timestamp.

    ``inc`` records when each event happened; a scrape at wall time ``now`` exposes the events
    before ``floor(now)``, stamped ``floor(now)``. Prometheus keeps the stamp (honor_timestamps),
    so the stored series sits on whole-second boundaries whatever the scrape's phase, and the
    difference of two neighbouring samples is the exact count of one wall-clock second: the
    per-second arrivals IPA's predictor needs, which a plain counter scraped at a drifting phase
    only gives smeared over two seconds. A repeated stamp carries the same value (events are
    never back-dated), which Prometheus stores once.
    """

    kind = "counter"

    def __init__(self, name: str, help_: str, labels: Iterable[str] = (), clock=time.time):
        super().__init__(name, help_, labels)
        self.clock = clock

    def inc(self, **labels: str) -> None:
        second = math.floor(self.clock())
        k = self._key(labels)
        # [events before `second`, the second being counted, its events so far]
        state = self._values.setdefault(k, [0, second, 0])
        if second > state[1]:  # type: ignore[index]
            state[0] += state[2]  # type: ignore[index]
            state[1], state[2] = second, 0  # type: ignore[index]
        state[2] += 1  # type: ignore[index]

    def touch(self, **labels: str) -> None:
        """Expose the series (at zero) before its first event."""
        self._values.setdefault(self._key(labels), [0, math.floor(self.clock()), 0])

    def lines(self) -> list[str]:
        boundary = math.floor(self.clock())
        out = []
        for k, (before, second, current) in self._values.items():  # type: ignore[misc]
            value = before + current if second < boundary else before
            out.append(f"{self.name}{_labels(self.label_names, k)} {value} {boundary * 1000}")
        return out


class WholeSecondIntegral(_Metric):
    """The time integral of a level (e.g. requests at a stage) as a counter in level-seconds,
    exposed as of the last whole second and stamped with it, as ``WholeSecondCounter`` is.

    The difference of two neighbouring samples is then the level's exact mean over that
    wall-clock second. A gauge scraped once a second only samples the level: at light load
    (0.1 requests at a stage on average) eight samples all read 0 about half the time, and an
    autoscaler acting on them sees an idle stage.
    """

    kind = "counter"

    def __init__(self, name: str, help_: str, labels: Iterable[str] = (), clock=time.time):
        super().__init__(name, help_, labels)
        self.clock = clock

    def set(self, level: float, **labels: str) -> None:
        k = self._key(labels)
        state = self._values.get(k)
        if state is None:
            now = self.clock()
            # [level, since, integral up to since, floor(since), integral up to floor(since)]
            self._values[k] = [float(level), now, 0.0, math.floor(now), 0.0]
            return
        old, since, area, boundary, _ = state  # type: ignore[misc]
        now = max(self.clock(), since)  # a wall clock stepped back must not make the integral shrink
        second = math.floor(now)
        if second > boundary:  # the level held from `since` past the boundary `second`
            state[3], state[4] = second, area + old * (second - since)  # type: ignore[index]
        state[0], state[1], state[2] = float(level), now, area + old * (now - since)  # type: ignore[index]

    def lines(self) -> list[str]:
        boundary = math.floor(self.clock())
        out = []
        for k, (level, since, area, last_boundary, area_at_last) in self._values.items():  # type: ignore[misc]
            value = area + level * (boundary - since) if boundary > last_boundary else area_at_last
            out.append(f"{self.name}{_labels(self.label_names, k)} {_fmt(value)} {boundary * 1000}")
        return out


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_: str, buckets: Iterable[float], labels: Iterable[str] = ()):
        super().__init__(name, help_, labels)
        self.buckets = sorted(set(float(b) for b in buckets))

    def observe(self, value: float, **labels: str) -> None:
        k = self._key(labels)
        state = self._values.get(k)
        if state is None:
            state = self._values[k] = [[0] * len(self.buckets), 0.0, 0]
        counts, _, _ = state  # type: ignore[misc]
        i = bisect.bisect_left(self.buckets, value)  # le semantics: value <= edge
        if i < len(counts):
            counts[i] += 1
        state[1] += value  # type: ignore[index]
        state[2] += 1  # type: ignore[index]

    def lines(self) -> list[str]:
        out = []
        for k, (counts, total, n) in self._values.items():  # type: ignore[misc]
            cum = 0
            for edge, c in zip(self.buckets, counts):
                cum += c
                out.append(f"{self.name}_bucket{_labels(self.label_names, k, f'le={chr(34)}{_fmt(edge)}{chr(34)}')} {cum}")
            out.append(f"{self.name}_bucket{_labels(self.label_names, k, 'le=' + chr(34) + '+Inf' + chr(34))} {n}")
            out.append(f"{self.name}_sum{_labels(self.label_names, k)} {_fmt(total)}")
            out.append(f"{self.name}_count{_labels(self.label_names, k)} {n}")
        return out


def latency_buckets(sla_s: float) -> list[float]:
    """Edges spanning 1 ms .. 4 x SLA, with the SLA itself (and its half and double) as edges."""
    base = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0]
    edges = {b for b in base if b <= 4 * sla_s} | {sla_s, sla_s / 2, 2 * sla_s}
    return sorted(round(e, 6) for e in edges)


BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Registry:
    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def add(self, metric: _Metric):
        self.metrics.append(metric)
        return metric

    def counter(self, name: str, help_: str, labels: Iterable[str] = ()) -> Counter:
        return self.add(Counter(name, help_, labels))

    def gauge(self, name: str, help_: str, labels: Iterable[str] = ()) -> Gauge:
        return self.add(Gauge(name, help_, labels))

    def whole_second_counter(self, name: str, help_: str, labels: Iterable[str] = ()) -> WholeSecondCounter:
        return self.add(WholeSecondCounter(name, help_, labels))

    def whole_second_integral(self, name: str, help_: str, labels: Iterable[str] = ()) -> WholeSecondIntegral:
        return self.add(WholeSecondIntegral(name, help_, labels))

    def histogram(self, name: str, help_: str, buckets: Iterable[float], labels: Iterable[str] = ()) -> Histogram:
        return self.add(Histogram(name, help_, buckets, labels))

    def render(self) -> bytes:
        lines: list[str] = []
        for m in self.metrics:
            lines += m.header() + m.lines()
        return ("\n".join(lines) + "\n").encode()
