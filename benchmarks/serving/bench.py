"""Overhead and capacity of the live serving path (router + emulated stage servers).

1. Overhead: a two-stage pipeline whose emulated replicas hold a fixed 10 ms per batch (no
   spread), many replicas, batch 1, so nothing queues. An open-loop asyncio client sends at
   ``--rate`` (default 50 rps); per request, added latency = client-observed latency minus the
   replicas' compute time (the router reports it). Printed at p50/p99, total and per stage.
2. Capacity: the real load generator (Locust, open-loop) at increasing rates for ``--step-s``
   seconds each; the highest rate with no drop, no failure, p99 within the SLA, and sends on
   schedule (p99 lag < 50 ms) is the sustained rate. Locust, the router, two stage processes
   and Prometheus all share this machine's cores.

    python benchmarks/serving/bench.py [--rate 50] [--seconds 20] [--rates 100,200,300,400,500]
    python benchmarks/serving/bench.py --overhead-only [--no-prometheus]   # no Locust, no Prometheus needed
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ipa.configuration import Configuration, StageConfig
from ipa.pipelines import Pipeline, load_catalogue
from ipa.pipelines.catalogue import VARIANT_COLUMNS
from ipa.pipelines.profiles import PROFILE_COLUMNS, read_profile_csv
from ipa.serving.http import Client
from ipa.serving.stack import LiveStack

SERVICE_S = 0.010
PIPELINES = """
defaults: {sla_factor: SLA_FACTOR, scaling_cap: 100, batching_cap: 1, batch_sizes: [1], drop_limit_factor: 2,
           alpha: 1, beta: 1, gamma: 0.000001, latency_statistic: p99, predictor_margin: 0.0,
           accuracy_method: pas, threshold_rps: 1, load_scale: 1}
pipelines:
  bench:
    description: two emulated stages of 10 ms each
    stages:
      - {name: first, task: t1, input: {kind: text, tokens: 8}, variants: [v1]}
      - {name: second, task: t2, input: {kind: text, tokens: 8}, variants: [v2]}
