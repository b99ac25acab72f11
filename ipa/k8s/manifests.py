"""Pure builders of the Kubernetes objects one run of a pipeline needs, as plain dicts.

Plain dicts (not the client's model classes) because they serialise to the YAML a user reviews,
validate against the published schemas, and are accepted as request bodies by every supported
major version of the official client.

One namespace per run holds everything the run creates (stage Deployments and Services, the
router, Prometheus and its namespace-scoped RBAC), so deleting the namespace removes all of it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError
from ipa.serving.modes import MODES

PART_OF = "ipa-bench"
MANAGED_BY = "ipa-bench"
SERVER_APP = "ipa-model-server"
ROUTER_APP = "ipa-router"
# Labels Prometheus' relabelling turns into the `stage` and `variant` target labels.
STAGE_LABEL = "ipa-bench.io/stage"
VARIANT_LABEL = "ipa-bench.io/variant"
PIPELINE_LABEL = "ipa-bench.io/pipeline"
RUN_LABEL = "ipa-bench.io/run"
VARIANT_ANNOTATION = "ipa-bench.io/variant"  # the exact variant name ('/' is not allowed in labels)

SERVER_PORT = 8000
# A stage pod told to stop keeps serving this long while reporting no ready replica, so the router
# (which polls every 0.1 s) stops sending to it before it goes; well inside the grace period.
STAGE_DRAIN_S = 2
ROUTER_PORT = 8080
ROUTER_GRPC_PORT = 8081  # the router's V2 gRPC front (ipa.serving.grpc_front)
PORT_NAME = "http"  # the port Prometheus scrapes (/metrics) on every pod of ours
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class ClusterOptions:
    """Everything about a run's Kubernetes objects that is not the pipeline's configuration."""

    namespace: str = "ipa"
    image: str = "ipa-bench:dev"
    # IfNotPresent: kind-loaded images are used as they are; a registry image is pulled once.
    image_pull_policy: str = "IfNotPresent"
    mode: str = "emulated"  # model servers: emulated | real
    router_cores: int = 1
    router_memory: str = "512Mi"
    server_memory: str = "512Mi"  # emulated mode; real mode uses the profiled peak memory
    router_node_port: int = 30950
    prometheus_node_port: int = 30990
    prometheus_image: str = "docker.io/prom/prometheus:v3.5.0"
    run_id: str = ""
    seed: int = 0  # emulated servers' latency draws

    def __post_init__(self):
        dns_name(self.namespace, "namespace")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.image_pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(f"image_pull_policy must be Always, IfNotPresent or Never, "
                              f"not {self.image_pull_policy!r}")
        for key in ("router_node_port", "prometheus_node_port"):
            port = getattr(self, key)
            if not 30000 <= port <= 32767:
                raise ConfigError(f"{key} {port} is outside the default NodePort range 30000-32767")
        if self.router_node_port == self.prometheus_node_port:
            raise ConfigError("router_node_port and prometheus_node_port must differ")
        if self.router_cores < 1:
            raise ConfigError(f"router_cores must be >= 1, not {self.router_cores}")


def dns_name(name: str, what: str) -> str:
    """``name`` if it is a valid DNS-1035 label (namespaces, Services, Deployments), else ConfigError."""
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise ConfigError(f"{what} name {name!r} is not a valid Kubernetes name: lower-case letters, "
                          f"digits and '-', starting with a letter, at most 63 characters")
    return name


def label_value(text: str) -> str:
    """``text`` made into a valid label value: '/' and other characters become '-', and a value
    too long keeps its head plus a short hash so two long names never collide."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    if len(value) > 63:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        value = value[:54].rstrip("-_.") + "-" + digest
    assert _LABEL_VALUE.match(value), value
    return value


def stage_object_name(stage: str) -> str:
    """The Deployment and Service name of a stage."""
    return dns_name("stage-" + re.sub(r"[^a-z0-9-]+", "-", stage.lower()).strip("-"), "stage")


def stage_host(stage: str, namespace: str) -> str:
    return f"{stage_object_name(stage)}.{namespace}.svc.cluster.local"


def common_labels(app: str, instance: str, component: str, pipeline: str, options: ClusterOptions) -> dict:
    labels = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": label_value(instance),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        PIPELINE_LABEL: label_value(pipeline),
    }
    if options.run_id:
        labels[RUN_LABEL] = label_value(options.run_id)
    return labels


def selector(labels: Mapping[str, str]) -> dict:
    # A Deployment's selector is immutable: select on what never changes for the object's life.
    return {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def namespace(options: ClusterOptions, pipeline: str) -> dict:
    labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": MANAGED_BY,
              PIPELINE_LABEL: label_value(pipeline)}
    if options.run_id:
        labels[RUN_LABEL] = label_value(options.run_id)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": options.namespace, "labels": labels}}


