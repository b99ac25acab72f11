"""The `local` backend end to end: real processes, real Prometheus, Locust replaying open-loop,
the adapter loop driving it, and the run folder it produces."""
from __future__ import annotations

import csv
import os
import json
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from ipa.adapter import AdapterLoop
from ipa.adapter.loop import DECIDED, NO_DATA
from ipa.backends.local import LocalBackend, LocalSettings
from ipa.backends.registry import make_backend
from ipa.errors import ConfigError
from ipa.pipelines import Pipeline, load_catalogue
from ipa.pipelines.catalogue import DATA
from ipa.pipelines.profiles import PROFILE_COLUMNS, read_profile_csv
from ipa.policies import make_policy
from ipa.predictors import make_predictor
from ipa.runs import check_run_folder
from ipa.runs.ledger import ledger_mismatches
from ipa.runs.experiment import RunSpec, execute

pytestmark = pytest.mark.live


def _children_of_me() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_unknown_options_and_modes_are_refused():
    with pytest.raises(ConfigError, match="unknown option"):
        make_backend("local", colour="blue")
    with pytest.raises(ConfigError, match="mode must be one of"):
        make_backend("local", mode="fast")
    with pytest.raises(ConfigError, match="load_time_scale must be >= 0"):
        make_backend("local", load_time_scale=-1.0)


def test_ipa_run_on_the_local_backend_writes_a_complete_run_folder(tiny_files, tmp_path):
    pipelines, variants, profiles = tiny_files
    pipeline = Pipeline(load_catalogue(pipelines, variants).pipeline("tiny-video"), read_profile_csv(profiles))
    import tempfile
    before = _children_of_me()
    temp_before = set(Path(tempfile.gettempdir()).iterdir())
    out = tmp_path / "run"
    execute(RunSpec(pipeline="tiny-video", policy="ipa", workload="constant-6", predictor="reactive",
                    backend="local", duration_s=15, seed=3, backend_options={"load_time_scale": "0.5"}),
            out, pipeline=pipeline)  # requests.csv without asking: a live run's evidence
    summary = json.loads((out / "summary.json").read_text())
    assert _children_of_me() <= before  # every process the run started has exited
    assert summary["complete"] and summary["params"]["backend"] == "local"
    assert summary["params"]["backend_options"] == {"load_time_scale": 0.5}
    for name in ("timeseries.csv", "decisions.csv", "requests.csv", "summary.json", "loadgen_requests.csv",
                 "prometheus_series.csv", "monitor_log.csv", "process_events.csv", "router_counts.json", "logs/router.log",
                 "logs/stage-detector.log", "logs/stage-classifier.log", "logs/loadgen.log", "logs/prometheus.log"):
        assert (out / name).is_file(), name
    assert "serving on http://127.0.0.1" in (out / "logs" / "router.log").read_text()
    # the backend worked inside the run folder and its scratch space is gone; nothing left in /tmp
    assert not (out / ".work").exists()
    assert {p.name for p in set(Path(tempfile.gettempdir()).iterdir()) - temp_before
            if p.name.startswith("ipa-")} == set()
    # conservation from the run's own records
    req = pd.read_csv(out / "requests.csv")
    assert summary["requests_sent"] == len(req) > 60
    assert summary["requests_sent"] == (summary["requests_completed"] + summary["requests_dropped"]
                                        + summary["requests_failed"])
    assert set(req["status"]) <= {"ok", "late", "dropped", "failed"}
    # and against the router's own counters, read from its /metrics at the end of the run
    ledger = json.loads((out / "router_counts.json").read_text())
    assert ledger["received"] == len(req) and sum(ledger["answered"].values()) == len(req)
    assert ledger["answered"].get("ok", 0) == summary["requests_completed"]
    # and the stage processes' own counts: the last stage served every completed request
    assert list(ledger["served_by_stage"]) == list(pipeline.stage_names) and ledger["stage_restarts"] == 0
    assert ledger["served_by_stage"][pipeline.stage_names[-1]] == summary["requests_completed"]
    assert check_run_folder(out, pipeline) == []
    # the cores it held on this machine are said, with a warning when they exceed it (emulated)
    from ipa.runs.capacity import machine_cores
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["peak_provisioned_cores"] >= summary["cost_cores_mean"]
    assert (meta["cores_warning"] is not None) == (meta["peak_provisioned_cores"] > machine_cores())
    # the adapter saw real Prometheus data: observed rates near the offered 6 rps
    dec = pd.read_csv(out / "decisions.csv")
    later = dec[dec["time_s"] > 0]
    assert (later["status"] == DECIDED).all()
    assert later["observed_rps"].between(3, 14).all(), later["observed_rps"].tolist()
    # a lightly loaded tiny pipeline serves nearly everything on time
    assert summary["requests_on_time"] >= 0.95 * summary["requests_sent"]


