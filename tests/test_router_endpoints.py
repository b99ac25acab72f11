"""The router with several endpoints per stage (a Kubernetes stage: one pod per replica behind a
headless Service): capacity is the sum over the endpoints, batches go to the freest endpoint,
the endpoint set follows the stage's DNS answers, and a stage process leaving drains first.

The pure parts drive ``Router`` directly with a scripted stand-in for DNS; the live test starts
real stage processes and a real router on 127.0.0.1, two processes for one stage."""
from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import psutil
import pytest

from ipa.configuration import StageConfig
from ipa.errors import ConfigError
from ipa.processes import ProcessGroup, free_port, python_argv, wait_http
from ipa.serving.discovery import dns_resolve
from ipa.serving.router import Router
from ipa.serving.stage_queue import Endpoint, StageQueue
from ipa.serving.spec import RouterSpec, parse_endpoint, stage_specs, write_json

ROW = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}


def spec(endpoints: dict[str, list[str]], configure_stages: bool = False) -> RouterSpec:
    return RouterSpec("p", 1.0, 2.0, list(endpoints), endpoints, {s: 0.5 for s in endpoints},
                      configure_stages=configure_stages)


class ScriptedDns:
    """A stand-in for DNS: answers each host name from a script the test edits; ``fail`` makes
    the next lookups raise as a resolver error would (NXDOMAIN, no server)."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers, self.fail, self.asked = answers, False, []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if self.fail:
            raise OSError(f"cannot resolve {host}")
        return list(self.answers[host])


def _endpoint(capacity: int, inflight: int = 0, up: bool = True, port: int = 1) -> Endpoint:
    e = Endpoint("127.0.0.1", port)
    e.up, e.capacity, e.inflight = up, capacity, inflight
    return e


# --- pure ---------------------------------------------------------------------------------------

def test_capacity_is_the_sum_of_answering_endpoints_and_the_freest_is_chosen_ties_in_turn():
    q = StageQueue(0, "s", ["127.0.0.1:1"], 0.0)
    a, b, c = _endpoint(2, port=1), _endpoint(2, port=2), _endpoint(5, up=False, port=3)
    q.endpoints = [a, b, c]
    assert q.capacity == 4  # c does not answer: its replicas do not count
    picks = [q.free_endpoint() for _ in range(4)]
    assert picks == [a, b, a, b]  # equal free replicas: in turn, not always the first
    b.inflight = 2
    assert q.free_endpoint() is a and q.free_endpoint() is a
    a.inflight = 2
    assert q.free_endpoint() is None  # every replica busy: the batch waits in the central queue
    a.inflight, b.inflight, b.capacity = 0, 0, 4
    assert q.free_endpoint() is b  # most free replicas first


def test_the_routers_readiness_is_its_own_and_the_pipelines_names_the_idle_stage():
    # a stage with no ready replica (restarting) leaves the router ready, so its Service keeps
    # sending it requests to queue or drop; the pipeline (the V2 model) is what is not ready
    from ipa.serving.http import Request

    router = Router(spec({"a": ["127.0.0.1:1"], "b": ["127.0.0.1:2"]}))
    router.by_name["a"].endpoints = [_endpoint(2, port=1)]
    router.by_name["b"].endpoints = [_endpoint(0, port=2)]

    def get(path):
        response = asyncio.run(router.handle(Request("GET", path, {}, {}, b"")))
        return response.status, json.loads(response.body)

    assert get("/v2/health/ready") == (200, {"ready": True, "stage_capacity": {"a": 2, "b": 0}})
    status, body = get("/v2/models/p/ready")
    assert status == 503 and "['b']" in body["error"]
    router.by_name["b"].endpoints = [_endpoint(1, port=2)]
    assert get("/v2/models/p/ready") == (200, {"name": "p", "ready": True, "stage_capacity": {"a": 2, "b": 1}})


def test_endpoints_follow_the_dns_answers_and_a_failed_lookup_keeps_them():
    dns = ScriptedDns({"stage-cls.ns.svc.cluster.local": ["10.1.0.7", "10.1.0.8"]})

    async def scenario():
        router = Router(spec({"cls": ["stage-cls.ns.svc.cluster.local:8000"]}), resolve=dns)
        q = router.queues[0]
        await router.discovery.resolve_stage(q)
        assert [e.address for e in q.endpoints] == ["10.1.0.7:8000", "10.1.0.8:8000"]
        first = q.endpoints[0]
        # a pod scaled in, one came: the known one keeps its client and state
        dns.answers["stage-cls.ns.svc.cluster.local"] = ["10.1.0.8", "10.1.0.9"]
        first.inflight = 1  # it still has a batch out
        await router.discovery.resolve_stage(q)
        assert [e.address for e in q.endpoints] == ["10.1.0.8:8000", "10.1.0.9:8000"]
        assert first.gone and first.inflight == 1  # its batch is still answered, nothing new goes there
        await asyncio.sleep(0)
        assert first.poller.done()  # and it is no longer polled
        kept = list(q.endpoints)
        dns.fail = True  # DNS blinks: the endpoints stay, their polls say whether they answer
        await router.discovery.resolve_stage(q)
        assert q.endpoints == kept and q.resolve_failed
        dns.fail = False
        await router.discovery.resolve_stage(q)
        assert q.endpoints == kept and not q.resolve_failed
        assert router.status()["stages"][0]["endpoints"][0]["address"] == "10.1.0.8:8000"
        await router.close()

    asyncio.run(scenario())
    assert set(dns.asked) == {"stage-cls.ns.svc.cluster.local"}


def test_a_new_configuration_triggers_a_lookup_and_is_not_pushed_to_pods():
    dns = ScriptedDns({"stage-a": ["127.0.0.9"]})

    async def scenario():
        router = Router(spec({"a": ["stage-a:8000"]}), resolve=dns)
        await router.discovery.resolve_stage(router.queues[0])
        asked = len(dns.asked)
        result = await router.apply({"a": {"variant": "v", "batch": 4, "replicas": 9, "cores": 1}})
        await asyncio.sleep(0.01)  # the lookup it started
        assert len(dns.asked) > asked
        assert result == {"applied": True, "pending": []}  # nothing to deliver: pods are not told
        assert router.queues[0].batch == 4
        assert not router.queues[0].endpoints[0].pushed
        await router.close()

    asyncio.run(scenario())


def test_addresses_resolve_to_themselves_and_names_through_the_system_resolver():
    assert asyncio.run(dns_resolve("127.0.0.1")) == ["127.0.0.1"]
    assert asyncio.run(dns_resolve("::1")) == ["::1"]
    assert "127.0.0.1" in asyncio.run(dns_resolve("localhost"))


@pytest.mark.parametrize("entry", ["stage-a", "stage-a:", ":8000", "stage-a:http", "stage-a:70000"])
def test_bad_endpoints_are_named(entry):
    with pytest.raises(ConfigError, match="is not host:port"):
        parse_endpoint(entry)
    with pytest.raises(ConfigError, match="is not host:port"):
        spec({"a": [entry]})


def test_a_stage_without_endpoints_is_refused():
    with pytest.raises(ConfigError, match="stage 'a' has no endpoints"):
        spec({"a": []})


# --- live ---------------------------------------------------------------------------------------

def _post(url: str, body, timeout: float = 30.0) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _until(predicate, timeout_s: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


@pytest.mark.live
def test_two_stage_processes_behind_one_router_stage(tiny_pipeline, tmp_path):
    specs = stage_specs(tiny_pipeline, load_time_scale=0.05)
    for name, s in specs.items():
        write_json(s, tmp_path / f"stage-{name}.json")
    det = tiny_pipeline.stage_profiles["detector"][0].variant
    cls = tiny_pipeline.stage_profiles["classifier"][0].variant
    # the classifier is two processes (as two pods would be): 1 and 2 replicas
    # (the detector has replicas enough to keep more than one classifier batch in flight)
    procs = {"det": ("detector", StageConfig(det, 1, 4, 1)), "cls-a": ("classifier", StageConfig(cls, 1, 1, 1)),
             "cls-b": ("classifier", StageConfig(cls, 1, 2, 1))}
    ports = {k: free_port() for k in procs}
    group = ProcessGroup()
    try:
        children = {k: group.start(k, python_argv("ipa.serving.stage", "--spec", str(tmp_path / f"stage-{stage}.json"),
                                                  "--config", json.dumps(asdict(cfg)), "--port", str(ports[k]),
                                                  "--drain-s", "1"), tmp_path / f"{k}.log")
                    for k, (stage, cfg) in procs.items()}
        write_json(RouterSpec(tiny_pipeline.name, tiny_pipeline.sla_s, tiny_pipeline.drop_limit_s,
                              ["detector", "classifier"],
                              {"detector": [f"127.0.0.1:{ports['det']}"],
                               "classifier": [f"127.0.0.1:{ports['cls-a']}", f"127.0.0.1:{ports['cls-b']}"]},
                              dict(tiny_pipeline.stage_sla_s), configure_stages=False), tmp_path / "router.json")
        router_port = free_port()
        router = group.start("router", python_argv("ipa.serving.router", "--spec", str(tmp_path / "router.json"),
                                                   "--port", str(router_port)), tmp_path / "router.log")
        base = f"http://127.0.0.1:{router_port}"
        for k, child in children.items():
            wait_http(f"http://127.0.0.1:{ports[k]}/v2/health/ready", child, 30)
        wait_http(f"{base}/v2/models/{tiny_pipeline.name}/ready", router, 30)

        def classifier() -> dict:
            return _get(f"{base}/admin/status")["stages"][1]

        st = _until(lambda: (lambda s: s if s["ready"] == 3 else None)(classifier()), what="capacity 1 + 2")
        assert sorted(e["ready"] for e in st["endpoints"]) == [1, 2]

        infer = f"{base}/v2/models/{tiny_pipeline.name}/infer"
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(lambda _: _post(infer, ROW), range(60)))
        assert codes == [200] * 60
        served = {e["address"]: e["served"] for e in classifier()["endpoints"]}
        assert served[f"127.0.0.1:{ports['cls-a']}"] > 0 and served[f"127.0.0.1:{ports['cls-b']}"] > 0, served
        # each process says the same: rows were computed in both
        for k in ("cls-a", "cls-b"):
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports[k]}/metrics", timeout=5).read().decode()
            assert any(line.startswith("ipa_stage_items_total") and not line.endswith(" 0")
                       for line in metrics.splitlines()), k

        # a new configuration changes the router's batching only; the pods keep their own replicas
        new = {"detector": asdict(StageConfig(det, 1, 4, 1)), "classifier": asdict(StageConfig(cls, 2, 7, 1))}
        assert _post(f"{base}/admin/configuration", {"stages": new}) == 200
        assert classifier()["batch"] == 2
        assert _get(f"http://127.0.0.1:{ports['cls-b']}/admin/status")["configuration"]["replicas"] == 2

        # one classifier process is told to stop (a pod scaled in): it drains, the other takes over
        children["cls-b"].popen.send_signal(signal.SIGTERM)
        _until(lambda: classifier()["ready"] == 1, 5, "capacity down to the remaining process")
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: _post(infer, ROW), range(20)))
        assert codes == [200] * 20
        _until(lambda: not children["cls-b"].alive(), 10, "the drained process exits")
        failures = [line for line in urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode().splitlines()
                    if line.startswith("ipa_router_stage_failures_total") and not line.endswith(" 0")]
        assert failures == []  # nothing in flight was lost when it left
    finally:
        group.stop()
    assert not [p for p in group.pids() if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