def _meta(name: str, options: ClusterOptions, labels: Mapping[str, str], annotations=None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": options.namespace, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _cpu(cores: int) -> str:
    return str(int(cores))


def _probes(port_name: str) -> dict:
    return {
        # Ready only once the variant is loaded: a switching Deployment keeps its old pods
        # serving until the new ones pass this probe (maxUnavailable 0).
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": port_name},
                           "periodSeconds": 1, "failureThreshold": 2, "timeoutSeconds": 1},
        "livenessProbe": {"httpGet": {"path": LIVE_PATH, "port": port_name},
                          "periodSeconds": 5, "failureThreshold": 6, "timeoutSeconds": 2},
    }


# The image's user (cluster/Dockerfile): numeric, so the kubelet can enforce runAsNonRoot.
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _resources(cores: int, memory: str) -> dict:
    # requests = limits: Guaranteed QoS, so a replica gets exactly the cores it was profiled on.
    r = {"cpu": _cpu(cores), "memory": memory}
    return {"requests": dict(r), "limits": dict(r)}


# --- the model server of one stage -------------------------------------------------------------

def stage_env(pipeline: str, stage: str, config: StageConfig, mode: str) -> list[dict]:
    """The container's environment: the only part of a stage's pod that a variant switch changes
    (besides resources). The server's arguments refer to it with $(VAR), so a switch is one patch."""
    return [
        {"name": "IPA_PIPELINE", "value": pipeline},
        {"name": "IPA_STAGE", "value": stage},
        {"name": "IPA_VARIANT", "value": config.variant},
        {"name": "IPA_BATCH", "value": str(config.batch)},
        {"name": "IPA_CORES", "value": str(config.cores)},
        {"name": "IPA_MODE", "value": mode},
        # real mode: torch uses as many threads as the replica has cores
        {"name": "OMP_NUM_THREADS", "value": str(config.cores)},
    ]


SPEC_CONFIGMAP = "ipa-spec"
SPEC_DIR = "/etc/ipa"


def stage_spec_file(stage: str) -> str:
    return f"stage-{stage}.json"


def server_command() -> list[str]:
    return ["python", "-m", "ipa.serving.stage"]


def server_args(stage: str) -> list[str]:
    # Each pod is one replica of the stage: the Deployment's replica count is the stage's.
    # $(VAR) is expanded by the kubelet from the container's env, so a switch patches env only.
    config = '{"variant":"$(IPA_VARIANT)","batch":$(IPA_BATCH),"replicas":1,"cores":$(IPA_CORES)}'
    return ["--spec", f"{SPEC_DIR}/{stage_spec_file(stage)}", "--config", config,
            "--host", "0.0.0.0", "--port", str(SERVER_PORT), "--drain-s", str(STAGE_DRAIN_S)]


def _spec_volume() -> tuple[dict, dict]:
    return ({"name": "spec", "configMap": {"name": SPEC_CONFIGMAP}},
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True})


def stage_deployment(pipeline: str, stage: str, config: StageConfig, options: ClusterOptions,
                     memory: str | None = None) -> dict:
    name = stage_object_name(stage)
    labels = common_labels(SERVER_APP, name, "stage", pipeline, options)
    pod_labels = {**labels, STAGE_LABEL: label_value(stage), VARIANT_LABEL: label_value(config.variant)}
    container = {
        "name": "server",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": server_command(),
        "args": server_args(stage),
        "volumeMounts": [_spec_volume()[1]],
        "env": stage_env(pipeline, stage, config, options.mode),
        "ports": [{"name": PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "resources": _resources(config.cores, memory or options.server_memory),
        "securityContext": CONTAINER_SECURITY,
        **_probes(PORT_NAME),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, options, labels, {VARIANT_ANNOTATION: config.variant}),
        "spec": {
            "replicas": config.replicas,
            "selector": {"matchLabels": selector(labels)},
            # A variant switch never lowers the stage's serving capacity: new pods come up
            # (after the variant's load time) before old ones go.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {VARIANT_ANNOTATION: config.variant}},
                "spec": {"containers": [container], "volumes": [_spec_volume()[0]],
                         "securityContext": POD_SECURITY, "terminationGracePeriodSeconds": 30,
                         "automountServiceAccountToken": False},
            },
        },
    }


