"""A pipeline's live stack on this machine: one process per stage, the router, Prometheus.

Each stage process hosts all of its stage's replicas, so it is the stage's one router endpoint.

Used by ``ipa serve`` (standalone) and by the ``local`` backend (with Locust and the adapter).
Stage processes are supervised: one that dies is restarted on the same port with the current
configuration; the router meanwhile fails the batches that were in it and holds its queue.
"""
from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from ipa.configuration import Configuration, StageConfig
from ipa.errors import IpaError
from ipa.monitoring.prometheus import PrometheusServer
from ipa.pipelines.pipeline import Pipeline
from ipa.processes import ProcessGroup, check_port_free, free_port, python_argv, wait_http
from ipa.serving.spec import RouterSpec, stage_specs, write_json


def batch_timeout_s(pipeline: Pipeline, stage: str, config: StageConfig) -> float:
    """How long a partial batch may wait for more requests: the time a batch takes to fill at
    the configuration's capacity, (b - 1) / (n * h(b)), the simulator's rule (ipa/sim/engine.py),
    never longer than the (b - 1) / lambda the optimiser budgets."""
    if config.batch <= 1:
        return 0.0
    throughput = pipeline.stage_profile(stage, config.variant).throughput(config.batch)
    return (config.batch - 1) / (max(config.replicas, 1) * throughput)  # 0 replicas: a stage scaled away


def batch_timeouts(pipeline: Pipeline, configuration: Configuration) -> dict[str, float]:
    return {s: batch_timeout_s(pipeline, s, c) for s, c in configuration.stages.items()}


def http_json(url: str, body: dict | None = None, timeout_s: float = 10.0) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise IpaError(f"{url} answered {e.code}: {e.read()[:300]!r}") from None
    except OSError as e:
        raise IpaError(f"{url} unreachable: {e}") from None


class LiveStack:
    def __init__(self, pipeline: Pipeline, folder: Path, *, mode: str = "emulated", quick: bool = False,
                 seed: int = 0, load_time_scale: float = 1.0, host: str = "127.0.0.1",
                 router_port: int | None = None, prometheus: bool = True, prometheus_binary: str | None = None,
                 log=None):
        self.pipeline, self.folder, self.mode, self.host = pipeline, Path(folder), mode, host
        self.folder.mkdir(parents=True, exist_ok=True)
        # one CPU-claim folder for every stage process of the stack (real mode pins replicas)
        self.specs = stage_specs(pipeline, mode, quick, load_time_scale, seed,
                                 cpu_lock_dir=str(Path(folder).resolve() / "cpus"))
        for spec in self.specs.values():  # real: the first replicas time themselves against the profile
            spec.speed_check = mode == "real"
        if router_port:
            check_port_free(router_port, host)
        self.router_port = router_port or free_port(host)
        self.grpc_port = free_port(host)  # the router's V2 gRPC front
        self.stage_ports = {s: free_port(host) for s in pipeline.stage_names}
        self.group = ProcessGroup(log)
        self.group.on_restart = self._restart_argv
        self.use_prometheus = prometheus
        self.prometheus_binary = prometheus_binary
        self.prometheus: PrometheusServer | None = None
        self.configuration: Configuration | None = None
        self.started_at: float | None = None

    # --- URLs ---------------------------------------------------------------------------------
    @property
    def router_url(self) -> str:
        return f"http://{self.host}:{self.router_port}"

    @property
    def grpc_target(self) -> str:
        """host:port of the router's V2 gRPC front."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def infer_url(self) -> str:
        return f"{self.router_url}/v2/models/{self.pipeline.name}/infer"

    def stage_url(self, stage: str) -> str:
        return f"http://{self.host}:{self.stage_ports[stage]}"

    # --- lifecycle ----------------------------------------------------------------------------
    def _stage_argv(self, stage: str) -> list[str]:
        assert self.configuration is not None
        return python_argv("ipa.serving.stage", "--spec", str(self.folder / f"stage-{stage}.json"),
                           "--config", json.dumps(asdict(self.configuration[stage])),
                           "--host", self.host, "--port", str(self.stage_ports[stage]))

    def _restart_argv(self, child) -> list[str] | None:
        if child.name.startswith("stage-"):
            return self._stage_argv(child.name[len("stage-"):])
        return None

    def start(self, initial: Configuration, timeout_s: float = 60.0) -> "LiveStack":
        self.pipeline.check(initial)
        self.configuration = initial
        try:
            for name, spec in self.specs.items():
                write_json(spec, self.folder / f"stage-{name}.json")
            write_json(RouterSpec(self.pipeline.name, self.pipeline.sla_s, self.pipeline.drop_limit_s,
                                  list(self.pipeline.stage_names),
                                  {s: [f"{self.host}:{p}"] for s, p in self.stage_ports.items()},
                                  dict(self.pipeline.stage_sla_s), batch_timeouts(self.pipeline, initial),
                                  host=self.host, configure_stages=True), self.folder / "router.json")
            stages = {name: self.group.start(f"stage-{name}", self._stage_argv(name),
                                             self.folder / "logs" / f"stage-{name}.log", restart=True)
                      for name in self.pipeline.stage_names}
            router = self.group.start("router", python_argv(
                "ipa.serving.router", "--spec", str(self.folder / "router.json"), "--port", str(self.router_port),
                "--grpc-port", str(self.grpc_port), "--config", json.dumps(initial.to_dict())),
                self.folder / "logs" / "router.log")
            for name, child in stages.items():
                wait_http(f"{self.stage_url(name)}/v2/health/live", child, timeout_s)
            wait_http(f"{self.router_url}/v2/health/live", router, timeout_s)
            self.group.supervise()
            if self.use_prometheus:
                self.prometheus = PrometheusServer(
                    self.folder / "prometheus", {"router": {"router": self.router_port},
                                                 "stages": {n: p for n, p in self.stage_ports.items()}},
                    self.group, self.prometheus_binary, host=self.host).start(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_at = time.time()
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until every stage has a ready replica (variants loaded)."""
        # the pipeline's readiness (every stage serving), not the router's own
        wait_http(f"{self.router_url}/v2/models/{self.pipeline.name}/ready", self.group.children.get("router"), timeout_s)

    def apply(self, configuration: Configuration) -> dict:
        self.pipeline.check(configuration)
        self.configuration = configuration  # a restarted stage process starts from this one
        return http_json(f"{self.router_url}/admin/configuration",
                         {"stages": configuration.to_dict(),
                          "batch_timeout_s": batch_timeouts(self.pipeline, configuration)})

    def status(self) -> dict:
        return http_json(f"{self.router_url}/admin/status", timeout_s=5.0)

    def stage_status(self, stage: str) -> dict:
        return http_json(f"{self.stage_url(stage)}/admin/status", timeout_s=5.0)

    def stop(self) -> None:
        self.group.stop()

    def urls(self) -> dict[str, str]:
        out = {"router": self.router_url, "infer": self.infer_url}
        out.update({f"stage {s}": self.stage_url(s) for s in self.pipeline.stage_names})
        if self.prometheus is not None:
            out["prometheus"] = self.prometheus.url
        return out

    def __enter__(self) -> "LiveStack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
