"""Invariants every run folder must satisfy, whatever backend wrote it.

``check_run_folder(path)`` returns the violations found (empty: the folder is sound):
completeness, request conservation (summary, series and per-request records agree), PAS in
[0, 1], cores that match the configurations (per-replica base cores, provisioned >= requested),
configurations within the pipeline's caps, and one decision every adaptation interval.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ipa.backends.registry import LIVE_BACKENDS
from ipa.monitoring.router_ledger import ROUTER_COUNTS
from ipa.policies import POLICIES, policy_pipeline
from ipa.runs.folder import SUMMARY
from ipa.runs.ledger import ledger_mismatches
from ipa.records import STATUSES
from ipa.runs.tables import DECISION_COLUMNS, TIMESERIES_COLUMNS
from ipa.serving.v2 import STAGE_FAILURE

EPS = 1e-6


def _read_csv(path: Path, columns, problems: list[str]) -> list[dict[str, str]] | None:
    if not path.exists():
        problems.append(f"{path.name} is missing")
        return None
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            problems.append(f"{path.name} lacks column(s) {missing}")
            return None
        return list(reader)


def _config_problems(where: str, config: dict, params: dict, pipeline) -> list[str]:
    out = []
    for stage, sc in config.items():
        if not 1 <= sc["replicas"] <= params.get("scaling_cap", math.inf):
            out.append(f"{where}: stage {stage} has {sc['replicas']} replicas, outside [1, {params.get('scaling_cap')}]")
        if not 1 <= sc["batch"] <= params.get("batching_cap", math.inf):
            out.append(f"{where}: stage {stage} has batch {sc['batch']}, outside [1, {params.get('batching_cap')}]")
        if pipeline is not None and sc["cores"] != pipeline.base_cores(stage, sc["variant"]):
            out.append(f"{where}: stage {stage} gives {sc['variant']} {sc['cores']} cores per replica, "
                       f"its base allocation is {pipeline.base_cores(stage, sc['variant'])}")
    return out


def _total_cores(config: dict) -> int:
    return sum(sc["replicas"] * sc["cores"] for sc in config.values())


def check_run_folder(path: str | Path, pipeline=None) -> list[str]:
    """Violations of the run-folder invariants (empty list: none). With ``pipeline``, also check
    every configuration's per-replica cores against its base allocation (as the run's policy
    derives it: ``policies.policy_pipeline``)."""
    path = Path(path)
    problems: list[str] = []
    try:
        summary = json.loads((path / SUMMARY).read_text())
    except FileNotFoundError:
        return [f"{SUMMARY} is missing: the run is not complete"]
    except (OSError, json.JSONDecodeError) as e:
        return [f"{SUMMARY} cannot be read: {e}"]
    if summary.get("complete") is not True:
        problems.append(f"{SUMMARY} does not say complete: true")
    params = summary.get("params") or {}
    if pipeline is not None and params.get("policy") in POLICIES:
        pipeline = policy_pipeline(params["policy"], pipeline)  # the allocation the run's policy used

    # --- conservation ----------------------------------------------------------------------
    n = {s: summary.get(f"requests_{k}") for s, k in
         (("ok", "on_time"), ("late", "late"), ("dropped", "dropped"), ("failed", "failed"))}
    sent, completed = summary.get("requests_sent"), summary.get("requests_completed")
    if None in n.values() or sent is None or completed is None:
        problems.append(f"{SUMMARY} lacks request counts")
        return problems
    if sent != completed + n["dropped"] + n["failed"]:
        problems.append(f"conservation: sent {sent} != completed {completed} + dropped {n['dropped']} + failed {n['failed']}")
    if completed != n["ok"] + n["late"]:
        problems.append(f"conservation: completed {completed} != on time {n['ok']} + late {n['late']}")
    if sent and abs(summary.get("sla_violation_rate", -1) - (n["late"] + n["dropped"] + n["failed"]) / sent) > 1e-12:
        problems.append("sla_violation_rate is not (late + dropped + failed) / sent")
    if sent and abs(summary.get("unanswered_rate", -1) - (n["dropped"] + n["failed"]) / sent) > 1e-12:
        problems.append("unanswered_rate is not (dropped + failed) / sent")

    rows = _read_csv(path / "timeseries.csv", TIMESERIES_COLUMNS, problems)
    if rows is not None:
        sums = {c: sum(int(r[c]) for r in rows) for c in ("arrivals", "completed", "completed_late", "dropped", "failed")}
        for col, want in (("arrivals", sent), ("completed", n["ok"]), ("completed_late", n["late"]),
                          ("dropped", n["dropped"]), ("failed", n["failed"])):
            if sums[col] != want:
                problems.append(f"conservation: timeseries {col} sum to {sums[col]}, summary says {want}")
        if [int(r["second"]) for r in rows] != list(range(len(rows))):
            problems.append("timeseries seconds are not 0, 1, 2, ... without gaps")
        duration = int(params.get("duration_s") or len(rows))
        if len(rows) < duration:
            problems.append(f"timeseries has {len(rows)} seconds, the workload {duration}")
        bad_pas = [r["second"] for r in rows if r["pas"] == "" or not -EPS <= float(r["pas"]) <= 1 + EPS]
        if bad_pas:
            problems.append(f"PAS outside [0, 1] (or missing) in seconds {bad_pas[:5]}")
        seen: dict[str, dict] = {}
        for r in rows:
            text = r["configuration"]
            if text not in seen:
                seen[text] = json.loads(text)
                problems.extend(_config_problems(f"timeseries second {r['second']}", seen[text], params, pipeline))
            if float(r["cores"]) < _total_cores(seen[text]) - EPS:
                problems.append(f"second {r['second']}: {r['cores']} cores provisioned, fewer than its "
                                f"configuration's {_total_cores(seen[text])}")
    pas_mean = summary.get("pas_mean")
    if pas_mean is None or not 0 <= pas_mean <= 1:
        problems.append(f"pas_mean {pas_mean!r} is not in [0, 1]")

    requests = path / "requests.csv"
    if requests.exists():
        counts = {s: 0 for s in STATUSES}
        total = stage_failed = 0
        with open(requests, newline="") as f:
            for r in csv.DictReader(f):
                total += 1
                if r["status"] not in counts:
                    problems.append(f"requests.csv: request {r['id']} has status {r['status']!r}")
                    continue
                counts[r["status"]] += 1
                stage_failed += r["status"] == "failed" and r.get("detail", "").startswith(STAGE_FAILURE)
        if total != sent or any(counts[s] != n[s] for s in STATUSES):
            problems.append(f"conservation: requests.csv holds {total} requests {counts}, the summary {sent} {n}")
        ledger = path / ROUTER_COUNTS
        if ledger.exists():
            problems.extend(ledger_mismatches(json.loads(ledger.read_text()),
                                              {**counts, "sent": total, "stage_failed": stage_failed}))
        elif params.get("backend") in LIVE_BACKENDS:
            problems.append(f"{ROUTER_COUNTS} is missing: the router's own count of the requests was not read, "
                            "so the records cannot be checked against it (see status_poll_errors.csv)")

    # --- decisions ------------------------------------------------------------------------
    decisions = _read_csv(path / "decisions.csv", DECISION_COLUMNS, problems)
    if decisions is not None:
        interval = params.get("interval_s")
        duration = params.get("duration_s")
        if interval and duration:
            want = [float(k * interval) for k in range(math.ceil(duration / interval))]
            got = [float(r["time_s"]) for r in decisions]
            if got != want:
                problems.append(f"decisions are not one every {interval} s from 0 to {duration} s "
                                f"({len(got)} rows, {len(want)} expected)")
        if summary.get("decisions") != len(decisions):
            problems.append(f"summary counts {summary.get('decisions')} decisions, decisions.csv has {len(decisions)}")
        failed = [r for r in decisions if r["status"] in ("policy_error", "apply_error")]
        if summary.get("decision_errors") != len(failed):
            problems.append(f"summary counts {summary.get('decision_errors')} decision errors, decisions.csv has "
                            f"{len(failed)}")
        if failed and not params.get("tolerate_decision_errors"):
            problems.append(f"{len(failed)} decision(s) failed, the run kept a stale configuration through them "
                            f"(first at {failed[0]['time_s']} s: {failed[0]['reason']}); rerun it, or pass "
                            "--tolerate-decision-errors to accept such a run")
        for r in decisions:
            config = json.loads(r["configuration"])
            where = f"decision at {r['time_s']} s"
            problems.extend(_config_problems(where, config, params, pipeline))
            if r["cost_cores"] and abs(float(r["cost_cores"]) - _total_cores(config)) > EPS:
                problems.append(f"{where}: cost_cores {r['cost_cores']} != sum of replicas x cores {_total_cores(config)}")
            if r["status"] == "decided" and r["accuracy"] and params.get("accuracy_method") == "pas" \
                    and not -EPS <= float(r["accuracy"]) <= 1 + EPS:
                problems.append(f"{where}: PAS {r['accuracy']} outside [0, 1]")
    return problems
