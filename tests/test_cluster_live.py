"""End to end on a real cluster: `pytest -m cluster`.

Runs when KUBECONFIG (or ~/.kube/config) points at a reachable cluster that has the IPA-bench
image (cluster/up.sh makes one with kind); skipped otherwise, saying what was checked. It deploys
the synthetic tiny pipeline in emulated mode (its serving specs travel in a ConfigMap, so no
reference profiles are needed in the image), replays a short open-loop load from outside through
the router's NodePort, scales a stage to two pods mid-run, and checks that the router resolved
both pods behind the stage's headless Service and sent batches to each, the request accounting
and the cleanup.

The backend's options (cluster/README.md) come from IPA_CLUSTER_BACKEND_OPTIONS, the same
KEY=VALUE pairs `ipa run --backend-option` takes, space-separated, e.g.
``IPA_CLUSTER_BACKEND_OPTIONS="node_host=192.168.49.2 image=registry/ipa-bench:tag"``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.live, pytest.mark.slow]


def reachable_cluster():
    """The KubernetesApi of a reachable cluster, or skip naming what was checked."""
    pytest.importorskip("kubernetes", reason="the kubernetes client is not installed (pip install 'ipa-bench[kubernetes]')")
    from ipa.k8s.client import ClusterError, KubernetesApi
    source = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        api = KubernetesApi.from_kubeconfig()
        version = api.server_version(timeout_s=5.0)
    except ClusterError as e:
        pytest.skip(f"no reachable Kubernetes cluster (checked KUBECONFIG={source!r} and the in-cluster "
                    f"service account, then GET /version): {e}")
    return api, version


def test_short_run_on_a_real_cluster(make_tiny_pipeline, tmp_path):
    api, version = reachable_cluster()
    from ipa.backends.registry import check_backend_options, make_backend
    from ipa.cli_run import parse_backend_options
    from ipa.configuration import Configuration, StageConfig
    from ipa.k8s.render import cheapest_configuration
    from ipa.serving.stack import http_json

    pipeline = make_tiny_pipeline("tiny-video")
    initial = cheapest_configuration(pipeline)
    options = check_backend_options("kubernetes", parse_backend_options(
        os.environ.get("IPA_CLUSTER_BACKEND_OPTIONS", "").split()))
    backend = make_backend("kubernetes", **{"rollout_timeout_s": 240.0, **options}, work_dir=str(tmp_path))
    send_times = [i * 0.1 for i in range(300)]  # 10 RPS for 30 s
    backend.start(pipeline, initial, send_times)
    namespace = backend.namespace
    try:
        backend.clock.sleep_until(5.0)
        reading = backend.monitor.read(10)
        scaled = Configuration({**initial.stages, "classifier": StageConfig(
            initial["classifier"].variant, initial["classifier"].batch, 2, initial["classifier"].cores)})
        backend.apply(scaled)
        backend.clock.sleep_until(28.0)
        stage = http_json(f"{backend.router_url}/admin/status")["stages"][1]
        late = backend.monitor.read(20)  # Prometheus has scraped the router for over 20 s by now
    finally:
        out = backend.stop()
    requests = out.requests
    assert len(requests) == len(send_times)  # nothing vanished
    assert set(requests["status"]) <= {"ok", "late", "dropped", "failed"}
    assert (requests["status"] == "ok").sum() > 0, requests["detail"].value_counts()
    assert reading is None or len(reading.arrivals_per_s) > 0  # 5 s in, service discovery may lag
    # the in-cluster Prometheus gives the monitor every second's arrivals: no more than were sent
    assert late is not None and 0 < sum(late.arrivals_per_s) <= len(send_times), late
    change = out.applied[-1]
    assert change.completed_at_s is not None, change.note  # the scale rolled out within the run
    # the router found both pods behind the headless Service and used each
    assert stage["stage"] == "classifier" and stage["ready"] == 2, stage
    assert len(stage["endpoints"]) == 2 and all(e["served"] > 0 for e in stage["endpoints"]), stage
    assert "loadgen_requests.csv" in out.extra_files and any(n.startswith("logs/stage-") for n in out.extra_files)
    assert not api.namespace_exists(namespace), f"namespace {namespace} was left behind"