def test_load_generator_log_conserves_every_request_and_sends_open_loop(tiny_files, tmp_path, tiny_pipeline):
    from ipa.configuration import Configuration, StageConfig

    # a pipeline too slow for the load: responses pile up, yet sends stay on schedule
    slow = Configuration({"detector": StageConfig("det-l", 1, 1, 1), "classifier": StageConfig("cls-s", 1, 1, 1)})
    backend = LocalBackend(LocalSettings(work_dir=str(tmp_path / "work"), load_time_scale=0.1))
    times = [i * 0.05 for i in range(100)]  # 20 rps for 5 s against ~2.5 rps of capacity
    backend.start(tiny_pipeline, slow, times)
    backend.clock.sleep_until(5.0)
    output = backend.stop()
    req = output.requests
    assert len(req) == 100 and sorted(req["id"]) == list(range(100))
    counts = req["status"].value_counts().to_dict()
    assert counts.get("dropped", 0) > 20  # the drop limit answered the queue's tail
    assert sum(counts.values()) == 100
    lag = (req["sent_s"] - req["intended_s"]).dropna()
    assert lag.quantile(0.99) < 0.1  # a slow response never delayed the next send
    latency = req.loc[req["status"].isin(["ok", "late"]), "latency_s"]
    assert (latency > 0).all()
    with open(output.extra_files["loadgen_requests.csv"]) as f:
        assert sum(1 for _ in csv.DictReader(f)) == 100
    # the router's own books agree, drops included (exact: every failure, if any, was its answer)
    ledger = json.loads(Path(output.extra_files["router_counts.json"]).read_text())
    assert ledger["received"] == 100 and ledger["answered"].get("dropped", 0) == counts["dropped"]
    assert sum(ledger["dropped_by_stage"].values()) == counts["dropped"]
    # the stages served what entered them less the drops (the chain ledger_mismatches checks below)
    first, last = tiny_pipeline.stage_names
    assert ledger["served_by_stage"][first] == 100 - ledger["dropped_by_stage"].get(first, 0)
    assert ledger["served_by_stage"][last] == counts.get("ok", 0) + counts.get("late", 0)
    stage_failed = int((req["detail"].str.startswith("stage-failure") & (req["status"] == "failed")).sum())
    assert ledger_mismatches(ledger, {**counts, "sent": 100, "stage_failed": stage_failed}) == []
    for name in ("prometheus_series.csv", "logs/router.log", "logs/stage-detector.log", "logs/loadgen.log"):
        assert Path(output.extra_files[name]).exists(), name
    # every status poll that failed is written out (none on a healthy run), not only counted
    polls = pd.read_csv(output.extra_files["status_poll_errors.csv"])
    assert list(polls.columns) == ["time_s", "message"] and len(polls) == len(backend.status_errors)
    series = pd.read_csv(output.extra_files["prometheus_series.csv"])
    assert {"arrivals_total", "queue_length", "cores"} <= set(series["series"])
    # the monitor's whole-second counter, per boundary: never decreasing, and every arrival in it
    whole = series.loc[series["series"] == "arrivals_whole_seconds_total"].sort_values("time_s")["value"]
    assert whole.is_monotonic_increasing and whole.iloc[-1] == 100


