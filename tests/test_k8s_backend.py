"""The kubernetes backend's API calls, checked at the HTTP level.

``RecordingApiServer`` is an emulator of the few Kubernetes API endpoints the backend uses, not a
cluster: it records every request (method, path, query, content type, body) and answers the way the
API server does for those calls (201 with the object on create, the object on read, a merged object
on patch, 404 after delete, 403 Status bodies when told to forbid). Scheduling, kubelets and
controllers do not exist here: a test sets Deployment status and pods itself. What a real cluster
does with these requests is checked by `pytest -m cluster` (tests/test_cluster_live.py).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

kubernetes = pytest.importorskip("kubernetes")

from ipa.backends.base import WallClock  # noqa: E402
from ipa.backends.kubernetes import KubernetesBackend, KubernetesSettings, plan_changes  # noqa: E402
from ipa.configuration import Configuration, StageConfig  # noqa: E402
from ipa.k8s.client import (ClusterForbidden, ClusterUnreachable, ContainerFailing, ImageMissing,  # noqa: E402
                            InsufficientCapacity, KubernetesApi, RolloutTimeout)
from ipa.k8s.manifests import ClusterOptions  # noqa: E402
from ipa.k8s.render import cheapest_configuration, run_objects  # noqa: E402

SMP = "application/strategic-merge-patch+json"


def _merge(base, patch):
    """Strategic merge as far as these patches need it: maps merge, lists of named maps merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base + patch):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            i = next((j for j, x in enumerate(out) if x["name"] == item["name"]), None)
            if i is None:
                out.append(copy.deepcopy(item))
            else:
                out[i] = _merge(out[i], item) if item.keys() - {"name", "env"} or "env" not in item else {**_merge(out[i], {k: v for k, v in item.items() if k != "env"}), "env": item["env"]}
        return out
    return copy.deepcopy(patch)


def watching(request: dict) -> bool:
    """A watch request (the API server parses the flag as a Go bool: true, True, 1)."""
    return request["query"].get("watch", [""])[0].lower() in ("true", "1")


