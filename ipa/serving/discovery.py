"""Where a stage's endpoints are and what they say: resolving the stage's addresses, polling each
endpoint's status, and delivering the stage's configuration to it.

A stage is served by one or more endpoints (``RouterSpec.stage_endpoints``: "host:port" entries;
a host name is resolved, again every ``RESOLVE_S`` and after each new configuration, and every
address it resolves to is one endpoint, so a Kubernetes headless Service gives one endpoint per
ready pod). Each endpoint reports its ready replicas on ``GET /admin/status``; the stage's
capacity is their sum. With ``configure_stages`` (local) the stage processes are told each new
configuration, and one that restarted with an older one is told again.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from dataclasses import asdict
from typing import Awaitable, Callable

from ipa.serving import v2
from ipa.serving.http import HttpError, log
from ipa.serving.router_metrics import RouterMetrics
from ipa.serving.stage_queue import Endpoint, StageQueue

# How often stage host names are resolved again. Kubernetes' DNS answers for a headless Service
# change when pods become ready or go (CoreDNS caches them a few seconds); a new pod is used
# from its first resolution, a departed one is no longer chosen once its status says so.
RESOLVE_S = 1.0

Resolver = Callable[[str], Awaitable[list[str]]]  # host name -> its addresses


POLL_S = 0.1  # how often each endpoint is asked how many replicas are ready


async def dns_resolve(host: str) -> list[str]:
    """The addresses of ``host`` (an address resolves to itself without a lookup)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


class Discovery:
    """Keeps the stages' endpoints current; ``on_change(q)`` is called whenever stage ``q``'s
    endpoints or their capacity may have changed (the router dispatches what it can)."""

    def __init__(self, resolve: Resolver, configure_stages: bool, metrics: RouterMetrics,
                 on_change: Callable[[StageQueue], None]):
        self.resolve, self.configure_stages, self.metrics, self.on_change = resolve, configure_stages, metrics, on_change

    async def resolve_stage(self, q: StageQueue) -> None:
        """Resolve the stage's addresses and make its endpoints match: new addresses get an
        endpoint (and a poller), vanished ones stop taking batches. A failed lookup keeps the
        endpoints there are (their polls say whether they still answer)."""
        found: list[tuple[str, int]] = []
        try:
            for host, port in q.addresses:
                found += [(a, port) for a in await self.resolve(host)]
        except (OSError, ValueError) as e:
            if not q.resolve_failed:
                log(f"stage {q.name}: cannot resolve {[h for h, _ in q.addresses]} ({e}); keeping "
                    f"{len(q.endpoints)} endpoint(s)")
            q.resolve_failed = True
            return
        q.resolve_failed = False
        have = {e.address: e for e in q.endpoints}
        wanted = {Endpoint(h, p).address: (h, p) for h, p in found}
        for address, ep in have.items():
            if address not in wanted:
                log(f"stage {q.name}: endpoint {address} no longer resolves; it finishes its "
                    f"{ep.inflight} batch(es) and takes no more")
                ep.gone = True
                if ep.poller is not None:
                    ep.poller.cancel()
                if ep.inflight == 0:
                    await ep.client.close()
        added = []
        for address, (host, port) in wanted.items():
            if address not in have:
                ep = Endpoint(host, port)
                ep.poller = asyncio.get_running_loop().create_task(self.poll(q, ep))
                added.append(ep)
        if added:
            log(f"stage {q.name}: new endpoint(s) {[e.address for e in added]}")
        q.endpoints = [e for e in q.endpoints if not e.gone] + added
        q.turn = 0
        self.metrics.stage_endpoints(q)
        self.on_change(q)

    async def run(self, queues: list[StageQueue]) -> None:
        """Resolve every stage again every RESOLVE_S, for ever (cancelled at the router's close)."""
        while True:
            await asyncio.gather(*(self.resolve_stage(q) for q in queues))
            await asyncio.sleep(RESOLVE_S)

    async def poll(self, q: StageQueue, ep: Endpoint) -> None:
        while not ep.gone:
            try:
                status, data, _ = await ep.client.request("GET", "/admin/status", timeout_s=2.0)
                doc = json.loads(data) if status == 200 else None
            except (HttpError, ValueError):
                doc = None
            if doc is None:
                if ep.up:
                    log(f"stage {q.name} endpoint {ep.address} is not answering: its batches go elsewhere "
                        f"or wait (drop limit still applies)")
                ep.up, ep.capacity, ep.pushed, ep.reported = False, 0, False, {}
            else:
                if not ep.up:
                    log(f"stage {q.name} endpoint {ep.address} is up: {doc['ready']} ready, {doc['loading']} loading")
                ep.up = True
                ep.capacity = int(doc["ready"])
                ep.reported = doc
                if self.configure_stages and q.config is not None \
                        and doc["configuration"] != asdict(q.config) and not ep.pushed:
                    # a restarted process came back with an older configuration: send the current one
                    await self.push(q, ep)
            self.metrics.stage_endpoints(q)
            self.on_change(q)
            await asyncio.sleep(POLL_S)

    async def push(self, q: StageQueue, ep: Endpoint) -> bool:
        if q.config is None or not self.configure_stages:
            return True
        try:
            status, data, _ = await ep.client.request("POST", "/admin/configuration", v2.dumps(asdict(q.config)),
                                                   timeout_s=5.0)
        except HttpError as e:
            log(f"stage {q.name} endpoint {ep.address}: configuration not delivered ({e}); will retry when it answers")
            return False
        if status != 200:
            log(f"stage {q.name} endpoint {ep.address} refused configuration: {data[:300]!r}")
            return False
        ep.pushed = True
        return True

    async def push_stage(self, q: StageQueue) -> bool:
        for ep in q.endpoints:
            ep.pushed = False
        results = await asyncio.gather(*(self.push(q, ep) for ep in q.endpoints if not ep.gone))
        return all(results)