@pytest.mark.reliability
def test_prometheus_outage_keeps_the_configuration_and_adaptation_resumes(tiny_pipeline, tmp_path):
    class OutageBackend(LocalBackend):
        def start(self, *args):
            super().start(*args)
            threading.Thread(target=self.outage, daemon=True).start()

        def outage(self):
            self.clock.sleep_until(4.0)
            self.stack.prometheus.stop()   # down from 4 s ...
            self.clock.sleep_until(10.0)
            self.stack.prometheus.start()  # ... to ~10 s (plus its first scrape)

    backend = OutageBackend(LocalSettings(work_dir=str(tmp_path / "work"), load_time_scale=0.1))
    loop = AdapterLoop(backend, tiny_pipeline, make_policy("ipa", tiny_pipeline), make_predictor("reactive"),
                       interval_s=3, window_s=30)
    times = [i / 5 for i in range(5 * 24)]
    output = loop.run(times, 24.0, 5.0)
    status = [(r.time_s, r.status) for r in loop.records]
    assert (6.0, NO_DATA) in status and (9.0, NO_DATA) in status, status
    # Prometheus is back at ~10 s + its first scrape (~5 s): adaptation resumes and stays resumed
    resumed = [tt for tt, s in status if tt > 10.0 and s == DECIDED]
    assert resumed and all(s == DECIDED for tt, s in status if tt >= resumed[0]), status
    kept = [r for r in loop.records if r.status == NO_DATA]
    assert all(not r.applied for r in kept)
    log = Path(output.extra_files["monitor_log.csv"]).read_text()
    assert "keeps the current configuration" in log and "back after" in log
    assert len(output.requests) == len(times)


REAL_PIPELINE = """
defaults: {sla_factor: 5, scaling_cap: 4, batching_cap: 2, batch_sizes: [1, 2], drop_limit_factor: 2,
           alpha: 2, beta: 1, gamma: 0.000001, latency_statistic: p99, predictor_margin: 0.0,
           accuracy_method: pas, threshold_rps: 1, load_scale: 1}
pipelines:
  video-quick:
    description: the video pipeline's smallest variants, as tiny models of the same families
    stages:
      - {name: detector, task: object_detection, input: {kind: image, height: 640, width: 640},
         variants: [PekingU/rtdetr_r18vd]}
      - {name: classifier, task: image_classification, input: {kind: image, height: 224, width: 224},
         variants: [microsoft/resnet-18]}
"""


