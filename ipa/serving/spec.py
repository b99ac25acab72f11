"""What the live processes need to know of a pipeline, as plain JSON.

The orchestrator derives it once from a ``Pipeline`` (catalogue + profiles) and hands it to the
router and stage processes in a file, so they never reload the catalogue and a synthetic
pipeline (tests) serves exactly like a reference one.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError
from ipa.pipelines.pipeline import Pipeline
from ipa.serving.modes import MODES
from ipa.pipelines import wire
from ipa.pipelines.latency import batch_latency_params


@dataclass
class VariantSpec:
    name: str
    load_time_s: float
    base_cores: int
    latency_params: list[list[float]]  # [k] = (mu, sigma) of ln latency for a batch of k (k >= 1)
    model: dict[str, Any]  # task, config_class, head_class, config_kwargs (real mode)


@dataclass
class StageSpec:
    name: str
    sla_s: float
    input: dict[str, Any]  # the StageInput fields
    variants: dict[str, VariantSpec]
    mode: str = "emulated"
    quick: bool = False  # real mode: the tiny model of the same family (ipa.profiling.quick)
    load_time_scale: float = 1.0  # emulated: multiply profiled load times (tests shorten them)
    seed: int = 0
    # real: where replicas claim CPUs to be pinned to (one folder per stack, so stage processes do
    # not pin to the same CPU); None: not pinned (a Kubernetes pod, limited by its CPU quota)
    cpu_lock_dir: str | None = None
    # FP32 elements per request in this stage's answers: what the next stage consumes
    # (ipa.pipelines.wire), so emulated replicas put real-size tensors on the wire
    output_elements: int = 1
    # real: the replicas the process starts with time a few batches against their profile
    # (ipa.serving.compute.speed_check_verdict) and the status reports it; later replicas do not,
    # so a scale-up's start to ready stays the profiled one
    speed_check: bool = False

    def variant(self, name: str) -> VariantSpec:
        try:
            return self.variants[name]
        except KeyError:
            raise ConfigError(f"stage {self.name!r} has no variant {name!r}; it has {sorted(self.variants)}") from None


@dataclass
class RouterSpec:
    pipeline: str
    sla_s: float
    drop_limit_s: float
    stages: list[str]
    # Per stage, where its servers answer, as "host:port". A host name may resolve to several
    # addresses (a Kubernetes headless Service: one per ready pod); each address is one endpoint
    # and the stage's capacity is the sum of theirs.
    stage_endpoints: dict[str, list[str]]
    stage_sla_s: dict[str, float]
    # A partial batch leaves the queue when its oldest request has waited this long.
    batch_timeout_s: dict[str, float] = field(default_factory=dict)
    host: str = "127.0.0.1"  # where the router listens
    # True: each endpoint is a stage process hosting the stage's replicas, told the configuration
    # by the router (local). False: each endpoint is one replica configured by its Deployment
    # (Kubernetes); the router only batches and dispatches.
    configure_stages: bool = True

    def __post_init__(self):
        for stage in self.stages:
            entries = self.stage_endpoints.get(stage)
            if not entries:
                raise ConfigError(f"router spec: stage {stage!r} has no endpoints")
            for entry in entries:
                parse_endpoint(entry)


def parse_endpoint(entry: str) -> tuple[str, int]:
    """ "host:port" (an IPv6 address in brackets) as (host, port); ConfigError when it is not one."""
    host, sep, port = str(entry).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"stage endpoint {entry!r} is not host:port")
    return host, int(port)


def stage_specs(pipeline: Pipeline, mode: str = "emulated", quick: bool = False, load_time_scale: float = 1.0,
                seed: int = 0, max_batch: int = 64, cpu_lock_dir: str | None = None) -> dict[str, StageSpec]:
    if mode not in MODES:
        raise ConfigError(f"serving mode must be one of {MODES}, got {mode!r}")
    out = {}
    for i, stage in enumerate(pipeline.stages):
        variants = {}
        for p in pipeline.stage_profiles[stage.name]:
            v = stage.variant(p.variant)
            variants[v.name] = VariantSpec(
                v.name, p.load_time_s, p.base_cores,
                [list(x) for x in batch_latency_params(p, max_batch)],
                {"task": v.task, "config_class": v.config_class, "head_class": v.head_class,
                 "config_kwargs": dict(v.config_kwargs), "name": v.name})
        out[stage.name] = StageSpec(stage.name, pipeline.stage_sla_s[stage.name], asdict(stage.input), variants,
                                    mode, quick, load_time_scale, seed * 1000 + i, cpu_lock_dir,
                                    wire.output_elements(pipeline.stages, i))
    return out


def write_json(obj: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(obj) if hasattr(obj, "__dataclass_fields__") else obj, indent=1))
    tmp.replace(path)
    return path


def read_stage_spec(path: Path) -> StageSpec:
    d = json.loads(Path(path).read_text())
    d["variants"] = {k: VariantSpec(**v) for k, v in d["variants"].items()}
    return StageSpec(**d)


def read_router_spec(path: Path) -> RouterSpec:
    return RouterSpec(**json.loads(Path(path).read_text()))


def default_configuration(pipeline: Pipeline) -> Configuration:
    """The lightest variant per stage, batch 1, one replica: what `ipa serve` starts with."""
    stages = {}
    for name in pipeline.stage_names:
        p = pipeline.stage_profiles[name][0]
        stages[name] = StageConfig(p.variant, 1, 1, p.base_cores)
    return Configuration(stages)


