"""What every live backend shares: the run clock, the Locust replay, the Prometheus monitor, the
router's ledger, the files a run folder keeps, and the order of start, stop and abort.

A live backend (``local``, ``kubernetes``) is only what differs: how the pipeline comes up and
goes away (``bring_up``, ``tear_down``), where its router and Prometheus answer, how a
configuration is applied, what it observes while the run goes on (``observe``, every
``poll_s``), how many times its router restarted, and which logs it keeps.

A run: ``bring_up`` -> the replay is launched and waits -> the clock's t0 (the next whole second)
-> the monitor -> the observer thread -> the replay starts at t0. ``stop``: the replay sends the
rest and drains every answer -> the router's ledger (final now) -> the observer stops -> the
Prometheus series and the run's logs are saved -> ``tear_down``. ``abort`` (a run cut short):
the replay is stopped at once (its log keeps what was sent) -> ``tear_down``.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

from ipa.backends.base import AppliedChange, RunOutput, WallClock, write_table
from ipa.configuration import Configuration
from ipa.errors import ConfigError, IpaError
from ipa.monitoring.reading import Monitor
from ipa.monitoring.router_ledger import ROUTER_COUNTS, save_router_counts
from ipa.pipelines import wire
from ipa.pipelines.pipeline import Pipeline

# the replay waits this long past the drop limit for the last answers: any later one is a
# request the pipeline lost, and the run's records say so
DRAIN_MARGIN_S = 10.0


class LoadReplay(Protocol):
    files: dict[str, str]  # run-folder name -> path, for RunOutput.extra_files

    def start(self) -> None:
        """Begin sending at the intended times (time zero = the clock's t0)."""

    def finish(self):
        """Wait for the replay to end and every request to be accounted; the per-request table."""

    def interrupt(self) -> None:
        """Stop sending now; the log accounts for what was sent."""


LoadFactory = Callable[[str, Sequence[float], "Path | None"], LoadReplay]  # (router URL, send times, work dir)
MonitorFactory = Callable[[str, WallClock], Monitor]  # (Prometheus URL, clock)


class LocustLoad:
    """The open-loop Locust replay (ipa.loadgen) aimed at the router, in a process group of its
    own: the load comes from outside the pipeline, as a user's would."""

    def __init__(self, router_url: str, pipeline: Pipeline, send_times_s: Sequence[float], folder: Path,
                 clock: WallClock, backend: str):
        from ipa.loadgen import LoadGenerator  # noqa: PLC0415 (live extra)
        from ipa.processes import ProcessGroup  # noqa: PLC0415
        self.pipeline, self.clock, self.backend = pipeline, clock, backend
        self.files: dict[str, str] = {}
        self.group = ProcessGroup()
        self.gen = LoadGenerator(self.group, folder, router_url, f"/v2/models/{pipeline.name}/infer",
                                 send_times_s, wire.input_elements(pipeline.stages[0].input),
                                 drain_s=pipeline.drop_limit_s + DRAIN_MARGIN_S)
        self.gen.launch()

    def start(self) -> None:
        self.gen.start(self.clock.t0_wall)

    def interrupt(self) -> None:
        try:
            print(f"{self.backend} backend: run cut short; the load generator's log is {self.gen.interrupt()}",
                  file=sys.stderr, flush=True)
        finally:
            self.group.stop()

    def finish(self):
        from ipa.loadgen import classify, send_lag  # noqa: PLC0415
        try:
            log_csv = self.gen.wait()
            self.files["loadgen_requests.csv"] = str(log_csv)
            requests = classify(log_csv, self.pipeline.sla_s)
        finally:
            self.group.stop()
            loadgen_log = self.gen.folder / "logs" / "loadgen.log"
            if loadgen_log.exists():
                self.files["logs/loadgen.log"] = str(loadgen_log)
        lag = send_lag(requests)
        if lag["lag_p99_s"] > 0.1:
            print(f"{self.backend} backend: warning: Locust sent late (p99 lag {lag['lag_p99_s']:.3f}s); "
                  "latencies still count from the intended send times", flush=True)
        return requests


class _NotStarted:
    log: list = []

    def read(self, window_s: int):
        raise RuntimeError("the backend is not started")


class LiveBackend:
    """The shared half of a live backend; subclasses fill in the hooks below."""

    name = "live"
    poll_s = 0.25
    observing = "status poll"  # what ``observe`` does, in the run folder's status errors

    def __init__(self, work_dir: Path | None, load_factory: LoadFactory | None = None,
                 monitor_factory: MonitorFactory | None = None):
        self.work_dir = Path(work_dir) if work_dir else None
        self._load_factory, self._monitor_factory = load_factory, monitor_factory
        self.clock = WallClock()
        self.monitor: Monitor = _NotStarted()
        self.pipeline: Pipeline | None = None
        self.status_errors: list[tuple[float, str]] = []  # (run time, message): written out at stop
        self._lock = threading.Lock()
        self._load: LoadReplay | None = None
        self._stop_poll = threading.Event()
        self._poller: threading.Thread | None = None
        self._started = False

    # --- hooks ------------------------------------------------------------------------------
    @property
    def router_url(self) -> str:
        raise NotImplementedError

    @property
    def prometheus_url(self) -> str:
        raise NotImplementedError

    def bring_up(self, pipeline: Pipeline, initial: Configuration) -> None:
        """Start the pipeline at ``initial`` and return once it serves; clean up after itself on failure."""
        raise NotImplementedError

    def begin(self, initial: Configuration) -> None:
        """The run's records from t0 on (called after the clock is set)."""

    def observe(self) -> None:
        """One look at the running pipeline (after each ``next_look``); an IpaError is noted, not fatal."""

    def router_restarts(self) -> int:
        return 0

    def stage_counters(self) -> tuple[dict[str, list[str]], int] | None:
        """Where each stage's servers answer (base URLs, pipeline order) and how many restarted,
        for the ledger's count of what each stage served; None where the servers that served the
        run cannot all be read at its end."""
        return None

    def records(self) -> dict:
        """RunOutput's ``applied``, ``provisioned_cores`` and ``serving_variants``."""
        return {}

    def logs(self) -> dict[str, str]:
        """The backend's own logs and files for the run folder (name -> path)."""
        return {}

    def tear_down(self) -> None:
        """Stop everything the run started (idempotent)."""

    # --- the interface ----------------------------------------------------------------------
    def start(self, pipeline: Pipeline, initial: Configuration, send_times_s: Sequence[float]) -> None:
        if self._started:
            raise RuntimeError(f"the {self.name} backend runs one experiment; make a new one")
        self._started = True
        self.pipeline = pipeline
        self.bring_up(pipeline, initial)
        try:
            self._load = self._make_load(send_times_s)  # launched and waiting for its t0
            self.clock.reset()  # t0: the next whole second, the replay told of it before it comes
            self.monitor = self._make_monitor()
            self.begin(initial)
            self._poller = threading.Thread(target=self._poll, daemon=True, name=f"ipa-{self.name}-observer")
            self._poller.start()
            self._load.start()
        except BaseException as e:
            self._tear_down_after(e)
            raise

    def stop(self) -> RunOutput:
        if not self._started:
            raise RuntimeError(f"the {self.name} backend is not started")
        requests = None
        extra: dict[str, str] = {}
        try:
            if self._load is not None:
                requests = self._load.finish()
                extra.update(getattr(self._load, "files", {}))
            if requests is not None:  # every answer is in: the router's ledger is final
                extra.update(self._save_router_counts())
            end = time.time()
            self._stop_poll.set()
            if self._poller is not None:
                self._poller.join(5)
            self._observe_noting(f"final {self.observing}")
            extra.update(self._save_series(end))
            extra.update(self.logs())
            if self.work_dir is not None:
                extra["status_poll_errors.csv"] = write_table(self.work_dir / "status_poll_errors.csv",
                                                              ("time_s", "message"), self.status_errors)
        finally:
            self._stop_poll.set()
            self.tear_down()
        if requests is None:
            raise IpaError(f"the {self.name} backend stopped before its load generator ran: no request records")
        with self._lock:
            return RunOutput(requests=requests, extra_files=extra, **self.records())

    def abort(self) -> None:
        """The run was cut short (Ctrl-C, SIGTERM, an error): stop the load now rather than let it
        replay the rest of the trace, then everything else."""
        if not self._started:
            return
        try:
            if self._load is not None:
                try:
                    self._load.interrupt()
                except IpaError as e:  # still tear the rest down
                    print(f"{self.name} backend: {e}", file=sys.stderr, flush=True)
        finally:
            self._stop_poll.set()
            self.tear_down()

    # --- shared parts -----------------------------------------------------------------------
    def note(self, message: str) -> None:
        """A problem the run survived, for the run folder's status errors."""
        self.status_errors.append((round(self.clock.now(), 3), message))

    def _make_load(self, send_times_s: Sequence[float]) -> LoadReplay:
        if self._load_factory is not None:
            return self._load_factory(self.router_url, send_times_s, self.work_dir)
        if self.work_dir is None:
            raise ConfigError(f"the {self.name} backend needs a work folder for the load generator's log "
                              "(ipa run gives it one inside the run folder)")
        return LocustLoad(self.router_url, self.pipeline, send_times_s, self.work_dir, self.clock, self.name)

    def _make_monitor(self) -> Monitor:
        if self._monitor_factory is not None:
            return self._monitor_factory(self.prometheus_url, self.clock)
        from ipa.monitoring.monitor import PrometheusMonitor  # noqa: PLC0415 (live extra)
        return PrometheusMonitor(self.prometheus_url, self.clock.t0_wall)

    def next_look(self) -> None:
        """Block until the next ``observe`` is due: ``poll_s`` here; a backend that can watch what
        it observes waits for a change instead."""
        self._stop_poll.wait(self.poll_s)

    def _poll(self) -> None:
        while True:
            self.next_look()
            if self._stop_poll.is_set():
                return
            self._observe_noting(self.observing)

    def _observe_noting(self, what: str) -> None:
        try:
            self.observe()
        except IpaError as e:  # the pipeline's API can blink; the run goes on, the run folder says so
            self.note(f"{what}: {e}")

    def _save_router_counts(self) -> dict[str, str]:
        if self.work_dir is None:
            return {}
        try:
            path = self.work_dir / ROUTER_COUNTS
            counts = save_router_counts(self.router_url, self.pipeline.name, path, self.router_restarts(),
                                        *(self.stage_counters() or (None, 0)))
            if counts.stage_counts_error:
                self.note(f"stage counters: {counts.stage_counts_error}")
            return {ROUTER_COUNTS: str(path)}
        except IpaError as e:  # the run's check reports the ledger missing
            print(f"{self.name} backend: router ledger: {e}", flush=True)
            self.note(f"router ledger: {e}")
            return {}

    def _save_series(self, end_wall: float) -> dict[str, str]:
        """What Prometheus stored over the run, and what the monitor noted of it."""
        if self.work_dir is None:
            return {}
        out = {"monitor_log.csv": write_table(self.work_dir / "monitor_log.csv", ("time_s", "message"),
                                              getattr(self.monitor, "log", []))}
        from ipa.monitoring.monitor import export_series  # noqa: PLC0415 (live extra)
        series = self.work_dir / "prometheus_series.csv"
        try:
            export_series(self.prometheus_url, self.clock.t0_wall, end_wall, series)
            out["prometheus_series.csv"] = str(series)
        except Exception as e:  # noqa: BLE001 - the series are extra; the run's records are not
            print(f"{self.name} backend: Prometheus series not exported: {e}", flush=True)
        return out

    def _tear_down_after(self, error: BaseException) -> None:
        """Stop what a failed start began; a failing clean-up is added to the original error's
        notes instead of hiding it."""
        try:
            self._stop_poll.set()
            self.tear_down()
        except IpaError as cleanup:
            error.add_note(f"cleanup also failed: {cleanup}")


def initial_records(initial: Configuration) -> tuple[list[AppliedChange], list[tuple[float, float]],
                                                      list[tuple[float, str, str]]]:
    """A run's applied changes, provisioned cores and serving variants at t0."""
    return ([AppliedChange(0.0, initial, 0.0, "initial")], [(0.0, initial.total_cores)],
            [(0.0, s, c.variant) for s, c in initial.stages.items()])