def _quick_real_pipeline(tmp_path, detector_s: float, classifier_s: float) -> Pipeline:
    """REAL_PIPELINE with made-up profiles: batch-1 latency at one core as given, linear in the
    batch and in 1 / cores."""
    (tmp_path / "pipelines.yaml").write_text(REAL_PIPELINE)
    catalogue = load_catalogue(tmp_path / "pipelines.yaml", Path(str(DATA / "variants.csv")))
    with open(tmp_path / "profiles.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PROFILE_COLUMNS)
        for key, lat in (("PekingU/rtdetr_r18vd@image-640x640", detector_s),
                         ("microsoft/resnet-18@image-224x224", classifier_s)):
            for b in (1, 2):
                for c in (1, 2):
                    m = lat * b / c
                    w.writerow([key, b, c, m, m * 1.5, m, m * 0.1, b / m, 100, 1.0, "measured"])
    return Pipeline(catalogue.pipeline("video-quick"), read_profile_csv(tmp_path / "profiles.csv"))


@pytest.mark.torch
@pytest.mark.slow
def test_real_mode_serves_built_models_end_to_end(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    # made-up profiles, generous enough that the quick models meet the SLA on a busy 2-core machine
    pipeline = _quick_real_pipeline(tmp_path, detector_s=0.6, classifier_s=0.1)
    before = _children_of_me()
    out = tmp_path / "run"
    backend = LocalBackend(LocalSettings(mode="real", quick=True, work_dir=str(tmp_path / "work")))
    loop = AdapterLoop(backend, pipeline, make_policy("ipa", pipeline), make_predictor("reactive"), interval_s=5)
    times = [0.5 + i * 0.5 for i in range(16)]  # 2 rps for 8 s
    output = loop.run(times, 9.0, 2.0)
    assert _children_of_me() <= before
    req = output.requests
    assert len(req) == 16
    assert (req["status"].isin(["ok", "late"])).all(), req[["status", "detail"]]
    log = Path(output.extra_files["logs/stage-detector.log"]).read_text()
    assert "ready after" in log
    series = pd.read_csv(output.extra_files["prometheus_series.csv"])
    assert not series.empty
    # each first replica timed five batches against its (generous) profile, and none was slower
    checks = pd.read_csv(output.extra_files["speed_check.csv"])
    assert set(checks["stage"]) == {"classifier", "detector"} and not checks["slower"].any()
    assert set(checks["profiled_p50_s"].round(3)) == {0.6, 0.1}
    del out


@pytest.mark.torch
def test_real_mode_on_a_host_slower_than_its_profiles_is_refused_before_any_request(tmp_path, capsys):
    """Profiles far faster than the (real, quick) models: `ipa run` starts the stage processes,
    their first replicas time five batches after warm-up, and the run stops before Locust
    starts, naming the stages and where the logs are."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ipa.cli import main

    _quick_real_pipeline(tmp_path, detector_s=1e-5, classifier_s=1e-5)
    before = _children_of_me()
    out = tmp_path / "run"
    rc = main(["run", "--pipelines-file", str(tmp_path / "pipelines.yaml"), "--profiles-file",
               str(tmp_path / "profiles.csv"), "--pipeline", "video-quick", "--workload", "constant-1",
               "--duration", "10", "--policy", "fa2-low", "--backend", "local", "--mode", "real",
               "--backend-option", "quick=true", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "refusing before the load starts" in err
    assert "stage detector (rtdetr_r18vd" in err and "stage classifier (resnet-18" in err
    assert "against the profiled 1e-05 s" in err
    assert f"the run's logs are in {out / '.work' / 'logs'}" in err
    assert not (out / "summary.json").exists()
    assert not (out / ".work" / "logs" / "loadgen.log").exists()  # the load generator never started
    assert _children_of_me() <= before  # and every process the stack started is gone
    log = (out / ".work" / "logs" / "stage-detector.log").read_text()
    assert "speed check: batch 1" in log and "slower than the profile" in log


@pytest.mark.torch
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux CPU affinity and 2 CPUs")
def test_real_mode_replicas_of_all_stages_are_pinned_to_cpus_of_their_own(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ipa.configuration import Configuration, StageConfig
    from ipa.serving.stack import LiveStack

    pipeline = _quick_real_pipeline(tmp_path, detector_s=0.6, classifier_s=0.1)
    one_each = Configuration({"detector": StageConfig("PekingU/rtdetr_r18vd", 1, 1, 1),
                              "classifier": StageConfig("microsoft/resnet-18", 1, 1, 1)})
    stack = LiveStack(pipeline, tmp_path / "stack", mode="real", quick=True, prometheus=False)
    try:
        stack.start(one_each, timeout_s=120)
        status = {s: stack.stage_status(s) for s in pipeline.stage_names}
        cpus = [tuple(c) for s in status.values() for c in s["replica_cpus"]]
        # two stage processes, one replica each, on a 2-CPU machine: one CPU each, none shared
        assert len(cpus) == 2 and len(set(cpus)) == 2 and all(len(c) == 1 for c in cpus), status
        assert all(not s["shared_cpus"] for s in status.values())
        # a third replica has no CPU of its own: it shares one, and the stage's log says so
        stack.apply(Configuration({**one_each.stages, "classifier": StageConfig("microsoft/resnet-18", 1, 2, 1)}))
        stack.wait_ready(120)
        assert stack.stage_status("classifier")["shared_cpus"]
        assert "oversubscribed" in (tmp_path / "stack" / "logs" / "stage-classifier.log").read_text()
    finally:
        stack.stop()


@pytest.mark.torch
def test_start_to_ready_includes_the_process_start_the_in_process_load_leaves_out(tmp_path):
    """The measured start to ready spans spawning the stage server to its first 200 on
    /v2/health/ready; the server's own log says how long the in-process build and warm-up took,
    which must be less (the interpreter and the imports come first)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ipa.serving.readiness import measure_start_to_ready
    from ipa.serving.spec import stage_specs

    pipeline = _quick_real_pipeline(tmp_path, detector_s=0.1, classifier_s=0.1)
    spec = stage_specs(pipeline, "real", quick=True)["classifier"]
    before = _children_of_me()
    result = measure_start_to_ready(spec, "microsoft/resnet-18", tmp_path / "work", repeats=2, log=lambda m: None)
    assert _children_of_me() <= before  # every server it started is gone
    assert len(result["samples_s"]) == 2 and result["median_s"] > 0
    for r in range(2):
        log = (tmp_path / "work" / f"stage-classifier-{r}.log").read_text()
        in_process = float(re.search(r"ready after ([0-9.]+)s", log).group(1))
        assert result["samples_s"][r] > in_process


def test_the_live_monitor_gives_the_autoscalers_each_stages_load_as_the_offered_work_predicts(tiny_pipeline,
                                                                                              tmp_path):
    """What hpa and ray-serve see on a live stack (Prometheus scraping the stage processes and the
    router), checked against the offered work: at a steady 5 rps a stage whose batch-1 service
    time is ~s seconds is busy ~5 s replica-seconds per second (Little's law for the ongoing)."""
    seen = []
    inner = make_policy("hpa", tiny_pipeline)

    class Recording:
        name = "hpa"

        def initial_state(self):
            return inner.initial_state()

        def __call__(self, observation, state):
            seen.append(observation)
            return inner(observation, state)

    backend = LocalBackend(LocalSettings(work_dir=str(tmp_path / "work"), load_time_scale=0.1))
    loop = AdapterLoop(backend, tiny_pipeline, Recording(), make_predictor("reactive"), interval_s=8, window_s=30)
    rate = 5.0
    # Poisson arrivals: evenly spaced ones would sit in a fixed phase against the 1-s seconds, and
    # a sampled reading (as the ongoing requests were before they became an integral: a CI run
    # read 0.0 where 0.1 was offered) would alias, all idle or all busy
    gaps = np.random.default_rng(1).exponential(1 / rate, size=int(rate * 40))
    times = [t for t in np.cumsum(gaps).tolist() if t < 32.0]
    loop.run(times, 32.0, rate)
    later = [o for o in seen if o.time_s >= 16]
    assert later and all(set(o.stages) == set(tiny_pipeline.stage_names) for o in later), [o.stages for o in seen]
    for o in later:
        for name, sc in o.current.stages.items():
            series = o.stages[name]
            assert series.ready[-1] == sc.replicas
            service_s = tiny_pipeline.stage_profile(name, sc.variant).latency(sc.batch, "mean")
            offered = rate * service_s / sc.replicas  # expected busy share of the ready replicas
            assert 0.5 * offered <= series.utilisation(8) <= 1.6 * offered + 0.02, (name, series, offered)
            # Little's law: at least the requests in service, on average; a light load queues little
            assert 0.5 * rate * service_s <= series.mean_ongoing(8) <= rate * service_s + 2.0, (name, series)
            # two independent meters: a request is at the stage (router) at least while the stage
            # process computes it (its own histogram), so the integral is at least the busy time
            # (the busy seconds' edges are interpolated between scrapes: a small allowance)
            assert series.mean_ongoing(8) >= 0.9 * sum(series.busy_s[-8:]) / 8 - 0.01, (name, series)
