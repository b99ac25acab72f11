"""All the objects of one run, in the order they are created, and their YAML form."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import yaml

from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError
from ipa.k8s.manifests import (SERVER_PORT, ClusterOptions, namespace, router_deployment, router_service,
                               spec_configmap, stage_deployment, stage_host, stage_service, stage_spec_file)
from ipa.k8s.prometheus import prometheus_objects
from ipa.pipelines.pipeline import Pipeline

# Python, the server and a copy of the batch in flight, above the model itself (real mode).
REAL_MODE_OVERHEAD_MB = 384


def stage_memory(pipeline: Pipeline, stage: str, variant: str, mode: str, options: ClusterOptions) -> str:
    """Memory request = limit of a replica: the profiled peak memory in real mode (rounded up to
    64 MiB), the small emulated-mode figure otherwise."""
    if mode != "real":
        return options.server_memory
    profile = pipeline.stage_profile(stage, variant)
    peak = max(r.peak_memory_mb for r in profile.rows.values())
    mib = 64 * math.ceil((peak + REAL_MODE_OVERHEAD_MB) / 64)
    return f"{mib}Mi"


def cheapest_configuration(pipeline: Pipeline) -> Configuration:
    """The least accurate (and, by the base-allocation rule, cheapest) variant per stage,
    batch 1, one replica: a start that every cluster able to run the pipeline can schedule."""
    stages = {}
    for stage in pipeline.stage_names:
        p = pipeline.stage_profiles[stage][0]
        stages[stage] = StageConfig(variant=p.variant, batch=1, replicas=1, cores=p.base_cores)
    return Configuration(stages)


def spec_files(pipeline: Pipeline, configuration: Configuration, options: ClusterOptions) -> dict[str, str]:
    """The JSON specs the serving processes read (the same the local backend writes to disk).

    The router listens on every interface of its pod and reaches each stage through the stage's
    headless Service: the name resolves to every ready pod, each pod is one endpoint with one
    replica, and the pods take their variant from their Deployment, not from the router."""
    from ipa.serving.spec import RouterSpec, stage_specs  # noqa: PLC0415
    from ipa.serving.stack import batch_timeouts  # noqa: PLC0415
    files = {stage_spec_file(name): json.dumps(asdict(spec), indent=1)
             for name, spec in stage_specs(pipeline, options.mode, seed=options.seed).items()}
    router = RouterSpec(pipeline.name, pipeline.sla_s, pipeline.drop_limit_s, list(pipeline.stage_names),
                        {s: [f"{stage_host(s, options.namespace)}:{SERVER_PORT}"] for s in pipeline.stage_names},
                        dict(pipeline.stage_sla_s), batch_timeouts(pipeline, configuration),
                        host="0.0.0.0", configure_stages=False)
    files["router.json"] = json.dumps(asdict(router), indent=1)
    return files


def run_objects(pipeline: Pipeline, configuration: Configuration, options: ClusterOptions,
                with_namespace: bool = True) -> list[dict]:
    """Namespace, Prometheus (RBAC first), the serving specs, stage Services and Deployments,
    router, in creation order."""
    pipeline.check(configuration)
    objects = [namespace(options, pipeline.name)] if with_namespace else []
    objects += prometheus_objects(pipeline.name, options)
    objects.append(spec_configmap(pipeline.name, spec_files(pipeline, configuration, options), options))
    for stage, cfg in configuration.stages.items():
        objects.append(stage_service(pipeline.name, stage, options))
        memory = stage_memory(pipeline, stage, cfg.variant, options.mode, options)
        objects.append(stage_deployment(pipeline.name, stage, cfg, options, memory=memory))
    objects.append(router_service(pipeline.name, options))
    objects.append(router_deployment(pipeline.name, configuration, options))
    return objects


def file_name(index: int, obj: dict) -> str:
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write_manifests(objects: list[dict], out: Path) -> list[Path]:
    """One YAML file per object, numbered in creation order (``kubectl apply -f DIR`` applies
    them in file-name order), plus ``all.yaml`` with every object as one multi-document stream."""
    out.mkdir(parents=True, exist_ok=True)
    stale = sorted(out.glob("[0-9][0-9]-*.yaml"))
    if stale:
        raise ConfigError(f"{out} already holds rendered manifests ({stale[0].name}, ...); "
                          f"choose an empty folder so no stale object gets applied")
    paths = []
    for i, obj in enumerate(objects):
        path = out / file_name(i, obj)
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        paths.append(path)
    (out / "all.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return paths