class RecordingApiServer:
    """An emulator of the few API endpoints used, not a cluster (see the module docstring)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.objects: dict[str, dict] = {}  # object path -> object
        self.pods: dict[str, list[dict]] = {}  # namespace -> pods to list
        self.forbid: list[tuple[str, str]] = []  # (method, path fragment) answered with 403
        # injected failures: {method, fragment, times, status, applied (the call takes effect, its answer is lost)}
        self.fail: list[dict] = []
        self.auto_ready = True  # Deployments report a finished rollout as soon as they change
        self.ready_http = {"/v2/health/ready": 200, "/v2/models/tiny-video/ready": 200, "/-/ready": 200}
        # the router's counters at the end of a run (its /metrics), for the run's ledger
        self.router_metrics = ('ipa_router_requests_total{pipeline="tiny-video"} 1.0\n'
                               'ipa_router_responses_total{pipeline="tiny-video",outcome="ok"} 1.0\n')
        # Deployment changes as a watch sees them: (resourceVersion, type, object)
        self.watchable = True  # False: a watch request is refused (405), as by a proxy that cannot stream
        self.version = 0
        self.events: list[tuple[int, str, dict]] = []
        self.changed = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                record = {"method": self.command, "path": split.path, "query": parse_qs(split.query),
                          "content_type": self.headers.get("Content-Type"),
                          "body": json.loads(raw) if raw else None}
                server.requests.append(record)
                if watching(record) and server.watchable:
                    return self._stream(server.watch(record))
                status, body = server.answer(record)
                text = isinstance(body, str)  # the router's /metrics exposition
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, events: list[dict]):
                # a watch's answer: one JSON event per line, then the server ends the stream
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                for event in events:
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                self.close_connection = True

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # --- behaviour --------------------------------------------------------------------------
    @staticmethod
    def _status(code: int, reason: str, message: str) -> tuple[int, dict]:
        return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                      "reason": reason, "code": code}

    def _settle(self, obj: dict) -> None:
        """What the Deployment controller would report: with auto_ready every pod of the new
        template is available at once; without, the pods exist but none is ready yet."""
        if obj.get("kind") == "Deployment":
            n = obj["spec"].get("replicas", 1)
            ready = n if self.auto_ready else 0
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": n,
                             "updatedReplicas": n, "availableReplicas": ready, "readyReplicas": ready}

    def _changed(self, kind: str, obj: dict) -> None:
        if obj.get("kind") != "Deployment":
            return
        with self.changed:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, kind, copy.deepcopy(obj)))
            self.changed.notify_all()

    def watch(self, r: dict) -> list[dict]:
        """The Deployment events after the request's resourceVersion, once there is one (or none
        at timeoutSeconds), as a watch stream would carry them."""
        since = int(r["query"].get("resourceVersion", ["0"])[0] or 0)
        timeout = float(r["query"].get("timeoutSeconds", ["5"])[0])
        with self.changed:
            self.changed.wait_for(lambda: any(v > since for v, _, _ in self.events), timeout)
            return [{"type": kind, "object": obj} for v, kind, obj in self.events if v > since]

    def answer(self, r: dict) -> tuple[int, dict]:
        for f in self.fail:
            if f["times"] > 0 and f["method"] == r["method"] and f["fragment"] in r["path"] \
                    and f.get("exclude", "\0") not in r["path"]:
                f["times"] -= 1
                if f.get("applied"):  # the call takes effect and its answer is lost
                    self._answer(r)
                return self._status(f["status"], "InternalError" if f["status"] >= 500 else "Forbidden", "injected")
        return self._answer(r)

    def _answer(self, r: dict) -> tuple[int, dict]:
        method, path, body = r["method"], r["path"], r["body"]
        for m, fragment in self.forbid:
            if m == method and fragment in path:
                return self._status(403, "Forbidden", f'{path} is forbidden: User "test" cannot {method.lower()} it')
        if path in self.ready_http:
            return self.ready_http[path], {}
        if path == "/metrics":
            return 200, self.router_metrics
        if path in ("/version", "/version/"):  # the client asks for /version/
            return 200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0"}
        if path.endswith("/pods") and method == "GET":
            ns = path.split("/")[4]
            sel = r["query"].get("labelSelector", [""])[0]
            wanted = dict(kv.split("=") for kv in sel.split(",") if kv)
            items = [p for p in self.pods.get(ns, [])
                     if all(p["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        if path.endswith("/deployments") and method == "GET":  # the list (a watch's starting point)
            if watching(r):
                return self._status(405, "MethodNotAllowed", "this server does not stream watches")
            ns = path.split("/")[5]
            items = [o for k, o in self.objects.items() if k.startswith(f"{path}/")]
            return 200, {"kind": "DeploymentList", "apiVersion": "apps/v1",
                         "metadata": {"resourceVersion": str(self.version)}, "items": items if ns else []}
        if method == "POST":
            name = body["metadata"]["name"]
            key = f"{path}/{name}"
            if key in self.objects:
                return self._status(409, "AlreadyExists", f"{name} already exists")
            obj = copy.deepcopy(body)
            obj["metadata"]["generation"] = 1
            obj["metadata"]["uid"] = f"uid-{len(self.objects)}"
            self._settle(obj)
            self.objects[key] = obj
            self._changed("ADDED", obj)
            return 201, obj
        scale = path.endswith("/scale")
        key = path[: -len("/scale")] if scale else path
        obj = self.objects.get(key)
        if obj is None:
            return self._status(404, "NotFound", f"{path} not found")
        if method == "GET":
            return 200, obj
        if method == "PATCH":
            if scale:
                obj["spec"]["replicas"] = body["spec"]["replicas"]
            else:
                merged = _merge(obj, body)
                obj.clear()
                obj.update(merged)
            obj["metadata"]["generation"] += 1
            self._settle(obj)
            self._changed("MODIFIED", obj)
            if scale:
                return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": obj["metadata"],
                             "spec": {"replicas": obj["spec"]["replicas"]}}
            return 200, obj
        if method == "DELETE":
            ns_name = obj["metadata"]["name"]
            for k in [k for k in self.objects if k == key or f"/namespaces/{ns_name}/" in k]:
                del self.objects[k]
            return 200, {**obj, "status": {"phase": "Terminating"}}
        return self._status(405, "MethodNotAllowed", method)

    # --- helpers for tests ------------------------------------------------------------------
    def finish_rollouts(self) -> None:
        """What the Deployment controller does once the new pods are ready: every Deployment
        reports a finished rollout, each a MODIFIED event for a watch."""
        self.auto_ready = True
        for obj in list(self.objects.values()):
            if obj.get("kind") == "Deployment":
                self._settle(obj)
                self._changed("MODIFIED", obj)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def api(self) -> KubernetesApi:
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return KubernetesApi(kubernetes.client.ApiClient(configuration), where=self.url)

    def calls(self, method: str | None = None, fragment: str = "") -> list[dict]:
        return [r for r in self.requests if (method is None or r["method"] == method) and fragment in r["path"]
                and r["path"] not in self.ready_http]

    def deployment(self, ns: str, name: str) -> dict:
        return self.objects[f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"]


class FakeLoad:
    """Stands in for the Locust replay (its own tests live with ipa.loadgen)."""

    def __init__(self, url, send_times, work_dir):
        self.url, self.send_times, self.started, self.finished = url, list(send_times), False, False

    def start(self):
        self.started = True

    def finish(self):
        self.finished = True
        return "requests-table"

    def interrupt(self):
        self.interrupted = True


@pytest.fixture
def emulator():
    with RecordingApiServer() as server:
        yield server


def make_backend(emulator, **settings) -> tuple[KubernetesBackend, dict]:
    seen: dict = {"router": []}
    defaults = dict(router_url=emulator.url, prometheus_url=emulator.url, poll_s=0.01,
                    rollout_timeout_s=2.0, endpoint_timeout_s=2.0, delete_timeout_s=2.0)
    backend = KubernetesBackend(
        KubernetesSettings(**{**defaults, **settings}), api=emulator.api(),
        load_factory=lambda url, times, work_dir: seen.setdefault("load", FakeLoad(url, times, work_dir)),
        monitor_factory=lambda url, clock: seen.setdefault("monitor_url", url),
        router_admin=lambda url, pipeline, cfg: seen["router"].append((url, cfg)), run_id="t1")
    return backend, seen


def with_stage(cfg: Configuration, stage: str, **changes) -> Configuration:
    stages = dict(cfg.stages)
    s = stages[stage]
    stages[stage] = StageConfig(**{**s.__dict__, **changes})
    return Configuration(stages)


# --- start ------------------------------------------------------------------------------------

def test_start_creates_every_object_in_order_then_starts_the_load(emulator, tiny_pipeline):
    initial = cheapest_configuration(tiny_pipeline)
    backend, seen = make_backend(emulator)
    backend.start(tiny_pipeline, initial, [0.0, 0.5, 1.0])
    ns = backend.namespace
    assert ns == "ipa-run-tiny-video-t1"
    expected = run_objects(tiny_pipeline, initial, backend.options)
    posts = emulator.calls("POST")
    assert [p["body"] for p in posts] == expected  # the builders' objects, byte for byte
    assert posts[0]["path"] == "/api/v1/namespaces"
    assert [p["path"] for p in posts[1:4]] == [
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"]
    assert f"/apis/apps/v1/namespaces/{ns}/deployments" in [p["path"] for p in posts]
    assert all(p["content_type"] == "application/json" for p in posts)
    assert all(p["query"].get("fieldManager") == ["ipa-bench"] for p in posts)
    # every Deployment's rollout was read before the load began
    reads = {r["path"].rsplit("/", 1)[1] for r in emulator.calls("GET", "/deployments/")}
    assert reads == {"prometheus", "stage-detector", "stage-classifier", "router"}
    assert seen["load"].started and seen["load"].url == emulator.url
    assert seen["monitor_url"] == emulator.url
    backend.stop()


def test_stop_finishes_the_load_and_deletes_the_namespace(emulator, tiny_pipeline, tmp_path):
    from ipa.runs.folder import check_extra_names
    backend, seen = make_backend(emulator, work_dir=tmp_path)
    backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [0.0])
    ns = backend.namespace
    out = backend.stop()
    assert seen["load"].finished and out.requests == "requests-table"
    check_extra_names(out.extra_files)  # every pod log has its place in the run folder (logs/)
    deletes = emulator.calls("DELETE")
    assert [d["path"] for d in deletes] == [f"/api/v1/namespaces/{ns}"]
    assert deletes[0]["query"] == {"propagationPolicy": ["Background"]}
    assert not [k for k in emulator.objects if f"/namespaces/{ns}" in k]
    # and it waited for the namespace to be gone
    assert emulator.requests[-1]["method"] == "GET" and emulator.requests[-1]["path"] == f"/api/v1/namespaces/{ns}"


def test_abort_interrupts_the_load_instead_of_finishing_it_and_deletes_the_namespace(emulator, tiny_pipeline):
    backend, seen = make_backend(emulator)
    backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [0.0, 100.0])
    ns = backend.namespace
    backend.abort()
    assert getattr(seen["load"], "interrupted", False) and not seen["load"].finished
    assert [d["path"] for d in emulator.calls("DELETE")] == [f"/api/v1/namespaces/{ns}"]


# --- apply ------------------------------------------------------------------------------------

def test_scaling_goes_through_the_scale_subresource(emulator, tiny_pipeline):
    initial = cheapest_configuration(tiny_pipeline)
    backend, seen = make_backend(emulator)
    backend.start(tiny_pipeline, initial, [])
    before = len(emulator.requests)
    change = backend.apply(with_stage(initial, "classifier", replicas=3))
    patches = [r for r in emulator.requests[before:] if r["method"] == "PATCH"]
    assert len(patches) == 1
    p = patches[0]
    assert p["path"] == f"/apis/apps/v1/namespaces/{backend.namespace}/deployments/stage-classifier/scale"
    assert p["content_type"] == SMP
    assert p["body"] == {"spec": {"replicas": 3}}
    # the router hears of it too: its partial-batch timeouts follow the replica count
    assert seen["router"] == [(emulator.url, with_stage(initial, "classifier", replicas=3))]
    assert change.completed_at_s is None and "classifier: 1 -> 3 replicas" in change.note
    backend.poll_rollouts()  # the emulator reports the rollout finished
    assert backend.applied[-1].completed_at_s is not None
    backend.stop()


def test_a_variant_switch_is_one_rolling_update_patch(emulator, tiny_pipeline):
    initial = cheapest_configuration(tiny_pipeline)
    heavy = tiny_pipeline.stage_profiles["detector"][-1]
    backend, _ = make_backend(emulator)
    backend.start(tiny_pipeline, initial, [])
    before = len(emulator.requests)
    backend.apply(with_stage(initial, "detector", variant=heavy.variant, cores=heavy.base_cores, replicas=2))
    patches = [r for r in emulator.requests[before:] if r["method"] == "PATCH"]
    assert len(patches) == 1, "the switch carries the replica count: no separate scale"
    p = patches[0]
    assert p["path"] == f"/apis/apps/v1/namespaces/{backend.namespace}/deployments/stage-detector"
    assert p["content_type"] == SMP
    container = p["body"]["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "server"  # strategic merge matches the container by name
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["IPA_VARIANT"] == heavy.variant and env["IPA_CORES"] == str(heavy.base_cores)
    cpu = str(heavy.base_cores)
    assert container["resources"] == {"requests": {"cpu": cpu, "memory": "512Mi"},
                                      "limits": {"cpu": cpu, "memory": "512Mi"}}
    assert p["body"]["spec"]["replicas"] == 2
    # the emulated merge leaves a Deployment running the new variant, selector untouched
    dep = emulator.deployment(backend.namespace, "stage-detector")
    assert dep["metadata"]["generation"] == 2
    assert {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}["IPA_VARIANT"] == heavy.variant
    assert dep["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "ipa-model-server",
                                                     "app.kubernetes.io/instance": "stage-detector"}
    backend.stop()


def test_batch_sizes_go_to_the_router_only(emulator, tiny_pipeline):
    initial = cheapest_configuration(tiny_pipeline)
    backend, seen = make_backend(emulator)
    backend.start(tiny_pipeline, initial, [])
    before = len(emulator.requests)
    target = with_stage(initial, "detector", batch=4)
    change = backend.apply(target)
    assert [r for r in emulator.requests[before:] if r["method"] != "GET"] == []
    assert seen["router"] == [(emulator.url, target)]
    assert change.completed_at_s == change.requested_at_s  # nothing to roll out
    backend.stop()


def test_completion_waits_for_the_rollout_and_a_newer_change_supersedes(emulator, tiny_pipeline):
    initial = cheapest_configuration(tiny_pipeline)
    backend, _ = make_backend(emulator)
    backend.start(tiny_pipeline, initial, [])
    emulator.auto_ready = False  # from now on Deployments stay mid-rollout until the test says so
    first = with_stage(initial, "classifier", replicas=2)
    backend.apply(first)
    backend.poll_rollouts()
    # applied[0] is the initial configuration, in place from t0
    assert backend.applied[0].note == "initial" and backend.applied[0].completed_at_s == 0.0
    assert backend.applied[1].completed_at_s is None
    backend.apply(with_stage(first, "classifier", replicas=4))
    assert "superseded" in backend.applied[1].note
    dep = emulator.deployment(backend.namespace, "stage-classifier")
    emulator.auto_ready = True
    emulator._settle(dep)
    backend.poll_rollouts()
    assert backend.applied[1].completed_at_s is None and backend.applied[2].completed_at_s is not None
    backend.stop()


def test_plan_changes_is_per_stage_and_minimal(tiny_pipeline):
    a = cheapest_configuration(tiny_pipeline)
    assert plan_changes(a, a) == []
    heavy = tiny_pipeline.stage_profiles["classifier"][-1]
    b = with_stage(with_stage(a, "detector", replicas=5, batch=2), "classifier",
                   variant=heavy.variant, cores=heavy.base_cores)
    kinds = [(c.stage, c.kind) for c in plan_changes(a, b)]
    assert kinds == [("detector", "scale"), ("detector", "batch"), ("classifier", "switch")]


# --- errors -----------------------------------------------------------------------------------

def test_no_reachable_cluster_is_named_and_nothing_is_left(tiny_pipeline):
    configuration = kubernetes.client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    configuration.retries = False
    api = KubernetesApi(kubernetes.client.ApiClient(configuration), where=configuration.host)
    backend = KubernetesBackend(KubernetesSettings(), api=api, run_id="t1")
    with pytest.raises(ClusterUnreachable, match="cannot reach the Kubernetes API at http://127.0.0.1:9"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])


def test_no_kubeconfig_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterUnreachable, match="no Kubernetes configuration.*KUBECONFIG"):
        KubernetesApi.from_kubeconfig()


def test_forbidden_create_is_named_and_the_namespace_deleted(emulator, tiny_pipeline):
    emulator.forbid.append(("POST", "/deployments"))
    backend, seen = make_backend(emulator)
    with pytest.raises(ClusterForbidden, match="forbids creating Deployment prometheus in namespace ipa-run-tiny-video-t1"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    assert [d["path"] for d in emulator.calls("DELETE")] == ["/api/v1/namespaces/ipa-run-tiny-video-t1"]
    assert emulator.objects == {} and "load" not in seen


def test_forbidden_namespace_creation_leaves_nothing_to_delete(emulator, tiny_pipeline):
    emulator.forbid.append(("POST", "/api/v1/namespaces"))
    backend, _ = make_backend(emulator)
    with pytest.raises(ClusterForbidden, match="creating Namespace"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    assert emulator.calls("DELETE") == []


def _stuck_pod(ns: str, instance: str, status: dict) -> dict:
    return {"metadata": {"name": f"{instance}-abc", "namespace": ns,
                         "labels": {"app.kubernetes.io/instance": instance}}, "status": status}


def _unschedulable_pod(ns: str, instance: str, message: str = "0/1 nodes are available: 1 Insufficient cpu.") -> dict:
    return _stuck_pod(ns, instance, {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]})


def test_missing_image_is_detected_and_cleaned_up(emulator, tiny_pipeline):
    emulator.auto_ready = False
    ns = "ipa-run-tiny-video-t1"
    emulator.pods[ns] = [_stuck_pod(ns, "stage-detector", {"phase": "Pending", "containerStatuses": [{
        "name": "server", "image": "ipa-bench:dev", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied for ipa-bench"}}}]})]
    backend, seen = make_backend(emulator, rollout_timeout_s=30, problem_grace_s=0.3)  # a pull back-off may clear
    with pytest.raises(ImageMissing, match="ipa-bench:dev.*ErrImagePull.*kind load docker-image"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    assert [d["path"] for d in emulator.calls("DELETE")] == [f"/api/v1/namespaces/{ns}"]
    assert "load" not in seen


def test_insufficient_capacity_is_detected_and_cleaned_up(emulator, tiny_pipeline):
    emulator.auto_ready = False
    ns = "ipa-run-tiny-video-t1"
    emulator.pods[ns] = [_unschedulable_pod(ns, "stage-classifier")]
    backend, _ = make_backend(emulator, rollout_timeout_s=30, problem_grace_s=0.3)
    with pytest.raises(InsufficientCapacity, match="Insufficient cpu"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    assert emulator.calls("DELETE")


def test_a_rollout_problem_that_clears_within_the_grace_is_waited_out(emulator, tiny_pipeline):
    # a fresh kind node still tainted not-ready: the pod is unschedulable for a while, then placed
    emulator.auto_ready = False
    ns = "ipa-run-tiny-video-t1"
    emulator.pods[ns] = [_unschedulable_pod(
        ns, "stage-classifier", "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.")]

    def node_ready():
        # once the backend waits on the rollouts (every object created), the node turns ready
        deadline = time.monotonic() + 10
        while not emulator.calls("GET", "/deployments/") and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the problem stays a while: it must be waited out, not fail the start
        emulator.pods[ns] = []
        emulator.auto_ready = True
        for obj in list(emulator.objects.values()):
            emulator._settle(obj)

    backend, _ = make_backend(emulator, rollout_timeout_s=10, problem_grace_s=5)
    helper = threading.Thread(target=node_ready)
    helper.start()
    backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    helper.join()
    assert not emulator.calls("DELETE")
    backend.stop()


def _start_with_rollouts_finishing_after(emulator, backend, tiny_pipeline, delay_s: float) -> float:
    """Start the backend while its Deployments are not ready; ``delay_s`` after it first reads one
    back, they finish. Returns the seconds from that moment until start returned."""
    emulator.auto_ready = False
    finished = {}

    def finish_later():
        deadline = time.monotonic() + 10
        while not emulator.calls("GET", "/deployments/") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay_s)
        emulator.finish_rollouts()
        finished["at"] = time.monotonic()

    helper = threading.Thread(target=finish_later)
    helper.start()
    backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    returned = time.monotonic()
    helper.join()
    return returned - finished["at"]


def test_a_rollout_is_seen_finishing_through_a_watch_not_at_the_next_poll(emulator, tiny_pipeline):
    # a poll period far longer than the rollout: only the watch's event can end the wait early
    backend, _ = make_backend(emulator, poll_s=5.0, watch_s=8.0, rollout_timeout_s=30)
    lag = _start_with_rollouts_finishing_after(emulator, backend, tiny_pipeline, 0.3)
    watches = [r for r in emulator.calls("GET", "/deployments") if watching(r)]
    assert watches and watches[0]["query"]["resourceVersion"] != [""]
    assert lag < 2.5, lag  # a poll would have slept 5 s
    backend.stop()


def test_without_a_watch_the_rollout_wait_polls_and_still_finishes(emulator, tiny_pipeline):
    emulator.watchable = False  # e.g. a proxy in front of the API server that cannot stream
    backend, _ = make_backend(emulator, poll_s=0.05, watch_s=8.0, rollout_timeout_s=30)
    _start_with_rollouts_finishing_after(emulator, backend, tiny_pipeline, 0.3)
    watches = [r for r in emulator.calls("GET", "/deployments") if watching(r)]
    assert len(watches) == 1  # refused once, then not asked again
    assert len([r for r in emulator.calls("GET", "/deployments/")]) > 3  # the reads went on instead
    backend.stop()


def test_during_the_run_a_finished_rollout_is_recorded_through_the_watch_not_at_the_next_poll(emulator,
                                                                                           tiny_pipeline):
    backend, _ = make_backend(emulator, poll_s=5.0, watch_s=8.0, rollout_timeout_s=30)
    cfg = cheapest_configuration(tiny_pipeline)
    backend.start(tiny_pipeline, cfg, [0.0])
    time.sleep(5.5)  # the observer's first look (one poll_s), after which it waits on the watch
    emulator.auto_ready = False
    stage = next(iter(cfg.stages))
    backend.apply(with_stage(cfg, stage, replicas=cfg.stages[stage].replicas + 1))
    change = len(backend.applied) - 1
    time.sleep(0.3)
    emulator.finish_rollouts()
    finished = time.monotonic()
    while backend.applied[change].completed_at_s is None and time.monotonic() - finished < 10:
        time.sleep(0.02)
    lag = time.monotonic() - finished
    assert backend.applied[change].completed_at_s is not None
    assert lag < 2.5, lag  # a poll would have slept up to 5 s, the watch's own timeout is 8 s
    backend.stop()


def test_an_image_that_cannot_exist_fails_at_once_whatever_the_grace(emulator, tiny_pipeline):
    emulator.auto_ready = False
    ns = "ipa-run-tiny-video-t1"
    emulator.pods[ns] = [_stuck_pod(ns, "stage-detector", {"phase": "Pending", "containerStatuses": [{
        "name": "server", "image": "ipa bench", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "InvalidImageName", "message": "invalid reference format"}}}]})]
    backend, _ = make_backend(emulator, rollout_timeout_s=30, problem_grace_s=3600)
    started = time.monotonic()
    with pytest.raises(ImageMissing, match="InvalidImageName"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    assert time.monotonic() - started < 5


def test_crash_loop_is_named(emulator, tiny_pipeline):
    emulator.auto_ready = False
    ns = "ipa-run-tiny-video-t1"
    emulator.pods[ns] = [_stuck_pod(ns, "router", {"phase": "Running", "containerStatuses": [{
        "name": "router", "image": "ipa-bench:dev", "ready": False, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "message": "No module named ipa.serving.router"}}}]})]
    backend, _ = make_backend(emulator, rollout_timeout_s=30)
    with pytest.raises(ContainerFailing, match="No module named ipa.serving.router"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    assert emulator.calls("DELETE")


def test_rollout_timeout_names_what_is_missing(emulator, tiny_pipeline):
    emulator.auto_ready = False
    backend, _ = make_backend(emulator, rollout_timeout_s=0.2)
    with pytest.raises(RolloutTimeout, match=r"rollout not done after 0 s.*router: 0 of 1 updated replicas available"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    assert emulator.calls("DELETE")


def test_a_stuck_switch_during_the_run_is_noted_not_fatal(emulator, tiny_pipeline):
    initial = cheapest_configuration(tiny_pipeline)
    backend, _ = make_backend(emulator)
    backend.start(tiny_pipeline, initial, [])
    emulator.auto_ready = False
    ns = backend.namespace
    emulator.pods[ns] = [_unschedulable_pod(ns, "stage-classifier")]
    backend.apply(with_stage(initial, "classifier", replicas=9))
    backend.poll_rollouts()
    assert backend.applied[-1].completed_at_s is None
    assert "stuck: pod stage-classifier-abc cannot be scheduled" in backend.applied[-1].note
    backend.stop()
    assert emulator.calls("DELETE")


def test_router_unreachable_after_rollout_cleans_up(emulator, tiny_pipeline):
    emulator.ready_http["/v2/models/tiny-video/ready"] = 503
    backend, _ = make_backend(emulator, endpoint_timeout_s=0.3)
    with pytest.raises(Exception, match="the router does not answer"):
        backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    assert emulator.calls("DELETE")


def test_apply_rejects_a_configuration_for_other_stages(emulator, tiny_pipeline):
    from ipa.errors import ConfigError
    backend, _ = make_backend(emulator)
    backend.start(tiny_pipeline, cheapest_configuration(tiny_pipeline), [])
    bad = Configuration({"detector": cheapest_configuration(tiny_pipeline)["detector"]})
    with pytest.raises(ConfigError, match="do not match pipeline"):
        backend.apply(bad)
    backend.stop()


def test_cluster_options_reject_bad_values():
    from ipa.errors import ConfigError
    with pytest.raises(ConfigError, match="NodePort range"):
        ClusterOptions(router_node_port=8080)
    with pytest.raises(ConfigError, match="not a valid Kubernetes name"):
        ClusterOptions(namespace="Bad_Name")


def test_the_run_clock_starts_on_a_whole_second_just_ahead():
    # the router stamps its arrival counter on whole wall-clock seconds: the run's seconds must be those
    import time

    clock = WallClock()
    assert clock.t0_wall == int(clock.t0_wall)
    assert 0.5 <= clock.t0_wall - time.time() <= 1.5
    assert clock.now() == pytest.approx(time.time() - clock.t0_wall, abs=0.05)


def test_failed_rollout_polls_are_written_to_the_run_folder(emulator, tiny_pipeline, tmp_path):
    import csv as csv_module

    from ipa.k8s.client import ClusterError
    from ipa.runs.folder import check_extra_names

    backend, _ = make_backend(emulator, work_dir=tmp_path)
    cfg = cheapest_configuration(tiny_pipeline)
    backend.start(tiny_pipeline, cfg, [0.0])
    stage = next(iter(cfg.stages))
    backend.apply(with_stage(cfg, stage, replicas=cfg.stages[stage].replicas + 1))  # a rollout to watch

    def unreachable(*args, **kwargs):
        raise ClusterError("API server unreachable (injected)")

    backend.api.read_deployment = unreachable
    out = backend.stop()
    check_extra_names(out.extra_files)
    with open(out.extra_files["status_poll_errors.csv"], newline="") as f:
        rows = list(csv_module.DictReader(f))
    assert rows and all("API server unreachable (injected)" in r["message"] for r in rows)
    assert rows[-1]["message"].startswith("final rollout check")


def test_stop_writes_the_routers_ledger_with_its_restarts(emulator, tiny_pipeline, tmp_path):
    backend, _ = make_backend(emulator, work_dir=tmp_path)
    cfg = cheapest_configuration(tiny_pipeline)
    backend.start(tiny_pipeline, cfg, [0.0])
    emulator.pods[backend.namespace] = [
        {"metadata": {"name": "router-a", "labels": {"app.kubernetes.io/instance": "router"}},
         "status": {"containerStatuses": [{"name": "router", "restartCount": 2}]}},
        {"metadata": {"name": "stage-x", "labels": {"app.kubernetes.io/instance": "stage-x"}},
         "status": {"containerStatuses": [{"name": "stage", "restartCount": 5}]}}]
    out = backend.stop()
    ledger = json.loads(Path(out.extra_files["router_counts.json"]).read_text())
    assert ledger["received"] == 1 and ledger["answered"] == {"ok": 1}
    assert ledger["router_restarts"] == 2  # the router pod's, not the stage's


def test_a_router_that_cannot_be_read_at_stop_is_a_status_error_not_a_silent_gap(emulator, tiny_pipeline, tmp_path):
    backend, _ = make_backend(emulator, work_dir=tmp_path)
    cfg = cheapest_configuration(tiny_pipeline)
    backend.start(tiny_pipeline, cfg, [0.0])
    emulator.forbid.append(("GET", "/metrics"))
    out = backend.stop()
    assert "router_counts.json" not in out.extra_files
    assert any("router ledger" in message for _, message in backend.status_errors)


# --- apply reconciles: every call can fail, and cluster and records end equal -----------------

def cluster_state(emulator, backend) -> dict:
    """What the cluster's stage Deployments hold: stage -> (variant, replicas, cores)."""
    from ipa.k8s.manifests import stage_state
    return {s: stage_state(emulator.deployment(backend.namespace, f"stage-{s}")) for s in backend.current.stages}


