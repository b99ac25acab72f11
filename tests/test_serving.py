"""The live serving stack: V2 protocol, batching, drop limit, reconfiguration, faults, lifecycle,
Prometheus and the PromQL monitor. Tests that start processes are marked `live`; they run the
synthetic tiny pipeline (tests/conftest.py) with load times shortened."""
from __future__ import annotations

import json
import struct
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from conftest import default_sigint
from prometheus_client.parser import text_string_to_metric_families

from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError, IpaError
from ipa.monitoring import prometheus as prom_mod
from ipa.monitoring.monitor import PrometheusMonitor, per_second_counts
from ipa.serving import v2
from ipa.serving.metrics import Registry, WholeSecondCounter, WholeSecondIntegral, latency_buckets
from ipa.processes import ProcessError, check_port_free
from ipa.serving.stack import LiveStack, batch_timeout_s

ROW = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}


def post(url: str, body, timeout: float = 30.0) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def config(det=("det-s", 1, 1), cls=("cls-s", 1, 1)) -> Configuration:
    return Configuration({"detector": StageConfig(det[0], det[1], det[2], 1),
                          "classifier": StageConfig(cls[0], cls[1], cls[2], 1)})


# --- pure parts ---------------------------------------------------------------------------------

def exposed(reg: Registry) -> dict:
    """The registry's exposition as Prometheus would read it (prometheus_client's own parser):
    {(sample name, sorted labels): (value, timestamp in seconds or None)}."""
    out = {}
    for family in text_string_to_metric_families(reg.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = (s.value, None if s.timestamp is None else float(s.timestamp))
    return out


def test_histogram_has_an_edge_at_the_sla_and_cumulative_buckets():
    reg = Registry()
    h = reg.histogram("x_seconds", "help", latency_buckets(0.7), ("p",))
    for v in (0.69, 0.7, 0.71, 5.0):
        h.observe(v, p="a")
    samples = exposed(reg)
    assert 0.7 in latency_buckets(0.7)
    assert samples[("x_seconds_bucket", (("le", "0.7"), ("p", "a")))][0] == 2  # le is inclusive: 0.7 is within the SLA
    assert samples[("x_seconds_bucket", (("le", "+Inf"), ("p", "a")))][0] == 4
    assert samples[("x_seconds_count", (("p", "a"),))][0] == 4


def test_whole_second_counter_exposes_each_boundary_once_with_its_stamp():
    now = [100.2]
    reg = Registry()
    c = WholeSecondCounter("arrivals_total", "help", ("p",), clock=lambda: now[0])
    reg.registry.register(c)
    key = ("arrivals_total", (("p", "a"),))
    c.touch(p="a")
    assert exposed(reg) == {key: (0, 100.0)}
    # events (inc) and scrapes (a line expected) in time order; a scrape anywhere in a second
    # exposes the count up to that second's start, stamped with it: one value per boundary,
    # whatever the scrape's phase
    timeline = [(100.2, None), (100.7, None), (100.99, "0 100000"), (101.05, "2 101000"), (101.1, None),
                (101.95, "2 101000"), (102.0, "3 102000"), (103.4, None), (103.9, "3 103000"),
                (104.0, "4 104000"), (107.5, "4 107000")]
    for t, line in timeline:
        now[0] = t
        if line is None:
            c.inc(p="a")
            continue
        value, stamp_ms = line.split()
        assert exposed(reg) == {key: (float(value), int(stamp_ms) / 1000)}, t


def test_whole_second_integral_gives_each_seconds_mean_level_exactly():
    now = [100.5]
    reg = Registry()
    c = WholeSecondIntegral("ongoing_seconds_total", "help", ("s",), clock=lambda: now[0])
    reg.registry.register(c)
    # the level is 0 from 100.5, 2 from 100.75, 1 from 101.5, 0 from 103.25; by hand, the means of
    # the seconds (100, 101], (101, 102], (102, 103], (103, 104] are 2 x 0.25 = 0.5,
    # 2 x 0.5 + 1 x 0.5 = 1.5, 1.0 and 1 x 0.25 = 0.25, so the integral at 101..104 is 0.5, 2, 3, 3.25
    timeline = [(100.5, 0), (100.75, 2), (100.9, "0.0 100000"), (101.2, "0.5 101000"), (101.5, 1),
                (101.8, "0.5 101000"), (102.0, "2.0 102000"), (102.6, "2.0 102000"), (103.0, "3.0 103000"),
                (103.25, 0), (103.3, "3.0 103000"), (104.5, "3.25 104000"), (107.0, "3.25 107000")]
    for t, event in timeline:
        now[0] = t
        if isinstance(event, int):
            c.set(event, s="a")
        else:
            value, stamp_ms = event.split()
            assert exposed(reg) == {("ongoing_seconds_total", (("s", "a"),)): (float(value), int(stamp_ms) / 1000)}, t


@pytest.mark.parametrize("body,code", [
    (b"{not json", "bad-json"),
    (b"[1, 2]", "bad-request"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}).encode(), "bad-shape"),
    (json.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}).encode(), "bad-shape"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}).encode(), "bad-datatype"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP99", "data": [1, 2]}]}).encode(), "bad-datatype"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": ["a", 2]}]}).encode(), "bad-datatype"),
    (json.dumps({"inputs": [{"name": "other", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}).encode(), "bad-request"),
])
def test_malformed_v2_requests_are_named(body, code):
    with pytest.raises(v2.V2Error) as e:
        v2.parse_infer(body)
    assert e.value.code == code
    assert e.value.response().status == 400


