"""Reliability (`pytest -m reliability`): bad input at every entry point gets a clear error and
leaves no partial result; injected faults are survived and accounted.

Cases already covered elsewhere are not repeated here (grep `mark.reliability` and the files
named in the README's reliability section); this file adds the ones no other test had: bad
arguments of every `ipa` subcommand, bad catalogue/profile files through `ipa run`, malformed
requests against a real stage-server process, Prometheus answers with gaps/NaN/errors, a solver
timing out inside a run, and SIGINT during `ipa run` (sim and local backends).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pulp
import pytest
from conftest import default_sigint

from ipa.cli import main
from ipa.configuration import Configuration, StageConfig
from ipa.optimizer.solver import make_solver

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[1]


def _cheapest(pipeline) -> Configuration:
    return Configuration({s: StageConfig(p[0].variant, 1, 1, p[0].base_cores)
                          for s, p in pipeline.stage_profiles.items()})


# --- CLI arguments of every subcommand ---------------------------------------------------------

def _ipa(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    return code, err


CLI_CASES = [
    ([], "required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["pipelines", "show", "no-such-pipeline"], "no-such-pipeline"),
    (["pipelines", "explode"], "invalid choice: 'explode'"),
    (["workloads", "show", "spiky-9"], "spiky-9"),
    (["workloads", "show", "--trace", "/nonexistent/trace.csv"], "/nonexistent/trace.csv"),
    (["workloads", "show", "bursty", "--duration", "99999"], "99999"),
    (["predictor", "evaluate", "--alpha", "2"], "alpha"),
    (["predictor", "evaluate", "--weights", "/nonexistent/lstm.json"], "/nonexistent/lstm.json"),
    (["predictor", "evaluate", "--predictor", "oracle"], "invalid choice: 'oracle'"),
    (["predictor"], "required"),
    (["run", "--pipeline", "video", "--policy", "ipa", "--workload", "bursty"], "--out"),
    (["run", "--pipeline", "video", "--policy", "ipa", "--workload", "bursty", "--trace", "x.csv", "--out", "o"],
     "not allowed with argument"),
    (["run", "--pipeline", "video", "--policy", "ipa", "--workload", "bursty", "--seed", "one", "--out", "o"],
     "invalid int value: 'one'"),
    (["run", "--pipeline", "video", "--policy", "ipa", "--workload", "bursty", "--out", "/proc/ipa-run"],
     "--out /proc/ipa-run cannot be written"),
    (["run", "--pipeline", "video", "--policy", "hpa", "--workload", "bursty", "--out", "o",
      "--policy-option", "target_utilisation=1.5"], "target_utilisation must be a number in (0, 1], got 1.5"),
    (["run", "--pipeline", "video", "--policy", "ray-serve", "--workload", "bursty", "--out", "o",
      "--policy-option", "target=4"], "unknown option(s) ['target']; known: target_ongoing_requests"),
    (["run", "--pipeline", "video", "--policy", "ipa", "--workload", "bursty", "--out", "o",
      "--policy-option", "target_utilisation"], "expected KEY=VALUE"),
    (["run", "--pipeline", "video", "--policy", "ipa", "--workload", "bursty", "--out", "o",
      "--policy-option", "target_utilisation=0.5"], "policy ipa takes no options"),
    (["solve", "--pipeline", "video"], "--rate"),
    (["cluster"], "required"),
    (["cluster", "render", "--pipeline", "video"], "--out"),
    (["cluster", "render", "--pipeline", "video", "--out", "o", "--mode", "turbo"], "invalid choice: 'turbo'"),
    (["serve"], "--pipeline"),
    (["serve", "--pipeline", "video", "--port", "http"], "invalid int value: 'http'"),
    (["profile", "--min-reps", "many"], "invalid int value: 'many'"),
    (["profile", "--quick", "--out", "/proc/ipa-profile"], "--out /proc/ipa-profile cannot be written"),
    (["predictor", "train", "--out", "/proc/ipa/lstm.json"], "cannot be written"),
    (["calibrate", "--pipeline", "nope"], "unknown pipeline 'nope'"),
    (["quality"], "required"),
    (["quality", "refresh", "--pipelines"], "expected at least one argument"),
]


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[" ".join(a) or "(none)" for a, _ in CLI_CASES])
def test_bad_arguments_of_every_subcommand_exit_2_with_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any output folder a bad command might create would land here
    code, err = _ipa(argv, capsys)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_every_subcommand_has_bad_argument_cases():
    from ipa.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    covered = {argv[0] for argv, _ in CLI_CASES if argv}
    # solve and run have their own bad-input suites (test_cli_solve.py, test_cli_run.py)
    assert set(sub.choices) <= covered, set(sub.choices) - covered


def test_serve_with_a_pipeline_lacking_profiles_names_what_to_profile_and_starts_nothing(tiny_files, tmp_path, capsys):
    pipelines, variants, profiles = tiny_files
    empty = tmp_path / "profiles.csv"
    empty.write_text(profiles.read_text().splitlines()[0] + "\n")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code, err = _ipa(["serve", "--pipeline", "tiny-video", "--no-prometheus", "--work-dir", str(tmp_path / "work"),
                      "--pipelines-file", str(pipelines), "--variants-file", str(variants),
                      "--profiles-file", str(empty)], capsys)
    assert code == 2 and "profile" in err and "Traceback" not in err, err
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


# --- catalogue and profile files through `ipa run` ---------------------------------------------

def _profile_rows(path: Path) -> list[str]:
    return path.read_text().splitlines()


PROFILE_DAMAGE = {
    "nan latency": (lambda rows: [rows[0], *(r.replace(r.split(",")[3], "nan", 1) if i == 1 else r
                                             for i, r in enumerate(rows[1:], 1))], "row"),
    "missing column": (lambda rows: [",".join(rows[0].split(",")[:-1])] + rows[1:], "column"),
    "truncated row": (lambda rows: [*rows, rows[-1].rsplit(",", 4)[0]], "row"),
    "empty file": (lambda rows: [], "profiles"),
}


@pytest.mark.parametrize("damage", PROFILE_DAMAGE)
def test_a_damaged_profiles_file_is_named_and_no_run_folder_appears(damage, tiny_files, tmp_path, capsys):
    pipelines, variants, profiles = tiny_files
    bad = tmp_path / "profiles.csv"
    edit, word = PROFILE_DAMAGE[damage]
    bad.write_text("\n".join(edit(_profile_rows(profiles))) + "\n")
    out = tmp_path / "run"
    code, err = _ipa(["run", "--pipeline", "tiny-video", "--policy", "ipa", "--workload", "constant-5",
                      "--duration", "30", "--out", str(out), "--pipelines-file", str(pipelines),
                      "--variants-file", str(variants), "--profiles-file", str(bad)], capsys)
    assert code == 2, err
    assert "profiles.csv" in err and word in err.lower() and "Traceback" not in err
    assert not out.exists()


CATALOGUE_DAMAGE = {
    "yaml syntax": ("pipelines", lambda t: t.replace("stages:", "stages: [", 1), "pipelines.yaml"),
    "python object tag": ("pipelines", lambda t: "evil: !!python/object/apply:os.system ['true']\n" + t,
                          "pipelines.yaml"),
    "stage with an unknown variant": ("pipelines", lambda t: t.replace("det-m, det-l", "det-m, det-xl", 1), "det-xl"),
    "variants header only": ("variants", lambda t: t.splitlines()[0] + "\n", "det-s"),
}


@pytest.mark.parametrize("damage", CATALOGUE_DAMAGE)
def test_a_damaged_catalogue_is_named_and_no_run_folder_appears(damage, tiny_files, tmp_path, capsys):
    pipelines, variants, profiles = tiny_files
    which, edit, message = CATALOGUE_DAMAGE[damage]
    target = {"pipelines": pipelines, "variants": variants}[which]
    bad = tmp_path / target.name
    bad.write_text(edit(target.read_text()))
    files = {"pipelines": pipelines, "variants": variants, which: bad}
    out = tmp_path / "run"
    code, err = _ipa(["run", "--pipeline", "tiny-video", "--policy", "ipa", "--workload", "constant-5",
                      "--duration", "30", "--out", str(out), "--pipelines-file", str(files["pipelines"]),
                      "--variants-file", str(files["variants"]), "--profiles-file", str(profiles)], capsys)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not out.exists()


# --- V2 requests against a real stage-server process -------------------------------------------

def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


@pytest.fixture
def stage_server(tiny_pipeline, tmp_path):
    """One stage server, started the way the live stack starts it (its own process, its spec on
    disk), serving the detector of tiny-video."""
    from ipa.processes import free_port, python_argv, wait_http
    from ipa.serving.spec import stage_specs, write_json

    spec = stage_specs(tiny_pipeline, load_time_scale=0.05)["detector"]
    write_json(spec, tmp_path / "stage.json")
    port = free_port()
    config = _cheapest(tiny_pipeline)["detector"]
    log = open(tmp_path / "stage.log", "w")
    proc = subprocess.Popen(python_argv("ipa.serving.stage", "--spec", str(tmp_path / "stage.json"),
                                        "--config", json.dumps(asdict(config)), "--port", str(port)),
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v2/health/ready", None, 30)
        yield url, port, proc
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


ROW = json.dumps({"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}).encode()
V2_CASES = [
    ("POST", "/v2/models/detector/infer", b"{not json", 400, "bad-json"),
    ("POST", "/v2/models/detector/infer", b"", 400, "bad-json"),
    ("POST", "/v2/models/detector/infer", json.dumps({"inputs": []}).encode(), 400, "bad-request: 'inputs'"),
    ("POST", "/v2/models/detector/infer",
     json.dumps({"inputs": [{"name": "input", "shape": [2, 1], "datatype": "FP32", "data": [1.0]}]}).encode(),
     400, "bad-shape"),
    ("POST", "/v2/models/detector/infer",
     json.dumps({"inputs": [{"name": "input", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]}).encode(),
     400, "bad-datatype"),
    ("POST", "/v2/models/detector/infer",
     json.dumps({"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32", "data": ["one"]}]}).encode(),
     400, "bad-datatype"),
    ("POST", "/v2/models/classifier/infer", ROW, 404, "unknown-model"),
    ("GET", "/v2/models/detector/infer", None, 404, "not-found"),
    ("POST", "/admin/configuration", json.dumps({"variant": "det-xl", "batch": 1, "replicas": 1, "cores": 1}).encode(),
     400, "bad-request: cannot apply configuration"),
    ("POST", "/admin/configuration", b"[1, 2]", 400, "bad-request: cannot apply configuration"),
]


@pytest.mark.live
def test_malformed_requests_to_a_stage_process_are_answered_named_and_the_server_carries_on(stage_server):
    url, port, proc = stage_server
    for method, path, body, status, code in V2_CASES:
        got, answer = _http(method, url + path, body)
        assert got == status and isinstance(answer, dict) and answer["error"].startswith(code), (path, body, got, answer)
    # bytes that are not HTTP, and a body shorter than its Content-Length, then hang up
    for raw in (b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
                b"POST /v2/models/detector/infer HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"inputs\""):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                s.recv(4096)
            except (TimeoutError, ConnectionResetError):
                pass
    # still serving, and every refusal was counted
    assert proc.poll() is None
    status, answer = _http("POST", url + "/v2/models/detector/infer", ROW)
    # the detector answers what the tiny classifier consumes: a 32 x 32 crop (ipa.pipelines.wire)
    assert status == 200 and answer["outputs"][0]["shape"] == [1, 3 * 32 * 32]
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    for code in ("unknown-model", "bad-shape", "bad-json", "bad-datatype"):
        assert f'code="{code}"' in metrics, code


# --- Prometheus answers with gaps, NaN, errors -------------------------------------------------

class PrometheusLike:
    """A small local HTTP server answering /api/v1/query the way Prometheus does (the JSON
    envelope of a range-vector query), with the samples a test sets: not Prometheus, a stand-in
    to produce answers a real one gives only in rare failures."""

    def __init__(self):
        self.answer: tuple[int, bytes] = (200, b"")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self):
                status, body = owner.answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _reply

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def samples(self, points: list[tuple[float, str]]) -> None:
        doc = {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "ipa_router_requests_total", "job": "router"},
             "values": [[t, v] for t, v in points]}]}}
        self.answer = (200, json.dumps(doc).encode())

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus_like():
    p = PrometheusLike()
    yield p
    p.close()


T0 = 1_700_000_000.0  # the run's start (epoch seconds)
NOW = T0 + 30.4


def _counter(seconds, rate=5.0, value_at=None):
    """Samples of a counter growing by ``rate`` per second, one per second at t = T0 + s + 0.5."""
    return [(T0 + s + 0.5, value_at(s) if value_at else str(rate * s)) for s in seconds]


def _monitor(url):
    from ipa.monitoring.monitor import PrometheusMonitor

    return PrometheusMonitor(url, T0, wall=lambda: NOW, timeout_s=2.0)


def test_clean_prometheus_answers_give_exact_per_second_counts(prometheus_like):
    prometheus_like.samples(_counter(range(0, 30)))
    reading = _monitor(prometheus_like.url).read(120)
    assert reading is not None and reading.arrivals_per_s[-5:] == [5.0] * 5


@pytest.mark.parametrize("case", ["nan", "inf-then-nan", "stale", "empty", "error", "not json", "http 503"])
def test_unclean_prometheus_answers_give_no_reading_and_say_why(prometheus_like, case):
    p = prometheus_like
    if case == "nan":
        p.samples(_counter(range(0, 30), value_at=lambda s: "NaN" if s == 25 else str(5.0 * s)))
    elif case == "inf-then-nan":
        p.samples(_counter(range(0, 30), value_at=lambda s: "+Inf" if s == 26 else ("NaN" if s == 27 else str(5.0 * s))))
    elif case == "stale":
        p.samples(_counter(range(0, 20)))  # the newest sample is 10 s old: the target stopped being scraped
    elif case == "empty":
        p.answer = (200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode())
    elif case == "error":
        p.answer = (400, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode())
    elif case == "not json":
        p.answer = (200, b"<html>proxy error</html>")
    else:
        p.answer = (503, b"Service Unavailable")
    monitor = _monitor(p.url)
    assert monitor.read(120) is None
    assert monitor.log and "keeps the current configuration" in monitor.log[0][1]


def test_a_gap_in_the_samples_shortens_the_reading_instead_of_inventing_data(prometheus_like):
    # scrapes missing for seconds 10..19 (Prometheus was down), counter kept counting meanwhile
    prometheus_like.samples(_counter([*range(0, 10), *range(20, 30)]))
    reading = _monitor(prometheus_like.url).read(120)
    assert reading is not None
    assert reading.arrivals_per_s == [5.0] * len(reading.arrivals_per_s)  # no lump of the gap's 50 requests
    assert len(reading.arrivals_per_s) <= 10


def _stamped(counts: dict[int, int]) -> list[tuple[float, str]]:
    """Samples of a whole-second counter (the router's): one per boundary T0 + s, holding the
    arrivals of the seconds before it; ``counts`` = {second: arrivals}."""
    total, out = 0, []
    for s in range(0, 31):
        out.append((T0 + s, str(total)))
        total += counts.get(s, 0)
    return out


def test_whole_second_samples_give_each_second_its_own_count(prometheus_like):
    counts = {s: (s * 7) % 5 for s in range(30)}
    prometheus_like.samples([pt for pt in _stamped(counts) if pt[0] <= T0 + 29])
    monitor = _monitor(prometheus_like.url)  # at T0 + 30.4: the newest boundary is T0 + 29
    reading = monitor.read(120)
    assert reading.until_s == 29 and reading.arrivals_per_s == [float(counts[s]) for s in range(29)]
    assert not monitor.log


def test_a_boundary_not_scraped_yet_ends_the_reading_a_second_early_instead_of_counting_zero(prometheus_like):
    counts = {s: 4 for s in range(30)}
    prometheus_like.samples([pt for pt in _stamped(counts) if pt[0] <= T0 + 28])  # T0 + 29 not landed
    reading = _monitor(prometheus_like.url).read(120)
    assert reading.until_s == 28 and reading.arrivals_per_s == [4.0] * 28


def test_a_boundary_a_scrape_slipped_past_is_shared_by_its_seconds_and_noted(prometheus_like):
    counts = {s: 4 for s in range(30)} | {19: 10, 20: 2}
    prometheus_like.samples([pt for pt in _stamped(counts) if pt[0] <= T0 + 29 and pt[0] != T0 + 20])
    monitor = _monitor(prometheus_like.url)
    reading = monitor.read(120)
    assert reading.arrivals_per_s[19:21] == [6.0, 6.0]  # 10 + 2 over the two seconds, none lost
    assert sum(reading.arrivals_per_s) == sum(counts[s] for s in range(29))
    assert [m for _, m in monitor.log] == [monitor.log[0][1]] and "no sample at second 20" in monitor.log[0][1]
    monitor.read(120)
    assert len(monitor.log) == 1  # noted once, not at every reading


def test_a_gapped_monitor_keeps_the_adapter_on_its_configuration(prometheus_like, tiny_pipeline):
    """The adapter step on an unclean reading: no decision acted on a hole, logged as no data."""
    from ipa.adapter import AdapterLoop
    from ipa.adapter.loop import NO_DATA
    from ipa.policies import make_policy
    from ipa.predictors import make_predictor

    prometheus_like.samples(_counter(range(0, 30), value_at=lambda s: "NaN" if s == 28 else str(5.0 * s)))

    class Backend:  # only what a step touches: the monitor
        monitor = _monitor(prometheus_like.url)

    loop = AdapterLoop(Backend(), tiny_pipeline, make_policy("ipa", tiny_pipeline), make_predictor("reactive"))
    current = _cheapest(tiny_pipeline)
    after, _ = loop._step(30.0, current, loop.policy.initial_state())
    assert after == current and loop.records[-1].status == NO_DATA


# --- a solver that times out inside a run ------------------------------------------------------

class TimesOutSometimes(pulp.LpSolver):
    """CBC, except that every third solve reports what a solver at its time limit reports (no
    solution found): a stand-in for a slow machine, since a real limit is hit nondeterministically."""

    def __init__(self):
        super().__init__()
        self.inner, self.calls = make_solver("cbc", 2.0), 0

    def actualSolve(self, lp):
        self.calls += 1
        if self.calls % 3 == 0:
            lp.assignStatus(pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound)
            return lp.status
        return self.inner.actualSolve(lp)


def test_a_solver_timing_out_mid_run_keeps_the_configuration_and_loses_no_request(tiny_pipeline):
    from ipa.adapter import AdapterLoop, first_interval_peak
    from ipa.backends.sim import SimBackend
    from ipa.policies import make_policy
    from ipa.predictors import make_predictor
    from ipa.workloads import load_workload

    times = load_workload("step-5-30").window(500, 200).send_times(0)
    solver = TimesOutSometimes()
    loop = AdapterLoop(SimBackend(seed=0), tiny_pipeline, make_policy("ipa", tiny_pipeline, solver=solver),
                       make_predictor("max"))
    out = loop.run(times, 200, first_interval_peak(times, 10))
    assert len(loop.records) == 20  # one decision every interval, timed out or not
    timed_out = [r for r in loop.records if r.decision is not None and not r.decision.feasible]
    assert timed_out, "the stand-in never timed out"
    for r in timed_out:
        before = loop.records[loop.records.index(r) - 1].configuration
        assert r.configuration == before and "keeping the current configuration" in r.reason
    assert len(out.requests) == len(times)
    assert set(out.requests["status"]) <= {"ok", "late", "dropped", "failed"}


# --- SIGINT during `ipa run` -------------------------------------------------------------------

def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _interrupt_run(args, tmp_path, wait_for: str, timeout_s: float,
                   signum: int = signal.SIGINT) -> tuple[int, str, set[int], Path, float]:
    """Start `ipa run ARGS`, send it ``signum`` once stderr shows ``wait_for``; returns (exit code,
    stderr, the processes it had started, its --out folder, seconds from the signal to its exit)."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ipa.cli", "run", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=default_sigint)
    lines, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if wait_for in line:
            break
    assert any(wait_for in line for line in lines), "".join(lines) + (proc.stdout.read() if proc.poll() else "")
    children = _descendants(proc.pid)
    proc.send_signal(signum)
    signalled = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM stops the process group's children too (ipa.processes)
        proc.communicate(timeout=30)
        raise
    return proc.returncode, "".join(lines) + stderr, children, out, time.monotonic() - signalled


