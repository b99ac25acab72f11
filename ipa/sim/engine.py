"""The discrete-event simulation of one pipeline: router -> per-stage central queue -> replicas.

Model (what a live deployment does, in simulated time):

* Requests arrive at their intended send times and enter the first stage; a batch leaving a
  stage enters the next one as a whole, at the time it finished.
* Each stage has one central FIFO queue. A free replica takes a batch when ``batch`` requests are
  waiting, or, if fewer wait, once the oldest of them has waited the **batching timeout**
  ``(b - 1) / (n * h(b))``: the time a batch takes to fill when the stage runs at the capacity
  of its configuration (n replicas of throughput h(b)). The optimiser budgets ``(b - 1) / lambda``
  for the fill with ``lambda <= n * h(b)``, so the timeout never waits longer than it assumed;
  at lower load the batch leaves partly filled instead of waiting (MLServer's adaptive batching
  has the same two knobs, a size and a time).
* A replica serves one batch at a time; the batch takes a latency drawn from a lognormal fitted
  to the profiled p50/p99 of (variant, served batch size) at the variant's base cores
  (ipa/pipelines/latency.py), from one seeded stream: the same seed gives the same run.
* Drop policy: a request older (since its intended send time) than the pipeline's drop limit
  is dropped when it would enter a stage and when it is taken from a queue; it is counted
  (status ``dropped``, time, stage) and never served further. A request finishing the last stage
  after the SLA is ``late``.
* A configuration change costs what it costs: new replicas are requested at once (and their
  cores counted from then on) and serve only after the variant's load time. Replicas of a
  replaced variant keep serving until all of the new variant's replicas are up (a rolling update:
  make before break), then finish their current batch and go; replicas removed by a scale-down
  go as soon as their current batch is done; replicas still loading go at once. A batch-size
  change of a kept variant takes effect at the next batch (a queue parameter, no reload).
  Cores count every replica from the moment it is requested until it is gone.

Everything in the hot path is plain Python floats, ints, lists and a heap.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Sequence

import numpy as np

from ipa.configuration import Configuration
from ipa.errors import ConfigError
from ipa.pipelines.pipeline import Pipeline
from ipa.pipelines.latency import batch_latency_params

PENDING, OK, LATE, DROPPED, FAILED = 0, 1, 2, 3, 4
STATUS_NAMES = ("pending", "ok", "late", "dropped", "failed")

# event kinds; a heap entry is (time, sequence, kind, stage, payload)
_DONE, _READY, _TIMEOUT, _SWITCH = 0, 1, 2, 3
_NORMALS_BLOCK = 4096


class _Replica:
    __slots__ = ("variant", "batch", "timeout", "cores", "lat", "ready_at", "ready", "retiring", "gone", "items",
                 "started")

    def __init__(self, variant: str, batch: int, timeout: float, cores: int, lat: list, ready_at: float,
                 ready: bool):
        self.variant = variant
        self.batch = batch
        self.timeout = timeout
        self.cores = cores
        self.lat = lat          # lat[k] = (mu, sigma) of a batch of k requests
        self.ready_at = ready_at
        self.ready = ready
        self.retiring = False
        self.gone = False
        self.items = None       # the batch in service, or None when idle
        self.started = 0.0      # when the batch in service started


class _Stage:
    __slots__ = ("index", "name", "queue", "idle", "replicas", "target", "serving", "gen", "timer_at", "next",
                 "busy_total", "busy_at", "present", "entered_s", "left_s", "ongoing_at", "ready")

    def __init__(self, index: int, name: str):
        self.index = index
        self.name = name
        self.queue: deque[int] = deque()
        self.idle: list[_Replica] = []       # ready, not retiring, not busy
        self.replicas: list[_Replica] = []   # every replica not gone
        self.target = ""                     # the variant the configuration asks for
        self.serving = ""                    # the variant serving (old one until the new is up)
        self.gen = 0                         # invalidates a pending switchover when a newer change comes
        self.timer_at: float | None = None   # the pending batching-timeout event, if any
        self.next: _Stage | None = None
        # at the end of each whole second i (what a live stage's metrics give the autoscalers): the
        # replica-seconds of service finished so far (a counter, as the live histogram's sum),
        # the request-seconds spent at the stage so far (the live router's integral) and the ready
        # replicas. The integral at T is left_s + present * T - entered_s: the requests gone
        # contributed (left - entered), those still here (T - entered); three sums, no per-request work
        self.busy_total = 0.0
        self.busy_at: list[float] = []
        self.present = 0          # requests at the stage, queued or in service
        self.entered_s = 0.0      # sum of the entry times of every request that entered
        self.left_s = 0.0         # sum of the leaving times of every request that left
        self.ongoing_at: list[float] = []
        self.ready: list[int] = []


class Simulator:
    """One run of one pipeline over fixed send times. Drive it with ``start``, ``run_until``,
    ``apply`` (at the current time), ``drain``; read the results from the attributes."""

    def __init__(self, pipeline: Pipeline, send_times_s: Sequence[float], seed: int):
        times = np.asarray(send_times_s, dtype=float)
        if times.ndim != 1 or (times.size and (not np.all(np.isfinite(times)) or times[0] < 0)):
            raise ConfigError("send times must be a one-dimensional array of finite times >= 0")
        if times.size > 1 and np.any(np.diff(times) < 0):
            raise ConfigError("send times must be sorted")
        self.pipeline = pipeline
        self.sla_s = float(pipeline.sla_s)
        self.drop_limit_s = float(pipeline.drop_limit_s)
        self.intended: list[float] = times.tolist()
        n = len(self.intended)
        self.status = bytearray(n)
        self.done: list[float] = [math.nan] * n
        self.where = bytearray(n)            # stage index of a drop
        self._enq: list[float] = [0.0] * n  # when the request entered its current queue
        self._next = 0                       # the next request to arrive
        self._heap: list = []
        self._seq = 0
        self._rng = np.random.default_rng([int(seed), 0x51])
        self._z: list[float] = []
        self._zi = 0
        self.now = 0.0
        self.stages = [_Stage(i, name) for i, name in enumerate(pipeline.stage_names)]
        for a, b in zip(self.stages, self.stages[1:]):
            a.next = b
        self._lat_cache: dict[tuple[int, str], list] = {}
        self.cores = 0
        self.cores_log: list[tuple[float, int]] = []      # (time, provisioned cores from then on)
        self.serving_log: list[tuple[float, str, str]] = []  # (time, stage, variant serving from then on)
        self.started = False
        self._next_sample = 1                # the next second boundary whose stage state is recorded

    # --- configuration --------------------------------------------------------------------
    def _latency_params(self, stage: _Stage, variant: str) -> list:
        key = (stage.index, variant)
        lat = self._lat_cache.get(key)
        if lat is None:
            profile = self.pipeline.stage_profile(stage.name, variant)  # raises on an unknown variant
            lat = batch_latency_params(profile, max(profile.rows))
            self._lat_cache[key] = lat
        return lat

    def _check(self, configuration: Configuration) -> None:
        names = tuple(configuration.stages)
        if names != self.pipeline.stage_names:
            raise ConfigError(f"configuration stages {list(names)} do not match the pipeline's "
                              f"{list(self.pipeline.stage_names)}")
        for name, sc in configuration.stages.items():
            profile = self.pipeline.stage_profile(name, sc.variant)
            if sc.batch not in profile.rows:
                raise ConfigError(f"stage {name!r}: batch {sc.batch} is not a profiled batch of "
                                  f"{sc.variant} (profiled: {sorted(profile.rows)})")
            if sc.replicas < 1:
                raise ConfigError(f"stage {name!r}: replicas must be >= 1, got {sc.replicas}")
            if sc.cores < 1:
                raise ConfigError(f"stage {name!r}: cores must be >= 1, got {sc.cores}")

    def _log_cores(self, t: float) -> None:
        log = self.cores_log
        if log and log[-1][0] == t:
            log[-1] = (t, self.cores)
        else:
            log.append((t, self.cores))

    def _set_serving(self, st: _Stage, variant: str, t: float) -> None:
        if st.serving != variant:
            st.serving = variant
            self.serving_log.append((t, st.name, variant))

    def start(self, initial: Configuration) -> None:
        """Bring the pipeline up at ``initial``: its replicas are loaded before the first request."""
        if self.started:
            raise RuntimeError("simulator already started")
        self._check(initial)
        self.started = True
        for st in self.stages:
            sc = initial.stages[st.name]
            timeout = self._timeout(st, sc.variant, sc.batch, sc.replicas)
            lat = self._latency_params(st, sc.variant)
            for _ in range(sc.replicas):
                rep = _Replica(sc.variant, sc.batch, timeout, sc.cores, lat, 0.0, True)
                st.replicas.append(rep)
                st.idle.append(rep)
                self.cores += sc.cores
            st.target = sc.variant
            self._set_serving(st, sc.variant, 0.0)
        self._log_cores(0.0)

    def _timeout(self, st: _Stage, variant: str, batch: int, replicas: int) -> float:
        if batch <= 1:
            return 0.0
        throughput = self.pipeline.stage_profile(st.name, variant).throughput(batch)
        return (batch - 1) / (replicas * throughput)

    def apply(self, configuration: Configuration) -> float:
        """Move to ``configuration`` at the current time; returns when the change is complete
        (every new replica up and every replaced one told to go)."""
        self._check(configuration)
        t = self.now
        complete = t
        for st in self.stages:
            sc = configuration.stages[st.name]
            v, b, n = sc.variant, sc.batch, sc.replicas
            lat = self._latency_params(st, v)
            timeout = self._timeout(st, v, b, n)
            profile = self.pipeline.stage_profile(st.name, v)
            alive = [r for r in st.replicas if not r.retiring]
            same = [r for r in alive if r.variant == v]
            # keep busy replicas first, then idle ones, then loading ones: a scale-down then frees
            # cores at once (loading and idle replicas go immediately, busy ones after their batch)
            same.sort(key=lambda r: (not r.ready, r.items is None))
            kept, extra = same[:n], same[n:]
            for r in extra:
                self._retire(st, r, t)
            # the target is up when every replica of it is: kept ones may still be loading
            ready_at = t
            for r in kept:
                r.batch, r.timeout = b, timeout
                ready_at = max(ready_at, r.ready_at)
            for _ in range(n - len(kept)):
                rep = _Replica(v, b, timeout, sc.cores, lat, t + profile.load_time_s, False)
                st.replicas.append(rep)
                self.cores += sc.cores
                ready_at = max(ready_at, rep.ready_at)
                self._push(rep.ready_at, _READY, st, rep)
            others = [r for r in alive if r.variant != v]
            for r in others:
                if not r.ready:
                    self._retire(st, r, t)  # loading a variant nobody wants any more
            st.target = v
            st.gen += 1
            if ready_at <= t:
                self._switch(st, t)
            else:
                self._push(ready_at, _SWITCH, st, st.gen)
            complete = max(complete, ready_at)
        self._log_cores(t)
        return complete

    def _switch(self, st: _Stage, t: float) -> None:
        """The target variant is up: replicas of any other variant finish their batch and go."""
        for r in [r for r in st.replicas if r.variant != st.target and not r.retiring]:
            self._retire(st, r, t)
        self._set_serving(st, st.target, t)
        self._log_cores(t)

    def _retire(self, st: _Stage, rep: _Replica, t: float) -> None:
        if rep.retiring:
            return
        rep.retiring = True
        if not rep.ready:
            self._remove(st, rep, t)
        elif rep.items is None:
            st.idle.remove(rep)
            self._remove(st, rep, t)
        # else: busy; it goes when its batch is done

    def _remove(self, st: _Stage, rep: _Replica, t: float) -> None:
        rep.gone = True
        st.replicas.remove(rep)
        self.cores -= rep.cores
        self._log_cores(t)

    # --- the event loop -----------------------------------------------------------------------
    def _push(self, t: float, kind: int, st: _Stage, payload) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, st, payload))

    def run_until(self, until: float) -> None:
        """Process every event before ``until``; afterwards ``now == until``."""
        if until < self.now:
            raise ValueError(f"cannot run back in time from {self.now} to {until}")
        heap = self._heap
        times = self.intended
        n = len(times)
        first = self.stages[0]
        enter = self._enter
        i = self._next
        pop = heapq.heappop
        while True:
            ta = times[i] if i < n else math.inf
            if heap and heap[0][0] <= ta:
                t = heap[0][0]
                if t >= until:
                    break
                if t >= self._next_sample:
                    self._sample_stages(t)
                _, _, kind, st, payload = pop(heap)
                self.now = t
                if kind == _DONE:
                    self._batch_done(t, st, payload)
                elif kind == _READY:
                    if not payload.gone:
                        payload.ready = True
                        st.idle.append(payload)
                        self._dispatch(st, t)
                elif kind == _TIMEOUT:
                    if st.timer_at == t:
                        st.timer_at = None
                    self._dispatch(st, t)
                elif payload == st.gen:  # _SWITCH, unless a newer change superseded it
                    self._switch(st, t)
            else:
                if ta >= until:
                    break
                if ta >= self._next_sample:
                    self._sample_stages(ta)
                self._next = i = i + 1
                self.now = ta
                enter(first, i - 1, ta)
        if until < math.inf:
            self.now = float(until)
            self._sample_stages(until)

    def _sample_stages(self, t: float) -> None:
        """Record each stage's state at every second boundary up to ``t``, before any event at
        ``t``: the state after everything that happened before the boundary."""
        while self._next_sample <= t:
            for st in self.stages:
                st.busy_at.append(st.busy_total)
                st.ongoing_at.append(st.left_s + st.present * self._next_sample - st.entered_s)
                st.ready.append(sum(1 for r in st.replicas if r.ready and not r.retiring))
            self._next_sample += 1

    def stage_series(self, first_s: int, until_s: int) -> dict[str, tuple[list, list, list]]:
        """Per stage, (busy replica-seconds, mean requests at the stage, ready replicas) of the
        whole seconds ``first_s .. until_s - 1``, for the seconds already recorded."""
        out = {}
        for st in self.stages:
            n = min(until_s, len(st.ready))
            busy, ongoing = ([at[i] - (at[i - 1] if i else 0.0) for i in range(first_s, n)]
                             for at in (st.busy_at, st.ongoing_at))
            out[st.name] = (busy, ongoing, st.ready[first_s:n])
        return out

    def drain(self) -> float:
        """Send what is left of the send times (they all lie inside the workload), then run until
        every request has an outcome; returns the time of the last event. Nothing adapts while
        draining: the configuration stays as the last decision left it."""
        self.run_until(math.inf)  # leaves ``now`` at the last event
        pending = self.status.count(PENDING)
        if pending:
            raise AssertionError(f"{pending} request(s) without an outcome after draining")  # conservation
        stuck = {st.name: st.present for st in self.stages if st.present}
        if stuck:  # the request-seconds integral's bookkeeping missed an arrival or a departure
            raise AssertionError(f"requests still counted at stages after draining: {stuck}")
        return self.now

    def _draw(self, lat: tuple[float, float]) -> float:
        if self._zi >= len(self._z):
            self._z = self._rng.standard_normal(_NORMALS_BLOCK).tolist()
            self._zi = 0
        z = self._z[self._zi]
        self._zi += 1
        return math.exp(lat[0] + lat[1] * z)

    def _drop(self, rid: int, t: float, stage: int) -> None:
        self.status[rid] = DROPPED
        self.done[rid] = t
        self.where[rid] = stage

    def _enter(self, st: _Stage, rid: int, t: float) -> None:
        if t - self.intended[rid] > self.drop_limit_s:
            self._drop(rid, t, st.index)
            return
        st.queue.append(rid)
        self._enq[rid] = t
        st.present += 1
        st.entered_s += t
        if st.idle:
            self._dispatch(st, t)

    def _dispatch(self, st: _Stage, t: float) -> None:
        q = st.queue
        idle = st.idle
        intended = self.intended
        limit = self.drop_limit_s
        while idle and q:
            while q and t - intended[q[0]] > limit:
                self._drop(q.popleft(), t, st.index)
                st.present -= 1
                st.left_s += t
            if not q:
                return
            rep = idle[-1]
            b = rep.batch
            if len(q) < b:
                deadline = self._enq[q[0]] + rep.timeout
                if t < deadline:
                    if st.timer_at is None or deadline < st.timer_at:
                        st.timer_at = deadline
                        self._push(deadline, _TIMEOUT, st, None)
                    return
            items = []
            while q and len(items) < b:
                rid = q.popleft()
                if t - intended[rid] > limit:
                    self._drop(rid, t, st.index)
                    st.present -= 1
                    st.left_s += t
                else:
                    items.append(rid)
            if not items:
                continue
            idle.pop()
            rep.items = items
            rep.started = t
            self._seq += 1
            heapq.heappush(self._heap, (t + self._draw(rep.lat[len(items)]), self._seq, _DONE, st, rep))

    def _batch_done(self, t: float, st: _Stage, rep: _Replica) -> None:
        items = rep.items
        rep.items = None
        st.busy_total += t - rep.started
        st.present -= len(items)
        st.left_s += t * len(items)
        intended = self.intended
        nxt = st.next
        if nxt is None:
            status, done, sla = self.status, self.done, self.sla_s
            for rid in items:
                status[rid] = OK if t - intended[rid] <= sla else LATE
                done[rid] = t
        else:
            limit = self.drop_limit_s
            q = nxt.queue
            enq = self._enq
            entered = len(q)
            for rid in items:
                if t - intended[rid] > limit:
                    self._drop(rid, t, nxt.index)
                else:
                    q.append(rid)
                    enq[rid] = t
            entered = len(q) - entered
            nxt.present += entered
            nxt.entered_s += t * entered
            if nxt.idle and q:
                self._dispatch(nxt, t)
        if rep.retiring:
            self._remove(st, rep, t)
        else:
            st.idle.append(rep)
            if st.queue:
                self._dispatch(st, t)