def test_nested_data_and_batches_split_by_row():
    t, _ = v2.parse_infer(json.dumps({"inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32",
                                                   "data": [[1, 2], [3, 4]]}]}).encode())
    assert [r.tolist() for r in t.rows()] == [[1, 2], [3, 4]]


def test_per_second_counts_difference_the_counter_and_handle_resets():
    samples = [(99.5, 0.0), (100.5, 3.0), (101.5, 7.0), (102.5, 2.0), (103.5, 4.0)]  # reset before 102.5
    # boundaries interpolated: 100 -> 1.5, 101 -> 5, 102 -> 7 (no interpolation across the reset),
    # 103 -> 3, 104 -> 4 (newest: held)
    assert per_second_counts(samples, 101, 104) == [3.5, 2.0, 3.0, 1.0]
    assert per_second_counts(samples, 99, 100) is None  # no sample at or before 98


def test_per_second_counts_do_not_inflate_when_scrapes_jitter():
    # a steady 6 requests/s scraped about once a second at a drifting phase: two scrapes in
    # one second and none in the next must not turn into a second of 12
    times = [100.05, 100.95, 102.02, 102.97, 104.10, 104.90, 106.00, 107.05, 107.95, 109.0]
    samples = [(t, 6.0 * (t - 100.0)) for t in times]
    counts = per_second_counts(samples, 102, 109)
    assert counts == pytest.approx([6.0] * 8)


def test_batching_timeout_is_the_fill_time_at_capacity(tiny_pipeline):
    sc = StageConfig("det-s", 4, 2, 1)
    h = tiny_pipeline.stage_profile("detector", "det-s").throughput(4)
    assert batch_timeout_s(tiny_pipeline, "detector", sc) == pytest.approx(3 / (2 * h))
    assert batch_timeout_s(tiny_pipeline, "detector", StageConfig("det-s", 1, 2, 1)) == 0.0


def test_missing_prometheus_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(prom_mod.shutil, "which", lambda name: None)
    monkeypatch.delenv("IPA_PROMETHEUS", raising=False)
    with pytest.raises(prom_mod.PrometheusMissing, match="Debian package `prometheus`"):
        prom_mod.find_binary()


def test_unreachable_prometheus_reads_none_quickly():
    from ipa.processes import free_port

    mon = PrometheusMonitor(f"http://127.0.0.1:{free_port()}", time.time() - 30, timeout_s=1)
    t = time.monotonic()
    assert mon.read(60) is None
    assert time.monotonic() - t < 5
    assert "unavailable" in mon.log[-1][1]


def test_configuration_for_another_pipeline_is_refused(tiny_pipeline, tmp_path):
    stack = LiveStack(tiny_pipeline, tmp_path, prometheus=False)
    with pytest.raises(ConfigError, match="do not match"):
        stack.start(Configuration({"detector": StageConfig("det-s", 1, 1, 1)}))
    with pytest.raises(IpaError, match="no variant|unknown|det-x"):
        stack.start(config(det=("det-x", 1, 1)))
    assert not stack.group.pids() or all(not psutil.pid_exists(p) for p in stack.group.pids())