def _tiny_args(tiny_files) -> list[str]:
    pipelines, variants, profiles = tiny_files
    return ["--pipeline", "tiny-video", "--pipelines-file", str(pipelines), "--variants-file", str(variants),
            "--profiles-file", str(profiles)]


def test_sigint_during_a_sim_run_exits_nonzero_and_leaves_no_complete_looking_folder(tiny_files, tmp_path):
    from ipa.runs import check_run_folder

    # one decision per second over 1200 s: long enough to be interrupted after its first progress line
    code, err, _, out, _ = _interrupt_run([*_tiny_args(tiny_files), "--policy", "ipa", "--workload", "bursty",
                                        "--interval", "1"], tmp_path, "decisions", 60)
    assert code == 130 and "interrupted" in err, err
    assert not (out / "summary.json").exists()
    assert check_run_folder(out) == ["summary.json is missing: the run is not complete"]


INTERRUPT_EXIT_S = 15  # what a user pressing Ctrl-C may reasonably wait for


@pytest.mark.live
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)],
                         ids=["SIGINT", "SIGTERM"])
def test_interrupt_during_a_local_run_stops_promptly_and_every_process_it_started(tiny_files, tmp_path,
                                                                                  signum, code):
    import pandas as pd

    from ipa.loadgen import STOPPED_IN_FLIGHT, STOPPED_UNSENT  # not .replay: it imports Locust

    # 45 s of load, interrupted at its first progress line (~10 s in): a stop that replayed the rest
    # of the trace would take ~35 s more
    got, err, children, out, exit_s = _interrupt_run(
        [*_tiny_args(tiny_files), "--policy", "ipa", "--workload", "constant-4", "--duration", "45",
         "--predictor", "reactive", "--backend", "local"], tmp_path, "decisions", 120, signum)
    assert got == code and "Traceback" not in err, err
    assert signum != signal.SIGINT or "interrupted" in err, err
    assert exit_s <= INTERRUPT_EXIT_S, f"exited {exit_s:.1f} s after the signal"
    assert not (out / "summary.json").exists()
    assert len(children) >= 5, "the live stack had not started"  # 2 stages, router, Prometheus, Locust
    deadline = time.monotonic() + 15
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(children) == [], [psutil.Process(p).cmdline() for p in _alive(children)]
    # the load generator's log, kept with the logs of the incomplete run, accounts for every
    # intended send: answered, in flight when stopped, or never sent
    intended = (out / ".work" / "send_times.txt").read_text().split()
    log = pd.read_csv(out / ".work" / "loadgen_requests.csv", dtype={"error": str}, keep_default_na=False)
    assert sorted(log["id"]) == list(range(len(intended)))
    answered = log["http_status"] != 0
    assert answered.sum() > 0
    assert set(log.loc[~answered, "error"]) <= {STOPPED_IN_FLIGHT, STOPPED_UNSENT}
    unsent = log["error"] == STOPPED_UNSENT
    assert unsent.sum() > len(log) / 2  # the rest of the trace was not replayed
    assert (log.loc[unsent, "sent_s"] == "").all() and (log.loc[~unsent, "sent_s"] != "").all()