"""


def bench_pipeline(folder: Path, sla_factor: float = 5) -> Pipeline:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipelines.yaml").write_text(PIPELINES.replace("SLA_FACTOR", f"{sla_factor:g}"))
    with open(folder / "variants.csv", "w", newline="") as f:
        w = csv.DictWriter(f, VARIANT_COLUMNS, lineterminator="\n")
        w.writeheader()
        for task, name in (("t1", "v1"), ("t2", "v2")):
            w.writerow({"task": task, "variant": name, "config_class": "X", "head_class": "Y", "family": "synthetic",
                        "config_kwargs_json": "{}", "metric": "synthetic", "metric_value": 50,
                        "higher_is_better": "true", "params_millions": 1, "source": "benchmark"})
    with open(folder / "profiles.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PROFILE_COLUMNS)
        for key in ("v1@text-8", "v2@text-8"):
            for cores in (1, 2):
                # p50 = p99: a fixed service time, so what is left of the latency is overhead
                w.writerow([key, 1, cores, SERVICE_S, SERVICE_S, SERVICE_S, 0, 1 / SERVICE_S, 10, 0.0, "measured"])
    catalogue = load_catalogue(folder / "pipelines.yaml", folder / "variants.csv")
    return Pipeline(catalogue.pipeline("bench"), read_profile_csv(folder / "profiles.csv"))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def overhead(stack: LiveStack, rate: float, seconds: float) -> dict:
    client = Client(stack.host, stack.router_port)
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                   "data": [1, 2, 3, 4]}]}).encode()
    path = f"/v2/models/{stack.pipeline.name}/infer"
    added, router_added, lags = [], [], []

    async def one(intended: float, t0: float) -> None:
        sent = time.perf_counter()
        lags.append(sent - (t0 + intended))
        status, data, _ = await client.request("POST", path, body)
        done = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
        p = json.loads(data)["parameters"]
        added.append(done - sent - p["compute_s"])
        router_added.append(p["latency_s"] - p["compute_s"])

    for _ in range(20):  # warm the connections and code paths
        await one(0.0, time.perf_counter())
    added.clear(), router_added.clear(), lags.clear()
    t0 = time.perf_counter() + 0.1
    tasks = []
    for i in range(int(rate * seconds)):
        t = i / rate
        delay = t0 + t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(t, t0)))
    await asyncio.gather(*tasks)
    await client.close()
    n = len(stack.pipeline.stage_names)
    return {"requests": len(added), "added_p50_ms": 1e3 * pct(added, 0.5), "added_p99_ms": 1e3 * pct(added, 0.99),
            "added_p50_ms_per_stage": 1e3 * pct(added, 0.5) / n, "added_p99_ms_per_stage": 1e3 * pct(added, 0.99) / n,
            "router_added_p99_ms": 1e3 * pct(router_added, 0.99), "client_lag_p99_ms": 1e3 * pct(lags, 0.99)}


def capacity(stack: LiveStack, rate: float, seconds: float, folder: Path) -> dict:
    from ipa.loadgen import LoadGenerator, classify, send_lag

    times = [i / rate for i in range(int(rate * seconds))]
    # four values per request, as the overhead probe sends: the router's own cost, comparable across
    # versions (what a large tensor costs is --tensor-mib's measurement)
    lg = LoadGenerator(stack.group, folder, stack.router_url, f"/v2/models/{stack.pipeline.name}/infer", times,
                       4, drain_s=stack.pipeline.drop_limit_s + 5)
    lg.launch()
    lg.start(time.time() + 0.5)
    req = classify(lg.wait(), stack.pipeline.sla_s)
    counts = req["status"].value_counts().to_dict()
    lat = req.loc[req["status"].isin(["ok", "late"]), "latency_s"]
    lag = send_lag(req)
    ok = (counts.get("dropped", 0) == 0 and counts.get("failed", 0) == 0 and counts.get("late", 0) == 0
          and lag["lag_p99_s"] < 0.05)
    return {"rate_rps": rate, "sent": len(req), **{k: counts.get(k, 0) for k in ("ok", "late", "dropped", "failed")},
            "latency_p50_ms": 1e3 * float(lat.quantile(0.5)), "latency_p99_ms": 1e3 * float(lat.quantile(0.99)),
            "send_lag_p99_ms": 1e3 * lag["lag_p99_s"], "sustained": ok}


def tensor_transfer(stack: LiveStack, pipeline: str, mib: float, rounds: int) -> dict:
    """End-to-end latency of one request carrying an FP32 tensor of ``mib`` MiB, sent by the
    official Triton client as binary data and as JSON, interleaved round by round (medians, s).
    Only the client-router hop changes: the router talks binary to the stages either way."""
    import numpy as np
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(stack.router_url.removeprefix("http://"), connection_timeout=120,
                                              network_timeout=120)
    x = np.random.default_rng(0).standard_normal((1, int(mib * 2 ** 20 / 4)), dtype=np.float32)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for binary in (True, False):
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            t = time.perf_counter()
            result = client.infer(pipeline, [inp], outputs=[httpclient.InferRequestedOutput("output", binary_data=binary)])
            times[binary].append(time.perf_counter() - t)
            assert result.as_numpy("output").shape == (1, 1)
    client.close()
    return {"binary_s": statistics.median(times[True]), "json_s": statistics.median(times[False]),
            "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rates", default="100,200,300,400,500,600")
    ap.add_argument("--step-s", type=float, default=10.0)
    ap.add_argument("--replicas", type=int, default=20)
    ap.add_argument("--overhead-only", action="store_true", help="skip the capacity steps (Locust)")
    ap.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus (it scrapes every second)")
    ap.add_argument("--tensor-mib", type=float, help="only: one request with an FP32 tensor this large, binary "
                                                     "against JSON through the Triton client (e.g. 1)")
    ap.add_argument("--tensor-rounds", type=int, default=10)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ipa-bench-serving-") as tmp:
        return _run(a, Path(tmp))


def _run(a, work: Path) -> int:
    if a.tensor_mib:
        return _run_tensor(a, work)
    pipeline = bench_pipeline(work / "catalogue")
    config = Configuration({s: StageConfig(v, 1, a.replicas, 1) for s, v in (("first", "v1"), ("second", "v2"))})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; SLA {pipeline.sla_s * 1e3:.0f} ms; service {SERVICE_S * 1e3:.0f} ms "
          f"per stage; {a.replicas} replicas per stage; Prometheus {'off' if a.no_prometheus else 'on'}")
    with LiveStack(pipeline, work / "stack", prometheus=not a.no_prometheus) as stack:
        stack.start(config)
        stack.wait_ready()
        o = asyncio.run(overhead(stack, a.rate, a.seconds))
        print(f"overhead at {a.rate:g} rps ({o['requests']} requests, 2 stages): added p50 {o['added_p50_ms']:.2f} ms, "
              f"p99 {o['added_p99_ms']:.2f} ms in total; per stage p50 {o['added_p50_ms_per_stage']:.2f} ms, "
              f"p99 {o['added_p99_ms_per_stage']:.2f} ms (inside the router: p99 {o['router_added_p99_ms']:.2f} ms; "
              f"client send lag p99 {o['client_lag_p99_ms']:.2f} ms); load average now {os.getloadavg()[0]:.2f}",
              flush=True)
        if a.overhead_only:
            return 0
        best = 0.0
        for r in [float(x) for x in a.rates.split(",")]:
            c = capacity(stack, r, a.step_s, work / f"cap-{r:g}")
            print(f"rate {r:g} rps: sent {c['sent']}, ok {c['ok']}, late {c['late']}, dropped {c['dropped']}, "
                  f"failed {c['failed']}; latency p50 {c['latency_p50_ms']:.1f} ms, p99 {c['latency_p99_ms']:.1f} ms; "
                  f"send lag p99 {c['send_lag_p99_ms']:.1f} ms -> {'sustained' if c['sustained'] else 'NOT sustained'}",
                  flush=True)
            if not c["sustained"]:
                break
            best = r
        print(f"highest rate sustained (no drop, no failure, p99 within SLA, sends on schedule): {best:g} rps")
    return 0


def _run_tensor(a, work: Path) -> int:
    # a generous SLA: a large JSON tensor takes longer than the 100-ms SLA of the overhead set-up
    pipeline = bench_pipeline(work / "catalogue", sla_factor=1000)
    config = Configuration({s: StageConfig(v, 1, 2, 1) for s, v in (("first", "v1"), ("second", "v2"))})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; one request at a time, {a.tensor_mib:g} MiB FP32, {a.tensor_rounds} rounds")
    with LiveStack(pipeline, work / "stack", prometheus=False) as stack:
        stack.start(config)
        stack.wait_ready()
        t = tensor_transfer(stack, pipeline.name, a.tensor_mib, a.tensor_rounds)
    print(f"{a.tensor_mib:g} MiB FP32 end to end, median of {t['rounds']}: binary {t['binary_s'] * 1e3:.1f} ms, "
          f"JSON {t['json_s'] * 1e3:.1f} ms ({t['json_s'] / t['binary_s']:.2f}x); load average now "
          f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