# --- live ---------------------------------------------------------------------------------------

@pytest.fixture
def stack_factory(tiny_pipeline, tmp_path):
    stacks = []

    def make(initial: Configuration | None = None, prometheus: bool = False, name: str = "run") -> LiveStack:
        s = LiveStack(tiny_pipeline, tmp_path / f"{name}{len(stacks)}", load_time_scale=0.1, prometheus=prometheus)
        stacks.append(s)
        s.start(initial or config())
        s.wait_ready(30)
        return s

    yield make
    for s in stacks:  # a failing test still leaves no process behind
        s.stop()
    for s in stacks:
        for pid in s.group.pids():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.live
def test_v2_routes_and_errors_are_served_and_counted(stack_factory):
    s = stack_factory()
    assert get(f"{s.router_url}/v2/health/live")[0] == 200
    assert get(f"{s.router_url}/v2/health/ready")[0] == 200
    assert get(s.infer_url.removesuffix("/infer") + "/ready")[0] == 200  # the pipeline as a V2 model
    assert get(f"{s.stage_url('detector')}/v2/models/detector/ready")[0] == 200
    status, meta = get(f"{s.stage_url('detector')}/v2/models/detector")
    assert status == 200 and json.loads(meta)["versions"] == ["det-s"]
    status, body = post(s.infer_url, ROW)
    assert status == 200 and body["outputs"][0]["shape"] == [1, 1] and body["parameters"]["latency_s"] > 0
    assert post(s.infer_url, b"{oops")[0] == 400
    assert post(s.infer_url, {"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [1]}]}) \
        == (400, {"error": "bad-shape: input 'input': shape [1, 5] needs 5 values, got 1"})
    assert post(s.infer_url, {"inputs": [{"name": "input", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]})[0] == 400
    code, err = post(f"{s.router_url}/v2/models/nope/infer", ROW)
    assert code == 404 and err["error"].startswith("unknown-model")
    code, err = post(f"{s.stage_url('classifier')}/v2/models/detector/infer", ROW)
    assert code == 404
    text = get(f"{s.router_url}/metrics")[1].decode()
    assert metric(text, "ipa_router_requests_total") == 1
    assert metric(text, "ipa_router_bad_requests_total", code="bad-json") == 1
    assert metric(text, "ipa_router_bad_requests_total", code="bad-shape") == 1
    assert metric(text, "ipa_router_bad_requests_total", code="bad-datatype") == 1
    assert metric(text, "ipa_router_bad_requests_total", code="unknown-model") == 1
    stage_text = get(f"{s.stage_url('classifier')}/metrics")[1].decode()
    assert metric(stage_text, "ipa_stage_bad_requests_total", code="unknown-model") == 1
    assert metric(stage_text, "ipa_stage_items_total") == 1
    assert get(f"{s.router_url}/v2/models/nope/ready")[0] == 404
    assert metric(get(f"{s.router_url}/metrics")[1].decode(), "ipa_router_bad_requests_total", code="unknown-model") == 2


@pytest.mark.live
def test_the_official_triton_http_client_infers_through_the_router_binary_and_json(stack_factory, tiny_pipeline):
    import numpy as np
    httpclient = pytest.importorskip("tritonclient.http")
    s = stack_factory()
    client = httpclient.InferenceServerClient(s.router_url.removeprefix("http://"))
    name = tiny_pipeline.name
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    x = np.array([[1.0, 2.0, 3.5]], dtype=np.float32)
    # each stage answers the sum of its row (the stand-in model), so the pipeline gives 6.5
    for binary_in, binary_out in ((True, True), (True, False), (False, True), (False, False)):
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary_in)
        out = httpclient.InferRequestedOutput("output", binary_data=binary_out)
        result = client.infer(name, [inp], outputs=[out])
        assert result.as_numpy("output").tolist() == [[6.5]], (binary_in, binary_out)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # the client's defaults: binary input, every output as it comes
    assert client.infer(name, [inp]).as_numpy("output").tolist() == [[6.5]]
    client.close()


@pytest.mark.live
def test_malformed_binary_requests_are_named_counted_and_the_router_keeps_serving(stack_factory):
    s = stack_factory()
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 8}}]}).encode()
    raw = struct.pack("<2f", 1.0, 2.0)

    def send(body: bytes, header_length: int) -> tuple[int, dict]:
        req = urllib.request.Request(s.infer_url, data=body, method="POST",
                                     headers={"Inference-Header-Content-Length": str(header_length)})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, {}
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert send(head + raw, len(head))[0] == 200
    code, err = send(head + raw, len(head) + 100)  # the header claims more than the body holds
    assert code == 400 and "Inference-Header-Content-Length" in err["error"]
    code, err = send(head + raw + b"\0\0\0\0", len(head))  # bytes no input accounts for
    assert code == 400 and "disagree" in err["error"]
    short = head.replace(b'"binary_data_size": 8', b'"binary_data_size": 4')
    code, err = send(short + raw[:4], len(short))  # 4 bytes for a [1, 2] FP32 tensor
    assert code == 400 and err["error"].startswith("bad-shape")
    assert send(head + raw, len(head))[0] == 200  # and it keeps serving
    text = get(f"{s.router_url}/metrics")[1].decode()
    assert metric(text, "ipa_router_bad_requests_total", code="bad-request") == 2
    assert metric(text, "ipa_router_bad_requests_total", code="bad-shape") == 1