def records_state(cfg: Configuration) -> dict:
    return {s: (sc.variant, sc.replicas, sc.cores) for s, sc in cfg.stages.items()}


def _targets(tiny_pipeline, initial):
    heavy = tiny_pipeline.stage_profiles["detector"][-1]
    return {
        "scale": with_stage(initial, "classifier", replicas=3),
        "patch": with_stage(initial, "detector", variant=heavy.variant, cores=heavy.base_cores, replicas=2),
        "router": with_stage(initial, "detector", batch=4),
    }


FRAGMENTS = {"scale": ("PATCH", "/scale", None), "patch": ("PATCH", "/deployments/stage-", "/scale")}


@pytest.mark.parametrize("call", ["scale", "patch", "router"])
@pytest.mark.parametrize("how", ["blink", "refused", "lost"])
def test_a_failed_call_of_an_apply_leaves_cluster_and_records_equal(emulator, tiny_pipeline, call, how):
    from ipa.errors import ApplyFailed
    from ipa.k8s.client import ClusterBusy, ClusterError

    initial = cheapest_configuration(tiny_pipeline)
    backend, seen = make_backend(emulator, retry_delays_s=(0.0, 0.0))
    router_failures = {"left": 0}
    taken = []

    def router_admin(url, pipeline, cfg):
        if router_failures["left"] > 0:
            router_failures["left"] -= 1
            if how == "lost":
                taken.append(cfg)  # it took it, the answer was lost
            raise (ClusterBusy if how in ("blink", "lost") else ClusterError)("router: injected")
        taken.append(cfg)

    backend._router_admin = router_admin
    backend._router_batches = lambda url: {s: c.batch for s, c in (taken[-1] if taken else initial).stages.items()}
    backend.start(tiny_pipeline, initial, [])
    target = _targets(tiny_pipeline, initial)[call]
    times = 1 if how == "blink" else 99  # a blink is retried away; the others outlast the 3 tries
    if call == "router":
        router_failures["left"] = times
    else:
        method, fragment, exclude = FRAGMENTS[call]
        emulator.fail.append({"method": method, "fragment": fragment, "exclude": exclude or "\0",
                              "times": times, "status": 403 if how == "refused" else 500, "applied": how == "lost"})
    if how == "blink":
        backend.apply(target)
        assert backend.current == target and records_state(target) == cluster_state(emulator, backend)
        assert any("trying again" in m for _, m in backend.status_errors)
    else:
        with pytest.raises(ApplyFailed, match="did not take the whole configuration") as raised:
            backend.apply(target)
        # the records say what the cluster holds, whether the failed call took effect or not
        assert records_state(backend.current) == cluster_state(emulator, backend)
        assert raised.value.reached == backend.current == backend.applied[-1].configuration
        want = records_state(target if how == "lost" and call != "router" else initial)
        assert cluster_state(emulator, backend) == want
        router_has = taken[-1] if taken else initial
        assert {s: c.batch for s, c in backend.current.stages.items()} == {s: c.batch for s, c in router_has.stages.items()}
        # the cluster recovers: the next apply of the same target gets there
        emulator.fail.clear()
        router_failures["left"] = 0
        backend.apply(target)
        assert backend.current == target and records_state(target) == cluster_state(emulator, backend)
        assert taken[-1] == target
    backend.stop()


