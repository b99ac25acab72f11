"""The `local` backend: the pipeline as real processes on this machine.

Stage processes and the router (ipa.serving), a real Prometheus scraping them every second
(ipa.monitoring), and Locust replaying the intended send times open-loop (ipa.loadgen). What
every live backend shares (the clock from t0, the replay, the PromQL monitor, the router's
ledger, stop and abort) is ``ipa.backends.live``; this module is how the processes start, take a
configuration and are observed. Every process is stopped at ``stop`` (and on errors, Ctrl-C,
SIGTERM, or interpreter exit).
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ipa.backends.base import AppliedChange, write_table
from ipa.backends.live import LiveBackend, initial_records
from ipa.configuration import Configuration
from ipa.errors import ConfigError, IpaError
from ipa.pipelines.pipeline import Pipeline
from ipa.pipelines.profiles import REPEATABILITY_LIMIT
from ipa.serving.modes import MODES
from ipa.serving.stack import LiveStack


@dataclass(frozen=True)
class LocalSettings:
    """The options of `ipa run --backend local --backend-option KEY=VALUE`."""

    seed: int = 0  # emulated replicas' latency draws
    mode: str = "emulated"  # ipa.serving.modes
    quick: bool = False  # real mode: tiny configs of the same architectures (tests)
    work_dir: str | None = None  # logs, specs and Prometheus' data (ipa run: inside the run folder)
    load_time_scale: float = 1.0  # a replica's profiled load time is waited out times this
    prometheus_binary: str | None = None  # default: `prometheus` on PATH
    ready_timeout_s: float = 600.0  # how long the initial configuration may take to load

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"local backend: mode must be one of {MODES}, got {self.mode!r}")
        if not (self.load_time_scale >= 0 and math.isfinite(self.load_time_scale)):
            raise ConfigError(f"local backend: load_time_scale must be >= 0, got {self.load_time_scale!r}")
        if not self.ready_timeout_s > 0:
            raise ConfigError(f"local backend: ready_timeout_s must be > 0, got {self.ready_timeout_s!r}")


class LocalBackend(LiveBackend):
    name = "local"

    def __init__(self, settings: LocalSettings | None = None):
        self.settings = settings or LocalSettings()
        super().__init__(Path(self.settings.work_dir) if self.settings.work_dir
                         else Path(tempfile.mkdtemp(prefix="ipa-local-")))
        self.stack: LiveStack | None = None
        self._applied: list[AppliedChange] = []
        self._cores: list[tuple[float, int]] = []
        self._serving: list[tuple[float, str, str]] = []
        self._pending: list[int] = []
        self._seen_serving: dict[str, str] = {}
        self._speed_checks: dict[str, list[dict]] = {}

    @property
    def router_url(self) -> str:
        return self.stack.router_url

    @property
    def prometheus_url(self) -> str:
        return self.stack.prometheus.url

    def bring_up(self, pipeline: Pipeline, initial: Configuration) -> None:
        s = self.settings
        self.stack = LiveStack(pipeline, self.work_dir, mode=s.mode, quick=s.quick, seed=s.seed,
                               load_time_scale=s.load_time_scale, prometheus_binary=s.prometheus_binary)
        try:
            self.stack.start(initial)
            # the experiment starts from a deployment that is up, as the simulator's does
            self._wait_configured(initial, s.ready_timeout_s)
            status = self.stack.status()["stages"]
            self._speed_checks = {st["stage"]: (st.get("process") or {}).get("speed_checks") or [] for st in status}
            refusal = speed_refusal(pipeline, initial, self._speed_checks)
            if refusal:
                raise ConfigError(refusal)
        except BaseException:
            self.stack.stop()
            raise

    def begin(self, initial: Configuration) -> None:
        self._applied, self._cores, self._serving = initial_records(initial)
        self._seen_serving = {stage: variant for _, stage, variant in self._serving}
        self._target = initial

    def apply(self, configuration: Configuration) -> None:
        if self.stack is None:
            raise RuntimeError("the local backend is not started")
        requested = self.clock.now()
        self.stack.apply(configuration)  # IpaError when the router is unreachable: the adapter keeps the old one
        with self._lock:
            self._target = configuration
            self._applied.append(AppliedChange(requested, configuration, None))
            self._pending.append(len(self._applied) - 1)

    def observe(self) -> None:
        """Provisioned cores, serving variants and when each change completed, from the stack's status."""
        status = self.stack.status()
        t = self.clock.now()
        cores = sum(int((st.get("process") or {}).get("cores", 0)) for st in status["stages"])
        with self._lock:
            if cores != self._cores[-1][1] and all(st.get("process") for st in status["stages"]):
                self._cores.append((t, cores))
            for st in status["stages"]:
                vs = (st.get("process") or {}).get("variants") or []
                if len(vs) == 1 and vs[0] != self._seen_serving[st["stage"]]:
                    self._seen_serving[st["stage"]] = vs[0]
                    self._serving.append((t, st["stage"], vs[0]))
            if self._pending and self._reached(status, self._target):
                for i in self._pending:
                    a = self._applied[i]
                    self._applied[i] = AppliedChange(a.requested_at_s, a.configuration, t, a.note)
                self._pending = []

    def router_restarts(self) -> int:
        return sum(1 for _, name, event in self.stack.group.events if name == "router" and event.startswith("restarted"))

    def stage_counters(self) -> tuple[dict[str, list[str]], int]:
        # one process per stage, up for the whole run (restarted in place if it dies)
        # a stage process that died lost its counters, restarted or not
        restarts = sum(1 for _, name, event in self.stack.group.events
                       if name.startswith("stage-") and event.startswith("died"))
        return {s: [self.stack.stage_url(s)] for s in self.pipeline.stage_names}, restarts

    def records(self) -> dict:
        return {"applied": list(self._applied), "provisioned_cores": list(self._cores),
                "serving_variants": list(self._serving)}

    def logs(self) -> dict[str, str]:
        out = {"process_events.csv": write_table(
            self.work_dir / "process_events.csv", ("time_s", "process", "event"),
            ((round(t - self.clock.t0_wall, 3), n, e) for t, n, e in self.stack.group.events))}
        for log in sorted((self.work_dir / "logs").glob("*.log")):
            out[f"logs/{log.name}"] = str(log)
        checks = [(stage, c) for stage, cs in self._speed_checks.items() for c in cs]
        if checks:
            out["speed_check.csv"] = write_table(
                self.work_dir / "speed_check.csv", SPEED_CHECK_COLUMNS,
                ((stage, *(c[k] for k in SPEED_CHECK_COLUMNS[1:])) for stage, c in checks))
        prom_log = self.work_dir / "prometheus" / "prometheus.log"
        if prom_log.exists():
            out["logs/prometheus.log"] = str(prom_log)
        return out

    def tear_down(self) -> None:
        if self.stack is not None:
            self.stack.stop()

    # --- helpers ------------------------------------------------------------------------------
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