@pytest.mark.live
def test_the_official_triton_grpc_client_infers_through_the_router(stack_factory, tiny_pipeline):
    import numpy as np
    grpcclient = pytest.importorskip("tritonclient.grpc")
    s = stack_factory()
    client = grpcclient.InferenceServerClient(s.grpc_target)
    name = tiny_pipeline.name
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    assert "binary_tensor_data" in client.get_server_metadata().extensions
    meta = client.get_model_metadata(name)
    assert meta.name == name and [(t.name, t.datatype) for t in meta.inputs] == [("input", "FP32")]
    x = np.array([[1.0, 2.0, 3.5]], dtype=np.float32)
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(name, [inp], request_id="r-1")
    # each stage answers the sum of its row (the stand-in model), so the pipeline gives 6.5
    assert result.as_numpy("output").tolist() == [[6.5]]
    assert result.get_response().id == "r-1"
    client.close()
    # the request went down the router's one path: counted with the REST ones
    text = get(f"{s.router_url}/metrics")[1].decode()
    assert metric(text, "ipa_router_requests_total", pipeline=name) == 1
    assert metric(text, "ipa_router_responses_total", pipeline=name, outcome="ok") == 1


@pytest.mark.live
def test_bad_grpc_requests_get_a_v2_status_are_counted_and_the_router_keeps_serving(stack_factory, tiny_pipeline):
    import grpc
    import numpy as np
    pytest.importorskip("tritonclient.grpc")
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    s = stack_factory()
    name = tiny_pipeline.name
    channel = grpc.insecure_channel(s.grpc_target)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    raw = np.array([1.0, 2.0], dtype=np.float32).tobytes()

    def infer(model=name, shape=(1, 2), datatype="FP32", contents=(raw,)):
        tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype=datatype, shape=list(shape))
        return stub.ModelInfer(pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=list(contents)),
                               timeout=10)

    def refused(**request) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as e:
            infer(**request)
        return e.value.code(), e.value.details()

    assert np.frombuffer(infer().raw_output_contents[0], np.float32).tolist() == [3.0]
    assert refused(model="nope") == (grpc.StatusCode.NOT_FOUND,
                                     f"unknown-model: model 'nope' is not served here; the pipeline is {name!r}")
    code, details = refused(contents=(raw[:4],))  # 4 bytes for a [1, 2] FP32 tensor
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("bad-shape")
    code, details = refused(datatype="FP17")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("bad-datatype: input 'input': unknown")
    code, details = refused(contents=(raw, raw))  # two raw entries for one input
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("bad-request")
    code, details = refused(shape=(2, 1))  # the pipeline takes one request per call
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("bad-shape")
    assert np.frombuffer(infer().raw_output_contents[0], np.float32).tolist() == [3.0]  # still serving
    channel.close()
    text = get(f"{s.router_url}/metrics")[1].decode()
    assert metric(text, "ipa_router_bad_requests_total", code="unknown-model") == 1
    assert metric(text, "ipa_router_bad_requests_total", code="bad-shape") == 2
    assert metric(text, "ipa_router_bad_requests_total", code="bad-datatype") == 1
    assert metric(text, "ipa_router_bad_requests_total", code="bad-request") == 1
    assert metric(text, "ipa_router_requests_total", pipeline=name) == 2


