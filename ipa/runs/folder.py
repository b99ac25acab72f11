"""The run folder on disk: every file written atomically (tmp + rename), ``summary.json`` last
and only on success, so a folder is a complete run exactly when it has ``summary.json`` with
``complete: true``. An existing folder is never silently overwritten."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from ipa.errors import ConfigError, IpaError
from ipa.monitoring.router_ledger import ROUTER_COUNTS
from ipa.outputs import require_writable_dir, write_atomic
from ipa.records import REQUEST_COLUMNS
from ipa.runs.tables import DECISION_COLUMNS, DECISION_TIME_COLUMNS, TIMESERIES_COLUMNS

SUMMARY = "summary.json"
METADATA = "metadata.json"
RUN_FILES = ("timeseries.csv", "decisions.csv", "decision_times.csv", "requests.csv", METADATA, SUMMARY)
# What live backends add (RunOutput.extra_files): these tables at the top, every log under logs/.
EXTRA_FILES = ("loadgen_requests.csv", "prometheus_series.csv", "monitor_log.csv", "process_events.csv",
               "status_poll_errors.csv", ROUTER_COUNTS)
LOGS = "logs"
# The backend's scratch folder while the run goes on (specs, Prometheus' TSDB, raw logs); removed
# once the run folder is written, kept in a failed run's folder for diagnosis.
WORK_DIR = ".work"


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def read_summary(out_dir: Path) -> dict | None:
    path = Path(out_dir) / SUMMARY
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} exists but cannot be read ({e}); move the folder away or choose another --out") from None


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]


def check_out_dir(out_dir: Path, params: Mapping[str, Any], force: bool) -> str:
    """Refuse an output folder that must not be written; returns what writing will do
    (``new``, ``replace-incomplete`` or ``replace-same``). Called before the run starts, so a
    refusal costs nothing."""
    out_dir = Path(out_dir)
    verdict = _what_writing_does(out_dir, params, force)
    require_writable_dir(out_dir)
    return verdict


def _what_writing_does(out_dir: Path, params: Mapping[str, Any], force: bool) -> str:
    if not out_dir.exists():
        return "new"
    if not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a folder")
    summary = read_summary(out_dir)
    if summary is not None:
        diffs = _differences(summary.get("params") or {}, json.loads(json.dumps(params)))
        if diffs:
            raise ConfigError(f"{out_dir} already holds a different run ({'; '.join(diffs)}); choose another "
                              f"--out or delete that folder yourself (--force only replaces a run with the same parameters)")
        if not force:
            raise ConfigError(f"{out_dir} already holds this run (same parameters); pass --force to run it again and replace it")
        return "replace-same"
    ours = set(RUN_FILES) | set(EXTRA_FILES) | {LOGS, WORK_DIR}
    foreign = sorted(p.name for p in out_dir.iterdir()
                     if p.name not in ours and not (p.name.startswith(".") and ".tmp-" in p.name))
    if foreign:
        raise ConfigError(f"--out {out_dir} is not empty and is not a run folder (it holds {foreign[:5]}); "
                          f"choose an empty or new folder")
    return "new" if not any(out_dir.iterdir()) else "replace-incomplete"


def check_extra_names(extra_files: Mapping[str, str]) -> None:
    """A backend's extra files must have a place in the run-folder format (docs/architecture.md)."""
    for name, src in extra_files.items():
        head, _, rest = name.partition("/")
        if not (name in EXTRA_FILES or (head == LOGS and rest and "/" not in rest and rest not in (".", ".."))):
            raise IpaError(f"a backend returned the extra file {name!r}; the run folder holds "
                           f"{', '.join(EXTRA_FILES)} and {LOGS}/<name>")
        if not Path(src).is_file():
            raise IpaError(f"a backend returned the extra file {name!r} at {src}, which does not exist")


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_run_folder(out_dir: Path, tables: Mapping[str, Any], metadata: Mapping[str, Any],
                     extra_files: Mapping[str, str] | None = None) -> Path:
    """Write the run folder; ``summary.json`` (with ``complete: true``) is written last.
    ``extra_files`` (run-folder name -> path, RunOutput.extra_files) are copied in."""
    out_dir = Path(out_dir)
    extra_files = dict(extra_files or {})
    check_extra_names(extra_files)
    out_dir.mkdir(parents=True, exist_ok=True)
    # An older run's summary goes first, so the folder never looks complete while it is rewritten.
    (out_dir / SUMMARY).unlink(missing_ok=True)
    # then an older run's extras: none of them may pass for this run's
    shutil.rmtree(out_dir / LOGS, ignore_errors=True)
    for name in EXTRA_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for name, src in sorted(extra_files.items()):
        _copy_atomic(Path(src), out_dir / name)
    write_atomic(out_dir / "timeseries.csv", _csv_text(TIMESERIES_COLUMNS, tables["timeseries"]))
    write_atomic(out_dir / "decisions.csv", _csv_text(DECISION_COLUMNS, tables["decisions"]))
    write_atomic(out_dir / "decision_times.csv", _csv_text(DECISION_TIME_COLUMNS, tables["decision_times"]))
    if tables.get("requests") is not None:
        write_atomic(out_dir / "requests.csv", _csv_text(REQUEST_COLUMNS, tables["requests"]))
    else:
        (out_dir / "requests.csv").unlink(missing_ok=True)  # an older run's, not this one's
    write_atomic(out_dir / METADATA, json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    summary = dict(tables["summary"], complete=True)
    write_atomic(out_dir / SUMMARY, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return out_dir
