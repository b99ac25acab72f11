"""The pipeline's entry point: per-stage central queues that batch and dispatch to free replicas.

A request enters ``POST /v2/models/{pipeline}/infer`` (one row, shape [1, features]) and waits in
stage 1's queue. A queue sends a batch when a replica of its stage is free and it holds the
configured batch size, or its oldest request has waited ``batch_timeout_s`` (then a partial
batch leaves; the orchestrator sets it per configuration, as the simulator does). The batch goes
to the stage process as one V2 infer call; the rows of the answer move on to the next stage's
queue, and after the last stage the client gets its answer.

A stage is served by one or more endpoints (stage processes locally, pods on Kubernetes), which
``ipa.serving.discovery`` keeps current; a batch goes to the endpoint with the most free
replicas (ties in turn, ``ipa.serving.stage_queue``), so the queue stays central as in IPA.

A request older than the drop limit when it reaches the head of a queue is answered with
``drop-limit-violation`` instead (IPA's router does the same). A batch whose stage endpoint fails
(connection refused or broken) fails its requests with ``stage-failure``: they are answered and
counted, never left waiting. New configurations arrive on ``POST /admin/configuration``; batch
sizes change at the next dispatch. With ``configure_stages`` (local) the stage processes are
told the configuration and move their replicas themselves, so nothing in flight is lost; without
it (Kubernetes) a stage's pods are configured by their Deployment and the router only batches.

The same path answers the Open Inference Protocol over gRPC (``--grpc-port``,
``ipa.serving.grpc_front``): one ``serve`` for both fronts, so a request is queued, batched,
dropped and counted alike whichever way it came.

Run: ``python -m ipa.serving.router --spec router.json --port P [--grpc-port G]``.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from ipa.configuration import StageConfig
from ipa.serving import routes, v2
from ipa.serving.discovery import Discovery, Resolver, dns_resolve
from ipa.serving.http import HttpError, Request, Response, log, serve_until_signalled
from ipa.serving.router_metrics import RouterMetrics
from ipa.serving.spec import RouterSpec, read_router_spec
from ipa.serving.stage_queue import Endpoint, Item, StageQueue


@dataclass(frozen=True)
class Answer:
    """The pipeline's answer to one request: ``ok`` with the output tensor, or ``dropped`` /
    ``failed`` with the reason."""

    request_id: str
    outcome: str
    payload: Any  # the output tensor when ok, else the reason
    latency_s: float
    compute_s: float

    @property
    def output(self) -> "v2.Tensor":
        return self.payload

    @property
    def code(self) -> str:
        return v2.DROPPED if self.outcome == "dropped" else v2.STAGE_FAILURE


class Router:
    def __init__(self, spec: RouterSpec, resolve: Resolver = dns_resolve):
        self.spec = spec
        self.resolve = resolve
        self.queues = [StageQueue(i, name, spec.stage_endpoints[name], spec.batch_timeout_s.get(name, 0.0))
                       for i, name in enumerate(spec.stages)]
        self.by_name = {q.name: q for q in self.queues}
        self._ids = itertools.count(1)
        self.metrics = RouterMetrics(spec)
        self.registry = self.metrics.registry
        self.discovery = Discovery(resolve, spec.configure_stages, self.metrics, self._dispatch)
        self._tasks: list[asyncio.Task] = []

    # --- queues -------------------------------------------------------------------------------
    def _finish(self, item: Item, outcome: str, payload) -> None:
        if not item.future.done():
            item.future.set_result((outcome, payload))

    def _sweep(self, q: StageQueue, now: float) -> None:
        """Answer every request in the queue that is past the drop limit."""
        limit = self.spec.drop_limit_s
        if not any(now - it.arrived > limit for it in q.items):
            return
        keep: deque[Item] = deque()
        for it in q.items:
            if now - it.arrived > limit:
                self.metrics.drops.inc(stage=q.name)
                self._finish(it, "dropped", f"waited {now - it.arrived:.3f}s > drop limit {limit:g}s at stage {q.name}")
            else:
                keep.append(it)
        q.items = keep

    def _dispatch(self, q: StageQueue) -> None:
        now = time.monotonic()
        self._sweep(q, now)
        while q.items:
            ep = q.free_endpoint()
            if ep is None:
                break
            n = len(q.items)
            if n < q.batch and now - q.items[0].enqueued < q.timeout_s:
                if q.timer is None:
                    delay = q.items[0].enqueued + q.timeout_s - now
                    q.timer = asyncio.get_running_loop().call_later(delay, self._on_timer, q)
                break
            batch = [q.items.popleft() for _ in range(min(n, q.batch))]
            q.inflight += 1
            q.in_service += len(batch)
            ep.inflight += 1
            asyncio.get_running_loop().create_task(self._send(q, ep, batch))
        self.metrics.queue.set(len(q.items), stage=q.name)
        self.metrics.inflight.set(q.inflight, stage=q.name)
        self.metrics.ongoing.set(len(q.items) + q.in_service, stage=q.name)

    def _on_timer(self, q: StageQueue) -> None:
        q.timer = None
        self._dispatch(q)

    def _enqueue(self, q: StageQueue, item: Item) -> None:
        item.enqueued = time.monotonic()
        q.items.append(item)
        self._dispatch(q)

    async def _send(self, q: StageQueue, ep: Endpoint, batch: list[Item]) -> None:
        self.metrics.batch.observe(len(batch), stage=q.name)
        try:
            # binary both ways (the tensors are real-size: ipa.pipelines.wire)
            body, headers = v2.binary_infer_request(v2.stack(v2.INPUT_NAME, v2.INPUT_DATATYPE, [it.row for it in batch]))
            try:
                status, data, reply_headers = await ep.client.request("POST", f"/v2/models/{q.name}/infer", body,
                                                                      headers=headers)
            except HttpError as e:
                raise v2.V2Error(v2.STAGE_FAILURE, str(e)) from None
            if status != 200:
                raise v2.V2Error(v2.STAGE_FAILURE, f"stage {q.name} answered {status}: {data[:200]!r}")
            output, doc = v2.parse_infer_response(data, reply_headers.get(v2.BINARY_HEADER))
            rows = output.rows()
            if len(rows) != len(batch):
                raise v2.V2Error(v2.STAGE_FAILURE, f"stage {q.name} answered {len(rows)} rows for {len(batch)}")
            params = doc.get("parameters") or {}
            ready = params.get("ready_replicas")
            if isinstance(ready, int):
                ep.capacity = ready
            ep.served += 1
            compute_s = float(params.get("compute_s") or 0.0)
        except (v2.V2Error, ValueError, KeyError, TypeError) as e:
            for it in batch:
                self.metrics.failures.inc(stage=q.name)
                self._finish(it, "failed", str(e))
        else:
            nxt = self.queues[q.index + 1] if q.index + 1 < len(self.queues) else None
            for it, row in zip(batch, rows):
                it.row = row
                it.compute_s += compute_s
                if nxt is None:
                    self._finish(it, "ok", row)
                else:
                    self._enqueue(nxt, it)
        finally:
            q.inflight -= 1
            q.in_service -= len(batch)
            ep.inflight -= 1
            if ep.gone and ep.inflight == 0:
                await ep.client.close()
            self._dispatch(q)

    # --- stage endpoints ----------------------------------------------------------------------
    async def apply(self, stages: dict[str, dict], timeouts: dict[str, float] | None = None) -> dict:
        unknown = sorted(set(stages) - set(self.by_name))
        if unknown:
            raise v2.V2Error("bad-request", f"unknown stage(s) {unknown}; stages are {self.spec.stages}")
        for name, d in stages.items():
            q = self.by_name[name]
            q.config = StageConfig(**d)
            q.batch = q.config.batch
            if timeouts and name in timeouts:
                q.timeout_s = float(timeouts[name])
            self.metrics.batch_cfg.set(q.batch, stage=name)
        delivered = await asyncio.gather(*(self.discovery.push_stage(self.by_name[n]) for n in stages))
        # a new configuration usually means pods come or go: look again now, not at the next tick
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(self.discovery.resolve_stage(q)) for q in self.queues]
        self._tasks = [t for t in self._tasks if not t.done()]
        for q in self.queues:
            self._dispatch(q)
        return {"applied": True, "pending": [n for n, ok in zip(stages, delivered) if not ok]}

    def status(self) -> dict:
        return {"pipeline": self.spec.pipeline, "stages": [
            {"stage": q.name, "up": q.up, "ready": q.capacity, "batch": q.batch, "queue": len(q.items),
             "inflight": q.inflight, "batch_timeout_s": q.timeout_s,
             "configuration": asdict(q.config) if q.config else None, "process": q.reported(),
             "endpoints": [{"address": e.address, "up": e.up, "ready": e.capacity, "inflight": e.inflight,
                            "served": e.served} for e in q.endpoints]}
            for q in self.queues]}

    # --- HTTP ---------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Every stage has a ready replica to serve a request now (the pipeline's readiness)."""
        return all(q.capacity > 0 for q in self.queues)

    def capacity(self) -> dict[str, int]:
        return {q.name: q.capacity for q in self.queues}

    # --- HTTP: what routes.dispatch asks of a server -------------------------------------------
    description = "the pipeline"
    server_name = "ipa-bench router"

    @property
    def model(self) -> str:
        return self.spec.pipeline

    async def handle(self, req: Request) -> Response:
        return await routes.dispatch(self, req)

    def server_ready(self) -> Response:
        # the router's own readiness: it answers, queues and drops whatever its stages do, so a
        # restarting stage must not take it out of its Service (clients would get refused
        # connections instead of queued or dropped requests); the stages' capacity is reported
        return v2.ok({"ready": True, "stage_capacity": self.capacity()})

    def model_ready(self) -> Response:
        if self.ready():
            return v2.ok({"name": self.spec.pipeline, "ready": True, "stage_capacity": self.capacity()})
        idle = [name for name, c in self.capacity().items() if c == 0]
        return v2.error("not-ready", f"stage(s) {idle} have no ready replica")

    def model_metadata(self) -> dict:
        return v2.model_metadata(self.spec.pipeline, ["1"], "ipa-pipeline", parameters=self.status())

    def count_refused(self, code: str) -> None:
        self.metrics.bad.inc(pipeline=self.spec.pipeline, code=code)

    async def configure(self, body: bytes) -> Response:
        try:
            doc = json.loads(body)
            return v2.ok(await self.apply(doc.get("stages", doc), doc.get("batch_timeout_s")))
        except v2.V2Error as e:
            return e.response()
        except (ValueError, TypeError, AttributeError) as e:
            return v2.error("bad-request", f"configuration must be {{stage: {{variant, batch, replicas, cores}}}}: {e}")

    async def infer(self, req: Request) -> Response:
        arrived = time.monotonic()
        try:
            tensor, doc = v2.parse_infer(req.body, header_length=req.headers.get(v2.BINARY_HEADER))
        except v2.V2Error as e:
            return self.refused(e).response()
        try:
            answer = await self.serve(tensor, doc.get("id"), arrived)
        except v2.V2Error as e:
            return e.response()
        if answer.outcome != "ok":
            return v2.error(answer.code, answer.payload)
        return v2.infer_response(self.spec.pipeline, answer.output, answer.request_id,
                                 {"latency_s": answer.latency_s, "compute_s": answer.compute_s},
                                 binary=v2.wants_binary(doc))

    def refused(self, error: v2.V2Error) -> v2.V2Error:
        """A malformed request, counted by its code (whichever front it came through)."""
        self.count_refused(error.code)
        return error

    async def serve(self, tensor: v2.Tensor, request_id: str | None, arrived: float) -> Answer:
        """The one request path of the HTTP and gRPC fronts: a parsed request (the front counts
        the ones it cannot parse, ``refused``) through every stage. A V2Error, counted, for a
        request the pipeline does not take; otherwise the pipeline's answer."""
        p = self.spec.pipeline
        if tensor.batch != 1:
            raise self.refused(v2.V2Error("bad-shape", f"the pipeline takes one request per call (shape [1, n]), "
                                                       f"got shape {list(tensor.shape)}"))
        self.metrics.arrivals.inc(pipeline=p)
        self.metrics.arrivals_by_second.inc(pipeline=p)
        rid = str(request_id or next(self._ids))
        item = Item(rid, tensor.data, arrived, asyncio.get_running_loop().create_future())
        self._enqueue(self.queues[0], item)
        outcome, payload = await item.future
        self.metrics.responses.inc(pipeline=p, outcome=outcome)
        latency = time.monotonic() - arrived
        if outcome != "ok":
            return Answer(rid, outcome, payload, latency, item.compute_s)
        self.metrics.latency.observe(latency, pipeline=p)
        return Answer(rid, outcome, v2.Tensor("output", (1, len(payload)), v2.INPUT_DATATYPE, payload), latency,
                      item.compute_s)

    def start_polling(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self.discovery.run(self.queues)))

    async def close(self) -> None:
        tasks = self._tasks + [e.poller for q in self.queues for e in q.endpoints if e.poller is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for q in self.queues:
            for e in q.endpoints:
                await e.client.close()


async def amain(spec: RouterSpec, port: int, initial: dict | None, grpc_port: int | None = None) -> None:
    router = Router(spec)
    if initial:
        for name, d in initial.items():
            q = router.by_name[name]
            q.config = StageConfig(**d)
            q.batch = q.config.batch  # the stage processes were started with it too
            router.metrics.batch_cfg.set(q.batch, stage=name)
    router.start_polling()
    grpc_server = None
    try:
        if grpc_port:
            from ipa.serving import grpc_front  # noqa: PLC0415 - only the router process loads the protocol's messages
            grpc_server = await grpc_front.start(router, spec.host, grpc_port)
            log(f"router for {spec.pipeline}: V2 gRPC on {spec.host}:{grpc_port}")
        await serve_until_signalled(router.handle, spec.host, port,
                                    f"router for {spec.pipeline} serving on http://{spec.host}:{port}")
    finally:
        if grpc_server is not None:
            await grpc_server.stop(1.0)
        await router.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The pipeline router: central queues, batching, drop limit")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--config", default="", help="initial configuration as JSON {stage: StageConfig}")
    ap.add_argument("--grpc-port", type=int, default=None, help="also serve V2 over gRPC on this port")
    a = ap.parse_args(argv)
    spec = read_router_spec(a.spec)
    try:
        asyncio.run(amain(spec, a.port, json.loads(a.config) if a.config else None, a.grpc_port))
    except OSError as e:
        log(f"cannot serve on {spec.host}:{a.port}: {e}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