@pytest.mark.live
def test_central_queue_forms_batches_and_drops_past_the_limit(stack_factory, tiny_pipeline):
    # one slow replica, batch 4: a burst queues, leaves in batches, and the tail ages past the drop limit
    s = stack_factory(config(det=("det-l", 4, 1)))
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(lambda _: post(s.infer_url, ROW), range(40)))
    codes = [c for c, _ in results]
    drops = [b for c, b in results if c == 503]
    assert set(codes) <= {200, 503}
    assert drops and all(b["error"].startswith("drop-limit-violation") for b in drops)
    assert codes.count(200) >= 4
    text = get(f"{s.router_url}/metrics")[1].decode()
    batches = metric(text, "ipa_router_batch_size_count", stage="detector")
    assert metric(text, "ipa_router_batch_size_sum", stage="detector") / batches > 2  # batches really formed
    assert metric(text, "ipa_router_drops_total") == len(drops)
    assert metric(text, "ipa_router_responses_total", outcome="ok") == codes.count(200)
    # latency of answered requests stays under the drop limit plus one batch of the slowest variant
    lat = [b["parameters"]["latency_s"] for c, b in results if c == 200]
    assert max(lat) < tiny_pipeline.drop_limit_s + 2.0


@pytest.mark.live
def test_reconfiguration_switches_variant_without_losing_requests(stack_factory):
    s = stack_factory(config(det=("det-s", 1, 2)))
    results = []

    def client(n):
        for _ in range(n):
            results.append(post(s.infer_url, ROW)[0])
            time.sleep(0.02)

    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(client, 15) for _ in range(4)]
        time.sleep(0.3)
        reply = s.apply(config(det=("det-m", 2, 3), cls=("cls-m", 1, 1)))
        assert reply["applied"] and reply["pending"] == []
        for f in futs:
            f.result()
    assert results.count(200) == len(results) == 60
    deadline = time.time() + 10
    while time.time() < deadline:
        st = s.stage_status("detector")
        if st["variants"] == ["det-m"] and st["ready"] == 3 and not st["draining"]:
            break
        time.sleep(0.1)
    assert st["variants"] == ["det-m"] and st["ready"] == 3 and st["cores"] == 3
    status, body = post(s.infer_url, ROW)
    assert status == 200
    router = s.status()["stages"][0]
    assert router["batch"] == 2 and router["batch_timeout_s"] > 0


@pytest.mark.live
@pytest.mark.reliability
def test_killed_stage_process_fails_in_flight_requests_and_is_restarted(stack_factory):
    s = stack_factory(config(det=("det-l", 1, 2)))
    before = s.group.children["stage-detector"].pid
    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(post, s.infer_url, ROW) for _ in range(8)]
        time.sleep(0.25)  # requests are in the detector now (det-l takes ~0.5 s per request)
        os.kill(before, signal.SIGKILL)
        results = [f.result() for f in futs]
    failed = [b for c, b in results if c == 502]
    assert failed, results
    assert all(b["error"].startswith("stage-failure") for b in failed)
    assert all(c in (200, 502, 503) for c, _ in results)  # every request answered, none lost
    deadline = time.time() + 15
    while time.time() < deadline and not (s.group.children["stage-detector"].alive()
                                          and s.group.children["stage-detector"].pid != before):
        time.sleep(0.1)
    child = s.group.children["stage-detector"]
    assert child.pid != before and child.restarts == 1
    s.wait_ready(15)
    assert post(s.infer_url, ROW)[0] == 200
    text = get(f"{s.router_url}/metrics")[1].decode()
    assert metric(text, "ipa_router_stage_failures_total", stage="detector") == len(failed)
    # it came back with the current configuration (two det-l replicas)
    st = s.stage_status("detector")
    assert st["configuration"]["variant"] == "det-l" and st["configuration"]["replicas"] == 2