def stage_service(pipeline: str, stage: str, options: ClusterOptions) -> dict:
    name = stage_object_name(stage)
    labels = common_labels(SERVER_APP, name, "stage", pipeline, options)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, options, labels),
        "spec": {
            # Headless: the stage's DNS name resolves to every ready replica, so the router's
            # central queue can dispatch to a free replica instead of a kube-proxy-chosen one.
            "clusterIP": "None",
            "selector": selector(labels),
            "ports": [{"name": PORT_NAME, "port": SERVER_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def stage_patch(pipeline: str, stage: str, config: StageConfig, options: ClusterOptions,
                memory: str | None = None) -> dict:
    """The strategic-merge patch that switches a stage's variant (a rolling update): env,
    resources, variant label and annotation, and the replica count, in one change."""
    container = {
        "name": "server",
        "env": stage_env(pipeline, stage, config, options.mode),
        "resources": _resources(config.cores, memory or options.server_memory),
    }
    return {
        "metadata": {"annotations": {VARIANT_ANNOTATION: config.variant}},
        "spec": {
            "replicas": config.replicas,
            "template": {
                "metadata": {"labels": {VARIANT_LABEL: label_value(config.variant)},
                             "annotations": {VARIANT_ANNOTATION: config.variant}},
                "spec": {"containers": [container]},
            },
        },
    }


def stage_state(deployment: dict) -> tuple[str, int, int]:
    """(variant, replicas, cores per replica) a stage Deployment asks for: the inverse of
    ``stage_deployment``/``stage_patch``, read back after a failed call."""
    spec = deployment.get("spec") or {}
    template = spec.get("template") or {}
    variant = ((template.get("metadata") or {}).get("annotations") or {}).get(VARIANT_ANNOTATION)
    containers = (template.get("spec") or {}).get("containers") or []
    server = next((c for c in containers if c.get("name") == "server"), None)
    cpu = str((((server or {}).get("resources") or {}).get("requests") or {}).get("cpu", ""))
    if variant is None or server is None or not cpu:
        raise ValueError(f"Deployment {deployment.get('metadata', {}).get('name')!r} is not a stage this "
                         "backend created (no variant annotation or server container cpu request)")
    return variant, int(spec.get("replicas", 1)), int(round(cpu_cores(cpu)))


def cpu_cores(quantity: str) -> float:
    """A CPU quantity as cores: "2", "1.5" or "2000m" (the API may give back 2 as 2000m)."""
    q = str(quantity)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def pod_cores(pod: dict) -> float:
    """The CPU a pod requests (every container), as cores; 0 for a pod that has finished."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0.0
    return sum(cpu_cores(((c.get("resources") or {}).get("requests") or {}).get("cpu", "0"))
               for c in (pod.get("spec") or {}).get("containers") or [])


# --- the router -------------------------------------------------------------------------------

def router_args(configuration: Configuration) -> list[str]:
    return ["--spec", f"{SPEC_DIR}/router.json", "--port", str(ROUTER_PORT), "--grpc-port", str(ROUTER_GRPC_PORT),
            "--config", json.dumps(configuration.to_dict(), separators=(",", ":"))]


def spec_configmap(pipeline: str, files: Mapping[str, str], options: ClusterOptions) -> dict:
    """The serving specs (ipa.serving.spec) the router and stage servers read, one key per file."""
    labels = common_labels(SERVER_APP, SPEC_CONFIGMAP, "spec", pipeline, options)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(SPEC_CONFIGMAP, options, labels),
            "data": dict(files)}


def router_deployment(pipeline: str, configuration: Configuration, options: ClusterOptions) -> dict:
    labels = common_labels(ROUTER_APP, "router", "router", pipeline, options)
    container = {
        "name": "router",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["python", "-m", "ipa.serving.router"],
        "args": router_args(configuration),
        "volumeMounts": [_spec_volume()[1]],
        "env": [{"name": "IPA_PIPELINE", "value": pipeline}, {"name": "IPA_MODE", "value": options.mode}],
        "ports": [{"name": PORT_NAME, "containerPort": ROUTER_PORT, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": ROUTER_GRPC_PORT, "protocol": "TCP"}],
        "resources": _resources(options.router_cores, options.router_memory),
        "securityContext": CONTAINER_SECURITY,
        **_probes(PORT_NAME),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("router", options, labels),
        "spec": {
            # One router: it holds the central queues and the drop accounting of the run.
            "replicas": 1,
            "selector": {"matchLabels": selector(labels)},
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": dict(labels)},
                         "spec": {"containers": [container], "volumes": [_spec_volume()[0]],
                                  "securityContext": POD_SECURITY, "automountServiceAccountToken": False}},
        },
    }


def router_service(pipeline: str, options: ClusterOptions) -> dict:
    labels = common_labels(ROUTER_APP, "router", "router", pipeline, options)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("router", options, labels),
        "spec": {
            "type": "NodePort",
            "selector": selector(labels),
            # gRPC gets whatever NodePort the cluster assigns (kind maps only the fixed ones):
            # `kubectl port-forward svc/router 8081` reaches it from outside
            "ports": [{"name": PORT_NAME, "port": ROUTER_PORT, "targetPort": PORT_NAME,
                       "nodePort": options.router_node_port, "protocol": "TCP"},
                      {"name": "grpc", "port": ROUTER_GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"}],
        },
    }
