"""The `local` backend: the pipeline as real processes on this machine.

Stage processes and the router (ipa.serving), a real Prometheus scraping them every second
(ipa.monitoring), and Locust replaying the intended send times open-loop (ipa.loadgen). The
clock is the wall clock from t0, the moment the first request is due; the monitor reads the
router's request counter through PromQL. Every process is stopped at ``stop`` (and on errors,
Ctrl-C, SIGTERM, or interpreter exit). ``stop`` ends a run that reached its end: Locust sends the
rest of the trace and every answer is drained. ``abort`` ends a run cut short: Locust is stopped
at once (its log keeps what was sent) and nothing is returned, so a user's Ctrl-C takes seconds.
"""
from __future__ import annotations

import math
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

from ipa.backends.base import AppliedChange, RunOutput, WallClock, write_table
from ipa.configuration import Configuration
from ipa.errors import ConfigError, IpaError
from ipa.loadgen import LoadGenerator, classify, send_lag
from ipa.monitoring.monitor import PrometheusMonitor, export_series
from ipa.monitoring.router_ledger import ROUTER_COUNTS, save_router_counts
from ipa.pipelines.pipeline import Pipeline
from ipa.serving.modes import MODES
from ipa.serving.stack import LiveStack

STATUS_POLL_S = 0.25


class _NotStarted:
    def read(self, window_s: int):
        raise RuntimeError("the local backend is not started")


