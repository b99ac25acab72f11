"""What a run folder holds, computed from a backend's records: the per-second time series, the
decision log and the summary. Every number comes from the per-request records, the
configuration timeline and the decisions; nothing is taken on a backend's word."""
from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from ipa.adapter.loop import DECIDED, DecisionRecord
from ipa.backends.base import RunOutput
from ipa.configuration import Configuration
from ipa.records import STATUSES
from ipa.runs.series import per_second_counts, per_second_mean, per_second_quantiles

TIMESERIES_COLUMNS = ("second", "arrivals", "completed", "completed_late", "dropped", "failed",
                      "latency_p50_s", "latency_p99_s", "pas", "cores", "configuration")
DECISION_COLUMNS = ("time_s", "status", "observed_rps", "predicted_rps", "feasible", "reason", "objective",
                    "accuracy", "cost_cores", "latency_s", "changes", "applied", "configuration")
DECISION_TIME_COLUMNS = ("time_s", "solve_time_s")
# Wall-clock figures: the only keys of summary.json that differ between two identical runs.
WALL_CLOCK_SUMMARY_KEYS = ("decision_time_p50_s", "decision_time_p99_s")


def fmt(x: Any) -> str:
    """One deterministic text form per value: floats rounded to 1 us / 1e-6, nan as empty."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return ""
        r = round(x, 6)
        return repr(0.0 if r == 0 else r)
    return str(x)


def _float_or_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 9)


def _steps_from_applied(output: RunOutput) -> tuple[list, list]:
    """Cores and serving variants derived from the applied changes, for backends that do not
    report them: cores from when a change was requested, variants from when it completed."""
    cores = [(a.requested_at_s, a.configuration.total_cores) for a in output.applied]
    variants = []
    for a in output.applied:
        at = a.completed_at_s if a.completed_at_s is not None else a.requested_at_s
        variants.extend((at, stage, sc.variant) for stage, sc in a.configuration.stages.items())
    variants.sort(key=lambda e: e[0])
    return cores, variants


def _pas_steps(pipeline, serving: Sequence[tuple[float, str, str]]) -> tuple[list[float], list[float]]:
    """PAS (product of the serving variants' accuracies) as a step function of time."""
    current: dict[str, str] = {}
    times: list[float] = []
    values: list[float] = []
    stages = set(pipeline.stage_names)
    for t, stage, variant in serving:
        current[stage] = variant
        if set(current) != stages:
            continue
        pas = pipeline.accuracy(current, "pas")
        if times and times[-1] == t:
            values[-1] = pas
        else:
            times.append(t)
            values.append(pas)
    return times, values


def build_tables(pipeline, output: RunOutput, records: Sequence[DecisionRecord], duration_s: int,
                 params: Mapping[str, Any], with_requests: bool = False) -> dict[str, Any]:
    """Rows of timeseries.csv, decisions.csv, decision_times.csv and (``with_requests``)
    requests.csv, as lists of text rows, and the summary (a dict, ``complete`` not yet set).
    ``cost_cores_mean`` and ``pas_mean`` average the workload's seconds; the series goes on
    through the drain after it."""
    req = output.requests
    status = req["status"].to_numpy().astype(str)
    intended = req["intended_s"].to_numpy(dtype=float)
    done = req["done_s"].to_numpy(dtype=float)
    latency = req["latency_s"].to_numpy(dtype=float)
    unknown = sorted(set(np.unique(status)) - set(STATUSES))
    if unknown:
        raise ValueError(f"requests with status {unknown}: every request must end ok, late, dropped or failed")
    counts = {s: int(np.count_nonzero(status == s)) for s in STATUSES}

    finished = done[np.isfinite(done)]
    last = float(finished.max()) if finished.size else 0.0
    seconds = max(int(duration_s), int(math.floor(last)) + 1)
    arrival_sec = np.floor(intended).astype(np.int64)
    done_sec = np.where(np.isfinite(done), np.floor(np.nan_to_num(done)), -1).astype(np.int64)
    per_status = {s: per_second_counts(done_sec[status == s], seconds) for s in STATUSES}
    completed = (status == "ok") | (status == "late")
    p50, p99 = per_second_quantiles(done_sec[completed], latency[completed], seconds, (0.5, 0.99))

    cores_steps, serving = output.provisioned_cores, output.serving_variants
    if not cores_steps or not serving:
        derived_cores, derived_serving = _steps_from_applied(output)
        cores_steps = cores_steps or derived_cores
        serving = serving or derived_serving
    cores = per_second_mean([t for t, _ in cores_steps], [c for _, c in cores_steps], seconds)
    pas_t, pas_v = _pas_steps(pipeline, serving)
    pas = per_second_mean(pas_t, pas_v, seconds)

    applied_t = np.asarray([a.requested_at_s for a in output.applied], dtype=float)
    applied_json = [a.configuration.to_json() for a in output.applied]
    config_idx = np.searchsorted(applied_t, np.arange(seconds, dtype=float), side="right") - 1

    arrivals = per_second_counts(arrival_sec, seconds)
    timeseries = []
    for s in range(seconds):
        timeseries.append([str(s), str(int(arrivals[s])), str(int(per_status["ok"][s])),
                           str(int(per_status["late"][s])), str(int(per_status["dropped"][s])),
                           str(int(per_status["failed"][s])), fmt(p50[s]), fmt(p99[s]), fmt(pas[s]),
                           fmt(cores[s]), applied_json[config_idx[s]] if config_idx[s] >= 0 else ""])

    decisions, decision_times = [], []
    for r in records:
        d = r.decision if r.status == DECIDED else None
        cost = d.cost_cores if d is not None else r.configuration.total_cores
        decisions.append([fmt(r.time_s), r.status, fmt(r.observed_rps), fmt(r.predicted_rps), fmt(r.feasible),
                          r.reason, fmt(d.objective if d else None), fmt(d.accuracy if d else None), fmt(cost),
                          fmt(d.latency_s if d else None), str(r.changes), fmt(r.applied),
                          r.configuration.to_json()])
        decision_times.append([fmt(r.time_s), repr(r.solve_time_s)])

    in_run = slice(0, int(duration_s))
    sent = len(status)
    violations = counts["late"] + counts["dropped"] + counts["failed"]
    solve_times = np.asarray([r.solve_time_s for r in records if r.status == DECIDED], dtype=float)
    # a policy, predictor or apply failure leaves the run on a stale configuration: counted, the
    # first one quoted, and the run folder check fails on it unless the run tolerates them
    errors = [r for r in records if r.status in ("policy_error", "apply_error")]
    summary = {
        "requests_sent": sent,
        "requests_completed": counts["ok"] + counts["late"],
        "requests_on_time": counts["ok"],
        "requests_late": counts["late"],
        "requests_dropped": counts["dropped"],
        "requests_failed": counts["failed"],
        # two violation metrics, named apart: late or without a response (this project's, stricter),
        # and without a complete response at all (the paper's, fact 36)
        "sla_violation_rate": violations / sent if sent else 0.0,
        "unanswered_rate": (counts["dropped"] + counts["failed"]) / sent if sent else 0.0,
        "drop_rate": counts["dropped"] / sent if sent else 0.0,
        "pas_mean": _float_or_none(float(np.mean(pas[in_run]))),
        "cost_cores_mean": _float_or_none(float(np.mean(cores[in_run]))),
        "latency_p50_s": _float_or_none(float(np.percentile(latency[completed], 50))) if completed.any() else None,
        "latency_p99_s": _float_or_none(float(np.percentile(latency[completed], 99))) if completed.any() else None,
        "decision_time_p50_s": float(np.percentile(solve_times, 50)) if solve_times.size else None,
        "decision_time_p99_s": float(np.percentile(solve_times, 99)) if solve_times.size else None,
        "decisions": len(records),
        "infeasible_decisions": sum(1 for r in records if r.status == DECIDED and not r.feasible),
        "decisions_without_data": sum(1 for r in records if r.status == "no_data"),
        "decision_errors": len(errors),
        "first_decision_error": f"t={errors[0].time_s:g} s: {errors[0].reason}" if errors else None,
        "configuration_changes": sum(1 for r in records[1:] if r.applied),
        "last_outcome_s": round(last, 6),
        "params": dict(params),
    }
    requests_rows = None
    if with_requests:
        detail = req["detail"].to_numpy().astype(str) if "detail" in req else np.full(sent, "")
        ids = req["id"].to_numpy()
        sent_s = req["sent_s"].to_numpy(dtype=float)
        requests_rows = [[str(int(ids[i])), fmt(intended[i]), fmt(sent_s[i]), fmt(done[i]), status[i],
                          fmt(latency[i]), detail[i]] for i in range(sent)]
    return {"timeseries": timeseries, "decisions": decisions, "decision_times": decision_times,
            "requests": requests_rows, "summary": summary}


def configuration_of(text: str) -> Configuration:
    return Configuration.from_dict(json.loads(text))