@pytest.mark.live
def test_restarted_stage_gets_the_latest_configuration(stack_factory):
    s = stack_factory()
    s.apply(config(det=("det-m", 1, 3)))
    pid = s.group.children["stage-detector"].pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 15
    st = {}
    while time.time() < deadline:
        try:
            st = s.stage_status("detector")
            if st["configuration"]["variant"] == "det-m" and st["ready"] == 3:
                break
        except IpaError:
            pass
        time.sleep(0.1)
    assert st["configuration"] == {"variant": "det-m", "batch": 1, "replicas": 3, "cores": 1}


@pytest.mark.live
def test_port_in_use_is_a_clear_error(tiny_pipeline, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ProcessError, match=f"port {port} on 127.0.0.1 is in use"):
            check_port_free(port)
        with pytest.raises(ProcessError, match="in use"):
            LiveStack(tiny_pipeline, tmp_path, router_port=port, prometheus=False)


@pytest.mark.live
def test_prometheus_scrapes_and_the_monitor_reads_arrivals_and_survives_an_outage(stack_factory):
    s = stack_factory(prometheus=True)
    t0 = math.floor(time.time()) - 5
    mon = PrometheusMonitor(s.prometheus.url, t0)
    # the reading counts whole seconds after the counter's first sample: send only after it
    while not mon._samples(20):
        time.sleep(0.2)
    # an uneven pattern, each second's requests well inside it: the reading must give every
    # second's count exactly, not spread over its neighbours by the scrape phase
    pattern = [3, 1, 4, 0, 2]
    first = math.floor(time.time()) + 2
    for i, n in enumerate(pattern):
        for j in range(n):
            wait = first + i + 0.1 + 0.6 * j / max(n, 1) - time.time()
            if wait > 0:
                time.sleep(wait)
            assert post(s.infer_url, ROW)[0] == 200
    sent = sum(pattern)
    time.sleep(3.0)  # let the last boundary's scrape land (1-s scrapes)
    reading = mon.read(20)
    assert reading is not None and reading.arrivals_per_s
    newest = round(t0 + reading.until_s)  # the reading's last second ends here (epoch seconds)
    by_second = dict(zip(range(newest - len(reading.arrivals_per_s), newest), reading.arrivals_per_s))
    assert [by_second[first + i] for i in range(len(pattern))] == pattern
    assert sum(reading.arrivals_per_s) == sent  # nothing before or after the pattern
    assert reading.until_s == pytest.approx(time.time() - t0, abs=2.5)
    s.prometheus.stop()
    assert mon.read(20) is None
    assert mon.unavailable_since is not None
    time.sleep(4)  # a real outage: longer than the gap the monitor tolerates between scrapes
    s.prometheus.start()
    deadline = time.time() + 20
    reading = None
    while time.time() < deadline and reading is None:
        time.sleep(0.5)
        reading = mon.read(20)
    # readings return once Prometheus scrapes again, counting only seconds after the gap
    assert reading is not None and 0 < len(reading.arrivals_per_s) < 20
    assert sum(reading.arrivals_per_s) == 0  # nothing was sent meanwhile; the lump before is not counted
    assert any("back after" in m for _, m in mon.log)


@pytest.mark.live
def test_second_stack_starts_right_after_and_no_process_survives(stack_factory):
    a = stack_factory()
    pids = a.group.pids()
    a.stop()
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids)
    b = stack_factory()
    assert post(b.infer_url, ROW)[0] == 200