class LocalBackend:
    name = "local"

    def __init__(self, *, seed: int = 0, mode: str = "emulated", quick: bool = False, work_dir: str | None = None,
                 load_time_scale: float = 1.0, prometheus_binary: str | None = None, drain_s: float | None = None,
                 ready_timeout_s: float = 600.0):
        if mode not in MODES:
            raise ConfigError(f"local backend: mode must be one of {MODES}, got {mode!r}")
        if not (load_time_scale >= 0 and math.isfinite(load_time_scale)):
            raise ConfigError(f"local backend: load_time_scale must be >= 0, got {load_time_scale!r}")
        self.seed, self.mode, self.quick, self.load_time_scale = int(seed), mode, quick, load_time_scale
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ipa-local-"))
        self.prometheus_binary, self.drain_s, self.ready_timeout_s = prometheus_binary, drain_s, ready_timeout_s
        self.clock = WallClock()
        self.monitor = _NotStarted()
        self.stack: LiveStack | None = None
        self.loadgen: LoadGenerator | None = None
        self._applied: list[AppliedChange] = []
        self._cores: list[tuple[float, int]] = []
        self._serving: list[tuple[float, str, str]] = []
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._lock = threading.Lock()
        self.status_errors: list[tuple[float, str]] = []  # (run time, message): written out at stop

    # --- the interface ------------------------------------------------------------------------
    def start(self, pipeline: Pipeline, initial: Configuration, send_times_s: Sequence[float]) -> None:
        if self.stack is not None:
            raise RuntimeError("the local backend runs one experiment; make a new one")
        self.pipeline = pipeline
        self.stack = LiveStack(pipeline, self.work_dir, mode=self.mode, quick=self.quick, seed=self.seed,
                               load_time_scale=self.load_time_scale, prometheus_binary=self.prometheus_binary)
        try:
            self.stack.start(initial)
            # the experiment starts from a deployment that is up, as the simulator's does
            self._wait_configured(initial, self.ready_timeout_s)
            drain = self.drain_s if self.drain_s is not None else pipeline.drop_limit_s + 10.0
            self.loadgen = LoadGenerator(self.stack.group, self.work_dir, self.stack.router_url,
                                         f"/v2/models/{pipeline.name}/infer", send_times_s, drain_s=drain)
            self.loadgen.launch()
            self.clock.reset()  # t0: the next whole second, Locust told of it beforehand
            t0 = self.clock.t0_wall
            self.monitor = PrometheusMonitor(self.stack.prometheus.url, t0)
            self._applied = [AppliedChange(0.0, initial, 0.0, "initial")]
            self._cores = [(0.0, initial.total_cores)]
            self._serving = [(0.0, s, c.variant) for s, c in initial.stages.items()]
            self._target = initial
            self._pending: list[int] = []
            self.loadgen.start(t0)
            self._poller = threading.Thread(target=self._poll, daemon=True, name="ipa-local-status")
            self._poller.start()
        except BaseException:
            self._teardown()
            raise

    def apply(self, configuration: Configuration) -> None:
        if self.stack is None:
            raise RuntimeError("the local backend is not started")
        requested = self.clock.now()
        self.stack.apply(configuration)  # IpaError when the router is unreachable: the adapter keeps the old one
        with self._lock:
            self._target = configuration
            self._applied.append(AppliedChange(requested, configuration, None))
            self._pending.append(len(self._applied) - 1)

    def stop(self) -> RunOutput:
        if self.stack is None:
            raise RuntimeError("the local backend is not started")
        try:
            extra: dict[str, str] = {}
            requests = None
            if self.loadgen is not None and self.loadgen.child is not None and self.loadgen.t0 is not None:
                log_csv = self.loadgen.wait()
                requests = classify(log_csv, self.pipeline.sla_s)
                extra["loadgen_requests.csv"] = str(log_csv)
                lag = send_lag(requests)
                if lag["lag_p99_s"] > 0.1:
                    print(f"local backend: warning: Locust sent late (p99 lag {lag['lag_p99_s']:.3f}s); "
                          "latencies still count from the intended send times", flush=True)
            if requests is not None:  # every response is in: the router's ledger is final
                restarts = sum(1 for _, name, event in self.stack.group.events
                               if name == "router" and event.startswith("restarted"))
                try:
                    extra[ROUTER_COUNTS] = save_router_counts(self.stack.router_url, self.pipeline.name,
                                                              self.work_dir / ROUTER_COUNTS, restarts)
                except IpaError as e:  # the run's check reports the ledger missing
                    print(f"local backend: {e}", flush=True)
                    self.status_errors.append((round(self.clock.now(), 3), str(e)))
            end = time.time()
            self._poll_stop.set()
            if self._poller is not None:
                self._poller.join(2)
            if self.stack.prometheus is not None:
                series = self.work_dir / "prometheus_series.csv"
                try:
                    export_series(self.stack.prometheus.url, self.clock.t0_wall, end, series)
                    extra["prometheus_series.csv"] = str(series)
                except Exception as e:  # noqa: BLE001 - the series are extra; the run's records are not
                    print(f"local backend: Prometheus series not exported: {e}", flush=True)
            extra["monitor_log.csv"] = write_table(self.work_dir / "monitor_log.csv", ("time_s", "message"),
                                                   getattr(self.monitor, "log", []))
            extra["process_events.csv"] = write_table(
                self.work_dir / "process_events.csv", ("time_s", "process", "event"),
                ((round(t - self.clock.t0_wall, 3), n, e) for t, n, e in self.stack.group.events))
            extra["status_poll_errors.csv"] = write_table(self.work_dir / "status_poll_errors.csv",
                                                          ("time_s", "message"), self.status_errors)
        finally:
            self._teardown()
        for log in sorted((self.work_dir / "logs").glob("*.log")):
            extra[f"logs/{log.name}"] = str(log)
        prom_log = self.work_dir / "prometheus" / "prometheus.log"
        if prom_log.exists():
            extra["logs/prometheus.log"] = str(prom_log)
        if requests is None:
            raise IpaError("the local backend stopped before its load generator ran: no request records")
        return RunOutput(requests=requests, applied=list(self._applied), extra_files=extra,
                         provisioned_cores=list(self._cores), serving_variants=list(self._serving))

    def abort(self) -> None:
        """The run was cut short (Ctrl-C, SIGTERM, an error): stop the load generator now rather than
        let it replay the rest of the trace, then every other process. The load generator's log in
        the work folder accounts for the requests it had sent; the run has no records to return."""
        if self.stack is None:
            return
        try:
            if self.loadgen is not None and self.loadgen.child is not None:
                try:
                    log = self.loadgen.interrupt()
                    print(f"local backend: run cut short; the load generator's log is {log}", file=sys.stderr,
                          flush=True)
                except IpaError as e:  # still tear the rest down
                    print(f"local backend: {e}", file=sys.stderr, flush=True)
        finally:
            self._teardown()

    # --- helpers ------------------------------------------------------------------------------
    def _teardown(self) -> None:
        self._poll_stop.set()
        if self.stack is not None:
            self.stack.stop()

    def _wait_configured(self, config: Configuration, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self._reached(self.stack.status(), config):
                    return
            except IpaError:
                pass
            time.sleep(0.1)
        raise IpaError(f"the live pipeline did not load its initial configuration within {timeout_s:g}s; "
                       f"logs in {self.work_dir / 'logs'}")

    @staticmethod
    def _reached(status: dict, config: Configuration) -> bool:
        for st in status["stages"]:
            proc, want = st.get("process") or {}, config.stages[st["stage"]]
            if proc.get("variants") != [want.variant] or proc.get("ready_target") != want.replicas \
                    or proc.get("loading") or proc.get("draining"):
                return False
        return True

    def _poll(self) -> None:
        """Observe provisioned cores, serving variants and when each change completed."""
        serving = {s: v for _, s, v in self._serving}
        while not self._poll_stop.wait(STATUS_POLL_S):
            try:
                status = self.stack.status()
            except IpaError as e:
                self.status_errors.append((round(self.clock.now(), 3), str(e)))
                continue
            t = self.clock.now()
            cores = sum(int((st.get("process") or {}).get("cores", 0)) for st in status["stages"])
            with self._lock:
                if cores != self._cores[-1][1] and all(st.get("process") for st in status["stages"]):
                    self._cores.append((t, cores))
                for st in status["stages"]:
                    vs = (st.get("process") or {}).get("variants") or []
                    if len(vs) == 1 and vs[0] != serving[st["stage"]]:
                        serving[st["stage"]] = vs[0]
                        self._serving.append((t, st["stage"], vs[0]))
                if self._pending and self._reached(status, self._target):
                    for i in self._pending:
                        a = self._applied[i]
                        self._applied[i] = AppliedChange(a.requested_at_s, a.configuration, t, a.note)
                    self._pending = []


def make_backend(seed: int = 0, mode: str = "emulated", quick: bool = False, work_dir: str | None = None,
                 load_time_scale: float = 1.0, prometheus_binary: str | None = None, drain_s: float | None = None,
                 **unknown) -> LocalBackend:
    if unknown:
        raise ConfigError(f"local backend: unknown option(s) {sorted(unknown)}; known: seed, mode, quick, "
                          "work_dir, load_time_scale, prometheus_binary, drain_s")
    return LocalBackend(seed=seed, mode=mode, quick=quick, work_dir=work_dir, load_time_scale=load_time_scale,
                        prometheus_binary=prometheus_binary, drain_s=drain_s)
