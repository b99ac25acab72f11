"""Reading run folders (docs/architecture.md, "The run folder") into tables.

A folder counts only when its ``summary.json`` exists and says ``complete: true``, and its
request accounting adds up; anything else is an error naming the folder, never a silently
skipped or half-read run.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ipa.errors import IpaError

# The workflow's layout: results/runs/<backend>/<pipeline>/<workload>/<duration>s/<policy>/
# <predictor>/<weights>/seed<seed>. Only `weights` (a preference label) is not in summary.json.
LAYOUT = ("backend", "pipeline", "workload", "duration", "policy", "predictor", "weights", "seed")

KEY_COLUMNS = ("backend", "pipeline", "workload", "duration_s", "policy", "predictor", "weights", "seed")
PARAM_COLUMNS = ("load_scale", "sla_s", "drop_limit_s", "interval_s", "alpha", "beta", "gamma")
COUNT_COLUMNS = ("requests_sent", "requests_completed", "requests_on_time", "requests_late",
                 "requests_dropped", "requests_failed")
METRIC_COLUMNS = ("sla_violation_rate", "unanswered_rate", "drop_rate", "pas_mean", "cost_cores_mean", "latency_p50_s",
                  "latency_p99_s", "decision_time_p50_s", "decision_time_p99_s", "decisions",
                  "infeasible_decisions")
SUMMARY_COLUMNS = (("run_dir",) + KEY_COLUMNS + PARAM_COLUMNS + COUNT_COLUMNS + ("violations",)
                   + METRIC_COLUMNS + ("git_revision",))


class RunFolderError(IpaError):
    """A run folder is missing, incomplete, or its numbers do not add up."""


def _layout_labels(folder: Path) -> dict[str, str]:
    parts = folder.parts[-len(LAYOUT):]
    if len(parts) == len(LAYOUT) and parts[3].endswith("s") and parts[7].startswith("seed"):
        return dict(zip(LAYOUT, parts))
    return {}


def read_summary(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "summary.json"
    if not path.is_file():
        raise RunFolderError(f"{folder}: no summary.json: the run did not finish (rerun it)")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path}: not valid JSON ({e})") from None
    if doc.get("complete") is not True:
        raise RunFolderError(f"{path}: 'complete' is not true: the run folder is partial")
    return doc


def read_run(folder: str | Path) -> dict:
    """One row of the summary table: the run's keys, parameters, counts and metrics."""
    folder = Path(folder)
    doc = read_summary(folder)
    params = doc.get("params") or {}
    missing = [k for k in COUNT_COLUMNS + METRIC_COLUMNS if k not in doc]
    missing += [f"params.{k}" for k in ("pipeline", "workload", "policy", "predictor", "backend", "seed",
                                        "duration_s") if k not in params]
    if missing:
        raise RunFolderError(f"{folder / 'summary.json'}: missing field(s) {missing}")
    counts = {k: int(doc[k]) for k in COUNT_COLUMNS}
    accounted = counts["requests_completed"] + counts["requests_dropped"] + counts["requests_failed"]
    if counts["requests_sent"] != accounted or \
            counts["requests_completed"] != counts["requests_on_time"] + counts["requests_late"]:
        raise RunFolderError(
            f"{folder}: requests do not add up: sent {counts['requests_sent']}, completed "
            f"{counts['requests_completed']} (on time {counts['requests_on_time']} + late "
            f"{counts['requests_late']}), dropped {counts['requests_dropped']}, failed {counts['requests_failed']}")
    if doc.get("decision_errors") and not params.get("tolerate_decision_errors"):
        raise RunFolderError(f"{folder}: {doc['decision_errors']} decision(s) failed "
                             f"({doc.get('first_decision_error')}): the run kept a stale configuration; rerun it")
    labels = _layout_labels(folder)
    row = {"run_dir": str(folder)}
    row.update({k: params[k] for k in ("backend", "pipeline", "workload", "policy", "predictor", "seed")})
    row["duration_s"] = params["duration_s"]
    row["weights"] = labels.get("weights", "default")
    row.update({k: params.get(k) for k in PARAM_COLUMNS})
    row.update(counts)
    row["violations"] = counts["requests_late"] + counts["requests_dropped"] + counts["requests_failed"]
    row.update({k: doc[k] for k in METRIC_COLUMNS})
    row["git_revision"] = doc.get("git_revision")
    return row


def summary_table(folders: Iterable[str | Path]) -> pd.DataFrame:
    rows = [read_run(f) for f in folders]
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return table.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)


def write_summary(summary_files: Iterable[str | Path], out: str | Path) -> pd.DataFrame:
    """Aggregate run folders (given by their summary.json paths) into one CSV."""
    table = summary_table(Path(f).parent for f in summary_files)
    table.to_csv(out, index=False)
    return table


def select(table: pd.DataFrame, where: Mapping[str, object]) -> pd.DataFrame:
    """Rows whose columns equal every value in ``where`` (a list value means "one of")."""
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        mask &= table[column].isin(list(values))
    return table[mask]


def require(rows: pd.DataFrame, what: str, **expected: Iterable) -> None:
    """Fail naming the missing combinations when ``rows`` lacks any expected key combination."""
    have = set(map(tuple, rows[list(expected)].astype(str).itertuples(index=False)))
    want = set(itertools.product(*[[str(v) for v in vals] for vals in expected.values()]))
    missing = sorted(want - have)
    if missing:
        raise RunFolderError(f"{what}: results/summary.csv has no run for {list(expected)} = {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}")


def read_timeseries(run_dir: str | Path) -> pd.DataFrame:
    """The run's per-second table, with ``violations`` (late + dropped + failed) and
    ``unanswered`` (dropped + failed, the paper's count) per second."""
    ts = pd.read_csv(Path(run_dir) / "timeseries.csv")
    ts["violations"] = ts["completed_late"] + ts["dropped"] + ts["failed"]
    ts["unanswered"] = ts["dropped"] + ts["failed"]
    return ts


def latency_samples(run_dir: str | Path) -> tuple[pd.Series, str]:
    """End-to-end latencies for a CDF. Per request when the run has requests.csv: one value per
    request *sent*, NaN for those never answered (dropped or failed), so a CDF over the series
    stops below 1 by the unanswered share instead of hiding it. Otherwise the per-second p99 of
    the time series, one value per second that had one."""
    run_dir = Path(run_dir)
    requests = run_dir / "requests.csv"
    if requests.is_file():
        r = pd.read_csv(requests, usecols=["status", "latency_s"])
        answered = r["status"].isin(["ok", "late"])
        return r["latency_s"].astype(float).where(answered), "per request"
    ts = pd.read_csv(run_dir / "timeseries.csv", usecols=["latency_p99_s"])
    return ts["latency_p99_s"].dropna().astype(float), "per-second p99"
