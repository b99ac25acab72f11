"""A stage as the router sees it: its central queue of requests, the endpoints that serve it
(stage processes or pods), and which endpoint takes the next batch.

Plain state and one choice (``StageQueue.free_endpoint``); the router (ipa.serving.router)
fills and empties the queue, discovery (ipa.serving.discovery) keeps the endpoints current.
"""
from __future__ import annotations

import asyncio
from collections import deque

from ipa.configuration import StageConfig
from ipa.serving.http import Client
from ipa.serving.spec import parse_endpoint


class Item:
    __slots__ = ("id", "row", "arrived", "enqueued", "future", "compute_s")

    def __init__(self, rid: str, row: list, arrived: float, future: asyncio.Future):
        self.id, self.row, self.arrived, self.enqueued, self.future = rid, row, arrived, arrived, future
        self.compute_s = 0.0  # time its batches spent on replicas, summed over stages


class Endpoint:
    """One server of a stage: a stage process (local) or one pod (Kubernetes)."""

    __slots__ = ("address", "client", "up", "capacity", "inflight", "served", "reported", "pushed", "gone", "poller")

    def __init__(self, host: str, port: int):
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.client = Client(host, port)
        self.up = False
        self.capacity = 0  # ready replicas, as the endpoint last said
        self.inflight = 0  # batches sent to it and not answered yet
        self.served = 0  # batches it answered
        self.reported: dict = {}  # its last /admin/status answer
        self.pushed = False  # has been sent the stage's current configuration
        self.gone = False  # no longer resolved: finishes its batches, takes no new ones
        self.poller: asyncio.Task | None = None


class StageQueue:
    def __init__(self, index: int, name: str, addresses: list[str], timeout_s: float):
        self.index, self.name, self.timeout_s = index, name, timeout_s
        self.addresses = [parse_endpoint(a) for a in addresses]  # (host, port) as the spec names them
        self.endpoints: list[Endpoint] = []
        self.turn = 0  # where the next search for a free endpoint starts (ties go in turn)
        self.items: deque[Item] = deque()
        self.batch = 1
        self.inflight = 0
        self.in_service = 0  # requests in the batches being served
        self.config: StageConfig | None = None  # what the stage should run (re-sent after a restart)
        self.timer: asyncio.TimerHandle | None = None
        self.resolve_failed = False

    @property
    def capacity(self) -> int:
        return sum(e.capacity for e in self.endpoints if e.up and not e.gone)

    @property
    def up(self) -> bool:
        return any(e.up for e in self.endpoints if not e.gone)

    def free_endpoint(self) -> Endpoint | None:
        """The endpoint with the most free replicas; among equals, the next in turn."""
        eps = self.endpoints
        n = len(eps)
        if n == 1:  # the local case: no search
            e = eps[0]
            return e if e.up and e.inflight < e.capacity else None
        best, best_free, best_k = None, 0, 0
        for k in range(n):
            e = eps[(self.turn + k) % n]
            free = e.capacity - e.inflight
            if free > best_free and e.up and not e.gone:
                best, best_free, best_k = e, free, k
        if best is not None:
            self.turn = (self.turn + best_k + 1) % n
        return best

    def reported(self) -> dict:
        """The stage's replicas as its endpoints report them: one endpoint's answer as it is,
        several endpoints' summed (variants joined)."""
        live = [e.reported for e in self.endpoints if e.up and not e.gone and e.reported]
        if len(self.endpoints) == 1:
            return self.endpoints[0].reported
        if not live:
            return {}
        out = {k: sum(int(r.get(k, 0)) for r in live)
               for k in ("ready", "ready_target", "loading", "draining", "busy", "cores", "waiting")}
        out["variants"] = sorted({v for r in live for v in r.get("variants", [])})
        out["stage"], out["endpoints"] = self.name, len(live)
        return out
