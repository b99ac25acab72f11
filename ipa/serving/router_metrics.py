"""The router's metrics (Prometheus names, help texts, labels), in one place.

Prometheus scrapes them (the monitor reads arrivals, ongoing requests and ready replicas), and
the run's ledger (ipa.monitoring.router_ledger) reads the request counters at the end.
"""
from __future__ import annotations

from ipa.serving.metrics import BATCH_BUCKETS, Registry, latency_buckets
from ipa.serving.spec import RouterSpec


class RouterMetrics:
    def __init__(self, spec: RouterSpec):
        p = spec.pipeline
        r = self.registry = Registry()
        self.arrivals = r.counter("ipa_router_requests_total", "Pipeline requests received (well-formed)",
                                  ("pipeline",))
        self.arrivals_by_second = r.whole_second_counter(
            "ipa_router_requests_whole_seconds_total",
            "Pipeline requests received before the last whole wall-clock second, stamped with that second",
            ("pipeline",))
        self.responses = r.counter("ipa_router_responses_total",
                                   "Pipeline requests answered, by outcome (ok, dropped, failed)",
                                   ("pipeline", "outcome"))
        self.bad = r.counter("ipa_router_bad_requests_total", "Malformed requests, by error code",
                             ("pipeline", "code"))
        self.latency = r.histogram("ipa_router_request_duration_seconds",
                                   "End-to-end latency at the router of answered requests (bucket edge at the SLA)",
                                   latency_buckets(spec.sla_s), ("pipeline",))
        self.queue = r.gauge("ipa_router_queue_length", "Requests waiting in a stage's central queue", ("stage",))
        self.inflight = r.gauge("ipa_router_inflight_batches", "Batches being served by a stage", ("stage",))
        # what Ray Serve's autoscaler counts per deployment: requests queued or being served; as a
        # time integral, so each second's mean is exact (a gauge scraped once a second only samples it)
        self.ongoing = r.whole_second_integral(
            "ipa_router_stage_ongoing_request_seconds_total",
            "Time integral of the requests at a stage, queued or in service (request-seconds), as of the last whole second",
            ("stage",))
        self.batch = r.histogram("ipa_router_batch_size", "Requests per dispatched batch", BATCH_BUCKETS, ("stage",))
        self.batch_cfg = r.gauge("ipa_router_batch_setting", "Configured batch size", ("stage",))
        self.drops = r.counter("ipa_router_drops_total", "Requests dropped at a stage's queue (drop limit)",
                               ("stage",))
        self.failures = r.counter("ipa_router_stage_failures_total", "Requests failed by a stage error",
                                  ("stage",))
        self.up = r.gauge("ipa_router_stage_up", "1 while an endpoint of the stage answers", ("stage",))
        self.ready = r.gauge("ipa_router_stage_ready_replicas", "Ready replicas the stage's endpoints report",
                             ("stage",))
        self.endpoints = r.gauge("ipa_router_stage_endpoints", "Endpoints (stage processes or pods) answering",
                                 ("stage",))
        self.sla = r.gauge("ipa_router_sla_seconds", "Pipeline SLA and drop limit", ("pipeline", "kind"))
        self.sla.set(spec.sla_s, pipeline=p, kind="sla")
        self.sla.set(spec.drop_limit_s, pipeline=p, kind="drop_limit")
        self.arrivals.inc(0, pipeline=p)
        self.arrivals_by_second.touch(pipeline=p)
        for stage in spec.stages:
            self.queue.set(0, stage=stage)
            self.ongoing.set(0, stage=stage)
            self.drops.inc(0, stage=stage)

    def stage_endpoints(self, q) -> None:
        """The gauges of a stage's endpoints (``q``: an ipa.serving.stage_queue.StageQueue)."""
        self.up.set(1 if q.up else 0, stage=q.name)
        self.ready.set(q.capacity, stage=q.name)
        self.endpoints.set(sum(1 for e in q.endpoints if e.up and not e.gone), stage=q.name)
