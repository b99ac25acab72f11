"""Run folders: the per-second series, the summary from request records, atomic writing,
refusal of folders holding another run, determinism, and the invariants checker."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from ipa.errors import ConfigError, IpaError
from ipa.runs import (RunSpec, WALL_CLOCK_SUMMARY_KEYS, check_out_dir, check_run_folder, execute,
                      run_params)
from ipa.monitoring.router_ledger import ROUTER_COUNTS
from ipa.runs.series import per_second_mean, per_second_quantiles

SPEC = RunSpec("tiny-video", "ipa", workload="bursty", predictor="max", duration_s=300)


# --- per-second series -------------------------------------------------------------------

def test_step_function_average_over_each_second():
    # 2 cores, 5 from t=1.5, 3 from t=1.75, 0 from t=4
    got = per_second_mean([0.0, 1.5, 1.75, 4.0], [2, 5, 3, 0], 5)
    assert got == pytest.approx([2, 2 * 0.5 + 5 * 0.25 + 3 * 0.25, 3, 3, 0])


def test_per_second_quantiles_match_numpy_per_group():
    rng = np.random.default_rng(0)
    sec = rng.integers(0, 20, 500)
    val = rng.random(500)
    p50, p99 = per_second_quantiles(sec, val, 22, (0.5, 0.99))
    for s in range(20):
        assert p50[s] == pytest.approx(np.percentile(val[sec == s], 50))
        assert p99[s] == pytest.approx(np.percentile(val[sec == s], 99))
    assert np.isnan(p50[20]) and np.isnan(p99[21])  # seconds without a completion


# --- a run folder end to end ----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One run of the synthetic pipeline (module-scoped: a run takes a few seconds)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import write_tiny_catalogue
    from ipa.pipelines import Pipeline, load_catalogue
    from ipa.pipelines.profiles import read_profile_csv

    base = tmp_path_factory.mktemp("runs")
    pp, vv, pr = write_tiny_catalogue(base / "catalogue")
    pipeline = Pipeline(load_catalogue(pp, vv).pipeline("tiny-video"), read_profile_csv(pr))
    execute(SPEC, base / "a", pipeline=pipeline, requests=True)
    return pipeline, base


def test_the_folder_is_complete_and_sound(tiny_run):
    pipeline, base = tiny_run
    assert check_run_folder(base / "a", pipeline) == []
    summary = json.loads((base / "a" / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["requests_sent"] == summary["requests_completed"] + summary["requests_dropped"] + summary["requests_failed"]
    assert summary["decisions"] == 30
    assert summary["params"]["policy"] == "ipa" and summary["params"]["seed"] == 0
    assert summary["git_revision"] and summary["versions"]["numpy"]
    assert not list((base / "a").glob(".*tmp*"))  # no temporary file left behind


def test_summary_numbers_come_from_the_request_records(tiny_run):
    import pandas as pd
    pipeline, base = tiny_run
    summary = json.loads((base / "a" / "summary.json").read_text())
    req = pd.read_csv(base / "a" / "requests.csv")
    counts = req.status.value_counts()
    assert summary["requests_on_time"] == counts.get("ok", 0)
    assert summary["requests_late"] == counts.get("late", 0)
    done = req[req.status.isin(["ok", "late"])]
    assert summary["latency_p99_s"] == pytest.approx(np.percentile(done.latency_s, 99), abs=2e-6)
    assert (done[done.status == "late"].latency_s > pipeline.sla_s).all()
    ts = pd.read_csv(base / "a" / "timeseries.csv")
    assert summary["cost_cores_mean"] == pytest.approx(ts.cores[:300].mean(), abs=1e-5)
    assert summary["pas_mean"] == pytest.approx(ts.pas[:300].mean(), abs=1e-5)


def test_same_inputs_and_seed_give_byte_identical_outputs(tiny_run, tmp_path):
    pipeline, base = tiny_run
    execute(SPEC, tmp_path / "b", pipeline=pipeline, requests=True)
    for name in ("timeseries.csv", "decisions.csv", "requests.csv"):
        assert (base / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    def stable(path):
        s = json.loads(path.read_text())
        for key in WALL_CLOCK_SUMMARY_KEYS:
            s.pop(key)
        return s
    assert stable(base / "a" / "summary.json") == stable(tmp_path / "b" / "summary.json")
    execute(RunSpec(**{**SPEC.__dict__, "seed": 1}), tmp_path / "c", pipeline=pipeline)
    assert (base / "a" / "timeseries.csv").read_bytes() != (tmp_path / "c" / "timeseries.csv").read_bytes()


def test_an_existing_run_is_never_silently_replaced(tiny_run, tmp_path):
    pipeline, base = tiny_run
    folder = tmp_path / "r"
    shutil.copytree(base / "a", folder)
    before = (folder / "summary.json").read_bytes()
    other = RunSpec(**{**SPEC.__dict__, "policy": "fa2-low"})
    with pytest.raises(ConfigError, match="different run.*policy"):
        execute(other, folder, pipeline=pipeline)
    with pytest.raises(ConfigError, match="different run"):
        execute(other, folder, pipeline=pipeline, force=True)  # --force never replaces another run
    with pytest.raises(ConfigError, match="same parameters.*--force"):
        execute(SPEC, folder, pipeline=pipeline)
    assert (folder / "summary.json").read_bytes() == before
    execute(SPEC, folder, pipeline=pipeline, force=True)
    assert check_run_folder(folder, pipeline) == []
    assert not (folder / "requests.csv").exists()  # the old run's file does not outlive it


def test_a_folder_with_other_files_is_refused(tmp_path, tiny_run):
    pipeline, _ = tiny_run
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a run folder"):
        check_out_dir(tmp_path, {}, force=True)


def test_a_failed_run_leaves_no_summary(tmp_path, tiny_run, monkeypatch):
    pipeline, _ = tiny_run
    import ipa.runs.experiment as experiment

    def broken(*a, **k):
        raise IpaError("the backend fell over")
    monkeypatch.setattr(experiment, "build_tables", broken)
    with pytest.raises(IpaError):
        execute(SPEC, tmp_path / "x", pipeline=pipeline)
    assert not (tmp_path / "x" / "summary.json").exists()


def _tables_of(folder):
    """The tables of a written run folder, as write_run_folder takes them."""
    import csv
    read = lambda name: list(csv.reader(open(folder / name)))[1:]  # noqa: E731
    return {"timeseries": read("timeseries.csv"), "decisions": read("decisions.csv"),
            "decision_times": read("decision_times.csv"), "requests": read("requests.csv"),
            "summary": {k: v for k, v in json.loads((folder / "summary.json").read_text()).items() if k != "complete"}}


def test_extra_files_are_copied_in_and_an_older_runs_extras_do_not_survive(tiny_run, tmp_path):
    from ipa.runs.folder import write_run_folder
    _, base = tiny_run
    tables = _tables_of(base / "a")
    src = tmp_path / "work"
    (src / "logs").mkdir(parents=True)
    (src / "logs" / "router.log").write_text("router says hi\n")
    (src / "series.csv").write_text("t,v\n0,1\n")
    out = tmp_path / "run"
    write_run_folder(out, tables, {}, {"logs/router.log": str(src / "logs" / "router.log"),
                                       "prometheus_series.csv": str(src / "series.csv")})
    assert (out / "logs" / "router.log").read_text() == "router says hi\n"
    assert (out / "prometheus_series.csv").read_text() == "t,v\n0,1\n"
    assert check_out_dir(out, json.loads((out / "summary.json").read_text())["params"], force=True) == "replace-same"
    # the same run again, this time with no extras: the old ones go
    write_run_folder(out, tables, {}, {"monitor_log.csv": str(src / "series.csv")})
    assert not (out / "logs").exists() and not (out / "prometheus_series.csv").exists()
    assert (out / "monitor_log.csv").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("name", ["notes.txt", "logs/../../escape.log", "logs/a/b.log", "logs/"])
def test_an_extra_file_without_a_place_in_the_format_is_refused_before_writing(tiny_run, tmp_path, name):
    from ipa.runs.folder import write_run_folder
    _, base = tiny_run
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(IpaError, match="extra file"):
        write_run_folder(tmp_path / "run", _tables_of(base / "a"), {}, {name: str(src)})
    assert not (tmp_path / "run").exists()


def test_a_failed_live_runs_folder_keeps_its_logs_and_can_be_rerun(tmp_path):
    out = tmp_path / "run"
    (out / ".work" / "logs").mkdir(parents=True)
    (out / "logs").mkdir()
    (out / "loadgen_requests.csv").write_text("")
    assert check_out_dir(out, {}, force=False) == "replace-incomplete"


def test_run_params_identify_the_data(tiny_run):
    pipeline, _ = tiny_run
    from ipa.workloads import load_workload
    a = run_params(SPEC, pipeline, load_workload("bursty"))
    assert a["sla_s"] == pipeline.sla_s and a["scaling_cap"] == pipeline.scaling_cap
    assert len(a["pipeline_sha256"]) == 64


# --- the invariants checker catches what it must --------------------------------------------

def _tamper(folder, name, edit):
    path = folder / name
    path.write_text(edit(path.read_text()))


@pytest.mark.parametrize("name,edit,expect", [
    ("summary.json", lambda t: t.replace('"requests_dropped": ', '"requests_dropped": 1'), "conservation"),
    ("timeseries.csv", lambda t: _replace_field(t, 6, "arrivals", "999"), "conservation"),
    ("timeseries.csv", lambda t: _replace_field(t, 3, "pas", "1.5"), "PAS outside"),
    ("timeseries.csv", lambda t: _replace_field(t, 3, "cores", "0.5"), "fewer than its configuration"),
    ("decisions.csv", lambda t: "\n".join(t.splitlines()[:5] + t.splitlines()[6:]) + "\n", "one every 10 s"),
    ("decisions.csv", lambda t: t.replace('"replicas"":1', '"replicas"":21', 1), "outside"),
    ("requests.csv", lambda t: "\n".join(t.splitlines()[:-1]) + "\n", "requests.csv holds"),
])
def test_the_checker_finds_violations(tiny_run, tmp_path, name, edit, expect):
    pipeline, base = tiny_run
    folder = tmp_path / "t"
    shutil.copytree(base / "a", folder)
    _tamper(folder, name, edit)
    problems = check_run_folder(folder, pipeline)
    assert any(expect in p for p in problems), problems


def _replace_field(text, row, column, value):
    import csv
    import io
    rows = list(csv.reader(io.StringIO(text)))
    rows[row][rows[0].index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _statuses(folder):

    with open(folder / "requests.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    count = {s: sum(r["status"] == s for r in rows) for s in ("ok", "late", "dropped", "failed")}
    return len(rows), count


def test_the_run_folder_check_holds_the_ledger_against_the_records(tiny_run, tmp_path):
    pipeline, base = tiny_run
    folder = tmp_path / "t"
    shutil.copytree(base / "a", folder)
    sent, count = _statuses(folder)
    ledger = {"received": sent, "answered": {"ok": count["ok"] + count["late"], "dropped": count["dropped"],
                                             "failed": count["failed"]},
              "dropped_by_stage": {"detector": count["dropped"]}, "failed_by_stage": {"detector": count["failed"]},
              "router_restarts": 0}
    (folder / ROUTER_COUNTS).write_text(json.dumps(ledger))
    assert check_run_folder(folder, pipeline) == []
    (folder / ROUTER_COUNTS).write_text(json.dumps({**ledger, "received": sent + 1}))
    assert any("more than the" in p for p in check_run_folder(folder, pipeline))


def test_a_live_run_without_the_routers_ledger_fails_the_check(tiny_run, tmp_path):
    pipeline, base = tiny_run
    folder = tmp_path / "t"
    shutil.copytree(base / "a", folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary["params"]["backend"] = "local"
    (folder / "summary.json").write_text(json.dumps(summary))
    assert any(f"{ROUTER_COUNTS} is missing" in p for p in check_run_folder(folder, pipeline))


def test_a_folder_without_summary_is_not_complete(tiny_run, tmp_path):
    _, base = tiny_run
    shutil.copytree(base / "a", tmp_path / "t")
    (tmp_path / "t" / "summary.json").unlink()
    assert check_run_folder(tmp_path / "t") == ["summary.json is missing: the run is not complete"]


class _BrokenPredictor:
    """A predictor that fails from its third call on (a model file gone bad mid-run)."""
    name = "broken"

    def __init__(self):
        self.calls = 0

    def predict(self, arrivals_per_s):
        self.calls += 1
        if self.calls >= 3:
            raise RuntimeError("weights unreadable")
        return float(max(arrivals_per_s, default=0.0))


@pytest.mark.reliability
def test_a_run_whose_predictor_raised_is_marked_and_refused_unless_tolerated(tiny_run, tmp_path):
    from dataclasses import replace

    from ipa.analysis import RunFolderError, read_run

    pipeline, _ = tiny_run
    execute(SPEC, tmp_path / "strict", pipeline=pipeline, predictor=_BrokenPredictor())
    summary = json.loads((tmp_path / "strict" / "summary.json").read_text())
    decisions = list(csv.DictReader(open(tmp_path / "strict" / "decisions.csv")))
    failed = [r for r in decisions if r["status"] == "policy_error"]
    assert failed and summary["decision_errors"] == len(failed)
    assert "weights unreadable" in summary["first_decision_error"]
    assert summary["first_decision_error"].startswith(f"t={float(failed[0]['time_s']):g} s")
    problems = check_run_folder(tmp_path / "strict")
    assert any("decision(s) failed" in p and "weights unreadable" in p for p in problems)
    with pytest.raises(RunFolderError, match="decision"):
        read_run(tmp_path / "strict")
    # asked for, the same run is accepted: counted and quoted, not an error
    execute(replace(SPEC, tolerate_decision_errors=True), tmp_path / "tolerant", pipeline=pipeline,
            predictor=_BrokenPredictor())
    assert not [p for p in check_run_folder(tmp_path / "tolerant") if "decision" in p]
    assert read_run(tmp_path / "tolerant")["decisions"] == len(decisions)