SPEED_CHECK_COLUMNS = ("stage", "replica", "variant", "cores", "batch", "median_s", "profiled_p50_s",
                       "profiled_p99_s", "ratio", "slower")


def speed_refusal(pipeline: Pipeline, initial: Configuration, checks: dict[str, list[dict]]) -> str | None:
    """Why a real-mode run must not start, or None: the replicas of some stage time their batches
    slower than the profile the policy plans with (ipa.serving.compute.speed_check_verdict), so
    the capacity it provisions is not there and the run would measure this host, not the policy.
    Names each such stage with its measured and profiled times, and the cores the run's first
    configuration would need at the measured speed."""
    slow = {stage: max(cs, key=lambda c: c["ratio"]) for stage, cs in checks.items()
            if any(c["slower"] for c in cs)}
    if not slow:
        return None
    lines, need = [], 0
    for name, sc in initial.stages.items():
        c = slow.get(name)
        if c is None:
            need += sc.total_cores
            continue
        replicas = math.ceil(sc.replicas * c["ratio"])
        need += replicas * sc.cores
        sla = pipeline.stage_sla_s[name]
        fits = (f"about {replicas} replicas ({replicas * sc.cores} cores) for the same throughput"
                if c["median_s"] <= sla else f"no replica count: one batch alone exceeds the stage's {sla:.3g} s SLA")
        lines.append(f"stage {name} ({c['variant'].split('/')[-1]}, batch {c['batch']}, {c['cores']} core(s)): "
                     f"{c['median_s']:.3g} s a batch (median of {len(c['samples_s'])} after warm-up) against the "
                     f"profiled {c['profiled_p50_s']:.3g} s, x{c['ratio']:.2g}; {sc.replicas} replica(s) now, "
                     f"{fits}")
    return (f"--mode real: this host computes slower than the profiles the policy plans with (by more than "
            f"the profiles' same-host repeatability of {REPEATABILITY_LIMIT:.0%}), so the run would drop or "
            f"delay requests for want of capacity the policy thinks it has: refusing before the load starts. "
            + "; ".join(lines) + f". At this speed the first configuration alone needs about {need} cores "
            f"(it provisions {initial.total_cores}). Profile this host and run with its profiles: "
            f"`ipa profile --pipeline {pipeline.name} --out D/profiles` (it writes D/profiles.csv), then "
            f"`ipa run ... --profiles-file D/profiles.csv`; or use --mode emulated.")


SETTINGS = LocalSettings


def make_backend(settings: LocalSettings) -> LocalBackend:
    return LocalBackend(settings)