def test_a_stage_that_cannot_be_read_back_is_sent_whole_at_the_next_apply(emulator, tiny_pipeline):
    from ipa.errors import ApplyFailed

    initial = cheapest_configuration(tiny_pipeline)
    backend, _ = make_backend(emulator, retry_delays_s=())
    backend.start(tiny_pipeline, initial, [])
    target = with_stage(initial, "classifier", replicas=3)
    emulator.fail.append({"method": "PATCH", "fragment": "/scale", "times": 1, "status": 500, "applied": True})
    emulator.fail.append({"method": "GET", "fragment": "/deployments/stage-classifier", "times": 1, "status": 500})
    with pytest.raises(ApplyFailed):
        backend.apply(target)
    # unknown, so the same target is not "no change": the whole Deployment goes again
    before = len(emulator.requests)
    backend.apply(target)
    patches = [r for r in emulator.requests[before:] if r["method"] == "PATCH"]
    assert [p["path"].rsplit("/", 1)[-1] for p in patches] == ["stage-classifier"]
    assert backend.current == target and records_state(target) == cluster_state(emulator, backend)
    backend.stop()



def test_provisioned_cores_are_the_stage_pods_that_exist_surge_included(emulator, tiny_pipeline):
    initial = cheapest_configuration(tiny_pipeline)
    backend, _ = make_backend(emulator)
    backend.start(tiny_pipeline, initial, [])
    backend._stop_poll.set()  # the test polls by hand
    ns = backend.namespace

    def server_pod(name, cpu, phase="Running"):
        return {"metadata": {"name": name, "labels": {"app.kubernetes.io/name": "ipa-model-server"}},
                "spec": {"containers": [{"name": "server", "resources": {"requests": {"cpu": cpu}}}]},
                "status": {"phase": phase}}

    base = initial.total_cores
    # a rolling update mid-way: the old pods still run, the new ones (2 cores each, one given back
    # by the API as 2000m) already exist; a finished pod holds nothing
    emulator.pods[ns] = [server_pod(f"old-{i}", "1") for i in range(base)] + [
        server_pod("new-0", "2"), server_pod("new-1", "2000m", "Pending"), server_pod("done", "4", "Succeeded")]
    backend.poll_cores()
    assert backend._cores[-1][1] == base + 4
    # the surge is gone: back to the configuration's cores
    emulator.pods[ns] = [server_pod(f"old-{i}", "1") for i in range(base)]
    backend.poll_cores()
    assert backend._cores[-1][1] == base
    # pods not created yet never make the record fall below what the configuration asks for
    emulator.pods[ns] = []
    backend.apply(with_stage(initial, "classifier", replicas=initial["classifier"].replicas + 2))
    backend.poll_cores()
    want = base + 2 * initial["classifier"].cores
    assert backend._cores[-1][1] == want and backend.applied[-1].requested_at_s <= backend._cores[-1][0]
    out = backend.stop()
    assert out.provisioned_cores == backend._cores and [c for _, c in out.provisioned_cores][:1] == [base]
