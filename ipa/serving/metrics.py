"""The servers' metrics, on ``prometheus_client``: one registry per process.

Names follow the Prometheus conventions (base units, ``_seconds``, ``_total`` on counters), and
the latency histograms carry a bucket edge at the SLA so "within SLA" is an exact bucket count.
Two counters are this project's own, exposed through custom collectors because their samples
carry timestamps: ``WholeSecondCounter`` (arrivals per wall-clock second, what IPA's predictor
reads) and ``WholeSecondIntegral`` (a level's exact mean per second, what the autoscalers read).
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import prometheus_client
from prometheus_client.core import CounterMetricFamily

# The classic text format: what every Prometheus since 2.0 scrapes without negotiation.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# A `_created` sample per counter and histogram series doubles the exposition for no reader here.
prometheus_client.disable_created_metrics()


class _Labelled:
    """A prometheus_client metric called with labels as keywords (``inc(stage="asr")``)."""

    def __init__(self, metric, label_names: tuple[str, ...]):
        self._metric, self._names = metric, label_names

    def _child(self, labels: dict[str, str]):
        if not self._names:
            return self._metric
        return self._metric.labels(*(str(labels[n]) for n in self._names))


class Counter(_Labelled):
    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).inc(amount)


class Gauge(_Labelled):
    def set(self, value: float, **labels: str) -> None:
        self._child(labels).set(value)

    def clear(self) -> None:
        self._metric.clear()


class Histogram(_Labelled):
    def observe(self, value: float, **labels: str) -> None:
        self._child(labels).observe(value)


class WholeSecondCounter:
    """A counter exposed as of the last whole second, with that second as the sample's timestamp.

    ``inc`` records when each event happened; a scrape at wall time ``now`` exposes the events
    before ``floor(now)``, stamped ``floor(now)``. Prometheus keeps the stamp (honor_timestamps),
    so the stored series sits on whole-second boundaries whatever the scrape's phase, and the
    difference of two neighbouring samples is the exact count of one wall-clock second: the
    per-second arrivals IPA's predictor needs, which a plain counter scraped at a drifting phase
    only gives smeared over two seconds. A repeated stamp carries the same value (events are
    never back-dated), which Prometheus stores once.
    """

    def __init__(self, name: str, help_: str, labels: Iterable[str] = (), clock=time.time):
        self.name, self.help, self.label_names, self.clock = name, help_, tuple(labels), clock
        # per label values: [events before `second`, the second being counted, its events so far]
        self._state: dict[tuple[str, ...], list] = {}

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        return tuple(str(labels[n]) for n in self.label_names)

    def inc(self, **labels: str) -> None:
        second = math.floor(self.clock())
        state = self._state.setdefault(self._key(labels), [0, second, 0])
        if second > state[1]:
            state[0] += state[2]
            state[1], state[2] = second, 0
        state[2] += 1

    def touch(self, **labels: str) -> None:
        """Expose the series (at zero) before its first event."""
        self._state.setdefault(self._key(labels), [0, math.floor(self.clock()), 0])

    def samples(self) -> list[tuple[tuple[str, ...], float, int]]:
        """(label values, value, timestamp in whole seconds) per series, as a scrape now sees it."""
        boundary = math.floor(self.clock())
        return [(k, before + current if second < boundary else before, boundary)
                for k, (before, second, current) in self._state.items()]

    def collect(self):
        family = CounterMetricFamily(self.name, self.help, labels=self.label_names)
        for k, value, stamp in self.samples():
            family.add_metric(k, value, timestamp=stamp)
        yield family


class WholeSecondIntegral(WholeSecondCounter):
    """The time integral of a level (e.g. requests at a stage) as a counter in level-seconds,
    exposed as of the last whole second and stamped with it, as ``WholeSecondCounter`` is.

    The difference of two neighbouring samples is then the level's exact mean over that
    wall-clock second. A gauge scraped once a second only samples the level: at light load
    (0.1 requests at a stage on average) eight samples all read 0 about half the time, and an
    autoscaler acting on them sees an idle stage.
    """

    def inc(self, **labels: str) -> None:  # a level is set, not counted
        raise TypeError("WholeSecondIntegral is set to a level, not incremented")

    def set(self, level: float, **labels: str) -> None:
        k = self._key(labels)
        state = self._state.get(k)
        if state is None:
            now = self.clock()
            # [level, since, integral up to since, floor(since), integral up to floor(since)]
            self._state[k] = [float(level), now, 0.0, math.floor(now), 0.0]
            return
        old, since, area, boundary, _ = state
        now = max(self.clock(), since)  # a wall clock stepped back must not make the integral shrink
        second = math.floor(now)
        if second > boundary:  # the level held from `since` past the boundary `second`
            state[3], state[4] = second, area + old * (second - since)
        state[0], state[1], state[2] = float(level), now, area + old * (now - since)

    def samples(self) -> list[tuple[tuple[str, ...], float, int]]:
        boundary = math.floor(self.clock())
        out = []
        for k, (level, since, area, last_boundary, area_at_last) in self._state.items():
            value = area + level * (boundary - since) if boundary > last_boundary else area_at_last
            out.append((k, value, boundary))
        return out


def latency_buckets(sla_s: float) -> list[float]:
    """Edges spanning 1 ms .. 4 x SLA, with the SLA itself (and its half and double) as edges."""
    base = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0]
    edges = {b for b in base if b <= 4 * sla_s} | {sla_s, sla_s / 2, 2 * sla_s}
    return sorted(round(e, 6) for e in edges)


BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Registry:
    """One process's metrics: a ``prometheus_client.CollectorRegistry`` of its own, so two
    servers in one process (tests) never share a series."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)

    def counter(self, name: str, help_: str, labels: Iterable[str] = ()) -> Counter:
        labels = tuple(labels)
        return Counter(prometheus_client.Counter(name, help_, labels, registry=self.registry), labels)

    def gauge(self, name: str, help_: str, labels: Iterable[str] = ()) -> Gauge:
        labels = tuple(labels)
        return Gauge(prometheus_client.Gauge(name, help_, labels, registry=self.registry), labels)

    def histogram(self, name: str, help_: str, buckets: Iterable[float], labels: Iterable[str] = ()) -> Histogram:
        labels = tuple(labels)
        return Histogram(prometheus_client.Histogram(name, help_, labels, registry=self.registry,
                                                     buckets=tuple(buckets)), labels)

    def whole_second_counter(self, name: str, help_: str, labels: Iterable[str] = ()) -> WholeSecondCounter:
        metric = WholeSecondCounter(name, help_, labels)
        self.registry.register(metric)
        return metric

    def whole_second_integral(self, name: str, help_: str, labels: Iterable[str] = ()) -> WholeSecondIntegral:
        metric = WholeSecondIntegral(name, help_, labels)
        self.registry.register(metric)
        return metric

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
