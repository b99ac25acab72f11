"""Prometheus inside a run's namespace: it discovers the run's pods through the Kubernetes API
and scrapes every pod port named ``http`` once a second.

RBAC is namespace-scoped (a Role and RoleBinding, no ClusterRole): Prometheus is told to watch only
its own namespace, which is all a Role can grant; and it goes away with the run's namespace.
"""
from __future__ import annotations

import yaml

from ipa.k8s.manifests import (MANAGED_BY, PART_OF, PIPELINE_LABEL, PORT_NAME, STAGE_LABEL,
                               VARIANT_LABEL, ClusterOptions, _meta, _resources, label_value, selector)

NAME = "prometheus"
WEB_PORT = 9090
SCRAPE_INTERVAL = "1s"


def _labels(pipeline: str, options: ClusterOptions) -> dict:
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME,
              "app.kubernetes.io/component": "monitoring", "app.kubernetes.io/part-of": PART_OF,
              "app.kubernetes.io/managed-by": MANAGED_BY, PIPELINE_LABEL: label_value(pipeline)}
    return labels


def _meta_label(label: str) -> str:
    """The Prometheus service-discovery meta label of a pod label."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)


def scrape_config(namespace: str) -> dict:
    """prometheus.yml: pods of this namespace that are part of ipa-bench, on their ``http`` port."""
    keep = [
        {"source_labels": [_meta_label("app.kubernetes.io/part-of")], "regex": PART_OF, "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": PORT_NAME, "action": "keep"},
        # Running pods, ready or not: a replica that fails its readiness probe under load still
        # holds counters the run needs; one still loading simply has no samples yet.
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
    ]
    rename = [
        {"source_labels": [_meta_label("app.kubernetes.io/component")], "target_label": "component"},
        {"source_labels": [_meta_label(STAGE_LABEL)], "target_label": "stage"},
        {"source_labels": [_meta_label(VARIANT_LABEL)], "target_label": "variant"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    ]
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [{
            "job_name": "ipa-bench",
            "metrics_path": "/metrics",
            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
            "relabel_configs": keep + rename,
        }],
    }


def prometheus_objects(pipeline: str, options: ClusterOptions) -> list[dict]:
    """ServiceAccount, Role, RoleBinding, ConfigMap, Deployment and NodePort Service."""
    labels = _labels(pipeline, options)
    ns = options.namespace
    config_text = yaml.safe_dump(scrape_config(ns), sort_keys=False)
    container = {
        "name": NAME,
        "image": options.prometheus_image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                 "--storage.tsdb.retention.time=1d", "--web.listen-address=0.0.0.0:%d" % WEB_PORT],
        "ports": [{"name": "web", "containerPort": WEB_PORT, "protocol": "TCP"}],
        "resources": _resources(1, "1Gi"),
        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 2},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus", "readOnly": True},
                         {"name": "data", "mountPath": "/prometheus"}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, options, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(NAME, options, labels),
         # pod discovery: list + watch; get for the odd direct lookup
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(NAME, options, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("prometheus-config", options, labels),
         "data": {"prometheus.yml": config_text}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME, options, labels),
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": selector(labels)},
             "strategy": {"type": "Recreate"},
             "template": {"metadata": {"labels": dict(labels)}, "spec": {
                 "serviceAccountName": NAME,
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534},
                 "containers": [container],
                 "volumes": [{"name": "config", "configMap": {"name": "prometheus-config"}},
                             {"name": "data", "emptyDir": {}}],
             }},
         }},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, options, labels),
         "spec": {"type": "NodePort", "selector": selector(labels),
                  "ports": [{"name": "web", "port": WEB_PORT, "targetPort": "web",
                             "nodePort": options.prometheus_node_port, "protocol": "TCP"}]}},
    ]