@pytest.mark.live
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ipa_serve_stops_every_process_on_a_signal(tiny_files, tmp_path, sig):
    pipelines, variants, profiles = tiny_files
    proc = subprocess.Popen([sys.executable, "-m", "ipa.cli", "serve", "--pipeline", "tiny-video",
                             "--pipelines-file", str(pipelines), "--variants-file", str(variants),
                             "--profiles-file", str(profiles), "--work-dir", str(tmp_path / "serve")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint)
    try:
        lines = []
        deadline = time.time() + 30
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C" in line or not line:
                break
        text = "".join(lines)
        assert "prometheus" in text and "/v2/models/tiny-video/infer" in text, text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4  # two stages, router, Prometheus
        proc.send_signal(sig)
        assert proc.wait(20) == 0
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()


def test_wire_sizes_are_what_the_models_consume(reference_pipeline):
    from ipa.pipelines import wire
    video = reference_pipeline("video").stages
    # pipelines.yaml: the detector takes 640 x 640 frames, the classifier 224 x 224 crops
    assert wire.input_elements(video[0].input) == 3 * 640 * 640
    assert wire.output_elements(video, 0) == 3 * 224 * 224
    assert wire.output_elements(video, 1) == 1  # a label
    audio = reference_pipeline("audio-qa").stages
    assert wire.input_elements(audio[0].input) == 16000 * 10  # 10 s at 16 kHz
    assert wire.output_elements(audio, 0) == 128  # the QA stage's 128 tokens
    nlp = reference_pipeline("nlp").stages
    assert wire.output_elements(nlp, len(nlp) - 1) == 62  # the summariser's generated tokens


@pytest.mark.live
def test_emulated_stages_answer_with_the_next_stages_input_size_and_carry_the_payload(stack_factory):
    import numpy as np
    s = stack_factory()
    rng = np.random.default_rng(3)
    frame = rng.random((1, 3 * 64 * 64), dtype=np.float32)  # the tiny detector's 64 x 64 input

    def binary_post(url: str, x: np.ndarray) -> tuple[dict, np.ndarray]:
        head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "parameters": {"binary_data_output": True}}).encode()
        req = urllib.request.Request(url, data=head + x.tobytes(), method="POST",
                                     headers={"Inference-Header-Content-Length": str(len(head))})
        with urllib.request.urlopen(req, timeout=30) as r:
            body, n = r.read(), int(r.headers["Inference-Header-Content-Length"])
        return json.loads(body[:n]), np.frombuffer(body[n:], np.float32)

    doc, out = binary_post(f"{s.stage_url('detector')}/v2/models/detector/infer", np.vstack([frame, 2 * frame]))
    assert doc["outputs"][0]["shape"] == [2, 3 * 32 * 32]  # a crop for the 32 x 32 classifier per row
    rows = out.reshape(2, -1)
    assert rows[:, 0] == pytest.approx([frame.sum(), 2 * frame.sum()], rel=1e-5)
    assert not rows[:, 1:].any()
    # through the router (binary between router and stages): the answer is the request's sum
    doc, out = binary_post(s.infer_url, frame)
    assert doc["outputs"][0]["shape"] == [1, 1] and out[0] == pytest.approx(frame.sum(), rel=1e-5)


@pytest.mark.live
def test_the_replay_sends_binary_requests_of_the_first_stages_input_size(tmp_path):
    """Against a recording server standing in for the router: every request is the size given."""
    import asyncio
    import threading

    from aiohttp import web

    from ipa.loadgen import LoadGenerator
    from ipa.processes import ProcessGroup

    seen: list[tuple[int, int, list]] = []
    ready = threading.Event()
    box: dict = {}

    async def infer(request: web.Request) -> web.Response:
        body = await request.read()
        n = int(request.headers["Inference-Header-Content-Length"])
        seen.append((n, len(body) - n, json.loads(body[:n])["inputs"][0]["shape"]))
        return web.json_response({"outputs": [{"name": "output", "shape": [1, 1], "datatype": "FP32", "data": [0]}]})

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v2/models/p/infer", infer)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["port"], box["loop"] = site._server.sockets[0].getsockname()[1], loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    threading.Thread(target=serve, daemon=True).start()
    assert ready.wait(10)
    group = ProcessGroup()
    try:
        gen = LoadGenerator(group, tmp_path, f"http://127.0.0.1:{box['port']}", "/v2/models/p/infer",
                            [0.0, 0.1, 0.2], 3 * 640 * 640, drain_s=5.0)
        gen.launch()
        gen.start(time.time() + 0.3)
        log = gen.wait().read_text().splitlines()
    finally:
        group.stop()
        box["loop"].call_soon_threadsafe(box["loop"].stop)
    assert len(log) == 4 and all(line.split(",")[4] == "200" for line in log[1:])
    assert [(raw, shape) for _, raw, shape in seen] == [(4 * 3 * 640 * 640, [1, 3 * 640 * 640])] * 3
