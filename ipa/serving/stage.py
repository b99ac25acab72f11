"""A stage process: a V2 model server whose replicas are independent workers.

One OS process per stage (so killing it is a real fault), hosting the stage's replicas as asyncio
workers (so a hundred emulated replicas fit on a laptop). A replica serves one batch at a time
and only after its variant's load time; on a variant change the new replicas load while the old
ones keep serving, then the old ones drain (finish their batch) and retire.

Run: ``python -m ipa.serving.stage --spec stage.json --config '{"variant":..}' --port P``.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from collections import deque
from dataclasses import asdict

import numpy as np

from ipa.configuration import StageConfig
from ipa.serving import routes, v2
from ipa.serving.compute import make_compute, set_torch_threads
from ipa.serving.http import Request, Response, log, serve_until_signalled
from ipa.serving.metrics import BATCH_BUCKETS, Registry, latency_buckets
from ipa.serving.spec import StageSpec, read_stage_spec

LOADING, READY, DRAINING = "loading", "ready", "draining"


class Replica:
    def __init__(self, rid: int, variant: str, cores: int, compute):
        self.id, self.variant, self.cores, self.compute = rid, variant, cores, compute
        self.state = LOADING
        self.busy = False
        self.load_task: asyncio.Task | None = None


class StageServer:
    def __init__(self, spec: StageSpec, config: StageConfig):
        self.spec = spec
        self.config = config
        self.replicas: list[Replica] = []
        self.waiters: deque[asyncio.Future] = deque()
        self._ids = itertools.count(1)
        self._rng = random.Random(spec.seed)
        r = self.registry = Registry()
        self.m_requests = r.counter("ipa_stage_requests_total", "Infer calls (batches) served, by outcome",
                                    ("stage", "variant", "code"))
        self.m_items = r.counter("ipa_stage_items_total", "Requests (batch rows) served", ("stage", "variant"))
        self.m_bad = r.counter("ipa_stage_bad_requests_total", "Malformed infer calls, by error code",
                               ("stage", "code"))
        self.m_latency = r.histogram("ipa_stage_inference_duration_seconds",
                                     "Compute time of a batch on a replica (bucket edge at the stage SLA)",
                                     latency_buckets(spec.sla_s), ("stage", "variant"))
        self.m_batch = r.histogram("ipa_stage_batch_size", "Rows per served batch", BATCH_BUCKETS, ("stage",))
        self.m_replicas = r.gauge("ipa_stage_replicas", "Replicas by variant and state", ("stage", "variant", "state"))
        self.m_cores = r.gauge("ipa_stage_cores", "Cores provisioned (loading, ready and draining replicas)",
                               ("stage",))
        self.m_queue = r.gauge("ipa_stage_queue_length", "Batches waiting for a free replica", ("stage",))
        self.m_sla = r.gauge("ipa_stage_sla_seconds", "The stage's SLA", ("stage",))
        self.m_sla.set(spec.sla_s, stage=spec.name)
        # set on SIGTERM when draining (a Kubernetes pod going away): report no ready replica so
        # the router sends nothing new, and finish what was sent
        self.terminating = False
        # the verdicts of the replicas that timed batches against their profile (real mode, the
        # process's first replicas when the spec asks): kept after those replicas retire
        self.speed_checks: list[dict] = []
        self._checking = spec.speed_check and spec.mode == "real"
        self.reconcile()
        self._checking = False

    # --- replicas -----------------------------------------------------------------------------
    def apply(self, config: StageConfig) -> None:
        self.spec.variant(config.variant)  # unknown variant: ConfigError before anything changes
        log(f"apply {asdict(config)}")
        self.config = config
        self.reconcile()

    def _target(self, r: Replica) -> bool:
        return r.variant == self.config.variant and r.cores == self.config.cores

    def reconcile(self) -> None:
        """Move the replica set towards the configuration without interrupting a batch."""
        want = self.config.replicas
        mine = [r for r in self.replicas if self._target(r) and r.state in (LOADING, READY)]
        for _ in range(want - len(mine)):
            self._add()
        surplus = len(mine) - want
        if surplus > 0:
            # retire the least useful first: loading ones, then idle ones, then busy ones (drain)
            order = sorted(mine, key=lambda r: (r.state != LOADING, r.busy))
            for r in order[:surplus]:
                self._retire(r)
        others = [r for r in self.replicas if not self._target(r) and r.state in (LOADING, READY)]
        ready_mine = sum(1 for r in self.replicas if self._target(r) and r.state == READY)
        for r in others:
            # old replicas keep serving until the new variant is fully up
            if r.state == LOADING or ready_mine >= want:
                self._retire(r)
        if self.spec.mode == "real" and self.replicas:
            set_torch_threads(max(r.cores for r in self.replicas))
        self._update_gauges()

    def _add(self) -> None:
        c = self.config
        variant = self.spec.variant(c.variant)
        r = Replica(next(self._ids), c.variant, c.cores, make_compute(
            self.spec, variant, c.cores, self._rng, speed_check=c.batch if self._checking else None))
        claim = getattr(r.compute, "claim", None)
        shared = claim.shared if claim is not None else ()
        if shared:  # the machine has fewer free CPUs than the configuration provisions
            log(f"warning: replica {r.id} ({c.variant}, {c.cores} core(s)) shares CPU(s) {list(shared)} with "
                "another replica: the machine is oversubscribed and its latencies are not the profiled ones")
        self.replicas.append(r)
        r.load_task = asyncio.get_running_loop().create_task(self._load(r))

    async def _load(self, r: Replica) -> None:
        t = time.perf_counter()
        try:
            await r.compute.load()
        except asyncio.CancelledError:
            return
        except Exception as e:  # a variant that fails to build is logged and left out, not retried
            log(f"replica {r.id} ({r.variant}) failed to load: {type(e).__name__}: {e}")
            self._retire(r)
            return
        if r.state != LOADING:
            return
        r.state = READY
        log(f"replica {r.id} ({r.variant}) ready after {time.perf_counter() - t:.2f}s")
        speed = getattr(r.compute, "speed", None)
        if speed is not None:
            self.speed_checks.append(dict(speed, replica=r.id, cores=r.cores))
            log(f"replica {r.id} speed check: batch {speed['batch']} takes {speed['median_s']:.4g}s (median of "
                f"{len(speed['samples_s'])}), profiled {speed['profiled_p50_s']:.4g}s: x{speed['ratio']:.3g}"
                + (", slower than the profile" if speed["slower"] else ""))
        self._release(r)
        self.reconcile()

    def _retire(self, r: Replica) -> None:
        if r.state == LOADING and r.load_task is not None:
            r.load_task.cancel()
        if r.busy:
            r.state = DRAINING
        else:
            r.state = "retired"
            r.compute.unload()
            self.replicas.remove(r)
        self._update_gauges()

    def _release(self, r: Replica) -> None:
        """A replica became free: hand it to the oldest waiting batch, or mark it idle."""
        r.busy = False
        if r.state == DRAINING:
            self._retire(r)
            return
        if r.state != READY:
            return
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                r.busy = True
                fut.set_result(r)
                break
        self.m_queue.set(len(self.waiters), stage=self.spec.name)

    async def _acquire(self) -> Replica:
        for r in self.replicas:
            if r.state == READY and not r.busy:
                r.busy = True
                return r
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self.m_queue.set(len(self.waiters), stage=self.spec.name)
        return await fut

    def _update_gauges(self) -> None:
        self.m_replicas.clear()
        counts: dict[tuple[str, str], int] = {}
        for r in self.replicas:
            counts[(r.variant, r.state)] = counts.get((r.variant, r.state), 0) + 1
        for (variant, state), n in counts.items():
            self.m_replicas.set(n, stage=self.spec.name, variant=variant, state=state)
        self.m_cores.set(sum(r.cores for r in self.replicas), stage=self.spec.name)

    def ready_count(self) -> int:
        """Replicas the router may send batches to."""
        return 0 if self.terminating else sum(1 for r in self.replicas if r.state == READY)

    def idle(self) -> bool:
        return not self.waiters and not any(r.busy for r in self.replicas)

    def status(self) -> dict:
        by_state = {s: sum(1 for r in self.replicas if r.state == s) for s in (LOADING, READY, DRAINING)}
        return {"stage": self.spec.name, "mode": self.spec.mode, "configuration": asdict(self.config),
                "ready": self.ready_count(), "terminating": self.terminating,
                "ready_target": sum(1 for r in self.replicas if r.state == READY and self._target(r)),
                "loading": by_state[LOADING], "draining": by_state[DRAINING],
                "busy": sum(1 for r in self.replicas if r.busy),
                "cores": sum(r.cores for r in self.replicas), "waiting": len(self.waiters),
                "variants": sorted({r.variant for r in self.replicas}),
                # real mode: the CPUs each replica is pinned to, and those it shares with another
                "replica_cpus": [list(c.cpus) for c in self._claims()],
                "shared_cpus": sorted({cpu for c in self._claims() for cpu in c.shared}),
                "speed_checks": list(self.speed_checks)}

    def _claims(self) -> list:
        return [r.compute.claim for r in self.replicas if getattr(r.compute, "claim", None) is not None]

    # --- HTTP ---------------------------------------------------------------------------------
    description = "this stage"
    server_name = "ipa-bench stage server"

    @property
    def model(self) -> str:
        return self.spec.name

    async def handle(self, req: Request) -> Response:
        return await routes.dispatch(self, req)

    def server_ready(self) -> Response:
        if self.terminating:
            return v2.error("not-ready", "shutting down: finishing the batches in flight")
        if not any(r.state == READY for r in self.replicas):
            return v2.error("not-ready", "no replica has loaded yet")
        return v2.ok({"ready": True})

    def model_ready(self) -> Response:
        ready = any(r.state == READY for r in self.replicas)
        return v2.ok({"name": self.spec.name, "ready": ready}) if ready else v2.error("not-ready", "loading")

    def model_metadata(self) -> dict:
        return v2.model_metadata(self.spec.name, [self.config.variant], f"ipa-{self.spec.mode}",
                                 parameters=self.status())

    def count_refused(self, code: str) -> None:
        self.m_bad.inc(stage=self.spec.name, code=code)

    async def configure(self, body: bytes) -> Response:
        try:
            self.apply(StageConfig(**json.loads(body)))
        except Exception as e:
            return v2.error("bad-request", f"cannot apply configuration: {e}")
        return v2.ok(self.status())

    async def infer(self, req: Request) -> Response:
        name = self.spec.name
        try:
            tensor, doc = v2.parse_infer(req.body, header_length=req.headers.get(v2.BINARY_HEADER))
        except v2.V2Error as e:
            self.count_refused(e.code)
            return e.response()
        k = tensor.batch
        replica = await self._acquire()
        try:
            compute_s = await replica.compute.run(k)
        except Exception as e:
            self.m_requests.inc(stage=name, variant=replica.variant, code="500")
            return v2.error(v2.STAGE_FAILURE, f"replica {replica.id} failed: {type(e).__name__}: {e}")
        finally:
            self._release(replica)
        self.m_requests.inc(stage=name, variant=replica.variant, code="200")
        self.m_items.inc(k, stage=name, variant=replica.variant)
        self.m_latency.observe(compute_s, stage=name, variant=replica.variant)
        self.m_batch.observe(k, stage=name)
        # what the next stage consumes, at its real size. The values are stand-ins, except the first
        # of each row: the sum of the row received, so a pipeline's answer is the sum of its request
        # whatever the stages, and a test can tell that every byte arrived.
        out = np.zeros((k, self.spec.output_elements), np.float32)
        out[:, 0] = tensor.data.reshape(k, -1).sum(axis=1, dtype=np.float64)
        out = v2.Tensor("output", out.shape, v2.INPUT_DATATYPE, out)
        return v2.infer_response(name, out, str(doc.get("id", "")), {
            "variant": replica.variant, "replica": replica.id, "compute_s": compute_s,
            "ready_replicas": self.ready_count()}, version=replica.variant, binary=v2.wants_binary(doc))


async def amain(spec: StageSpec, config: StageConfig, host: str, port: int, drain_s: float = 0.0) -> None:
    server = StageServer(spec, config)

    async def drain() -> None:
        # Keep serving while the router learns (its next status poll) that this endpoint takes
        # nothing new, then until the batches it already sent are answered.
        server.terminating = True
        log(f"stopping: draining for {drain_s:g}s, then finishing the batches in flight")
        await asyncio.sleep(drain_s)
        while not server.idle():
            await asyncio.sleep(0.05)

    await serve_until_signalled(server.handle, host, port,
                                f"stage {spec.name} ({spec.mode}) serving on http://{host}:{port}",
                                before_close=drain if drain_s > 0 else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One pipeline stage: a V2 model server with emulated or real replicas")
    p.add_argument("--spec", required=True)
    p.add_argument("--config", required=True, help="the stage's StageConfig as JSON")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--drain-s", type=float, default=0.0,
                   help="on SIGTERM, report no ready replica and keep serving this long, then finish the "
                        "batches in flight (a pod leaving a Service); 0 stops at once")
    a = p.parse_args(argv)
    spec = read_stage_spec(a.spec)
    config = StageConfig(**json.loads(a.config))
    spec.variant(config.variant)
    try:
        asyncio.run(amain(spec, config, a.host, a.port, a.drain_s))
    except OSError as e:
        log(f"cannot serve on {a.host}:{a.port}: {e}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
