"""The committed reference of adaptation quality and the comparison against it.

The reference is a CSV, one row per cell (pipeline, workload, policy), so that a refresh shows
cell by cell in review. Besides the four metrics it records the requests sent (fixed by the
workload and the seed: any change means the load itself changed) and the pipeline's data hash
(profiles and parameters: a changed hash means the cell's inputs changed, not the adapter).

Tolerances. On one platform the simulator is deterministic for a seed (bit for bit, tested in
tests/test_runs.py), so a tolerance only has to absorb what differs across platforms: the last
bits of libm/BLAS floats (lognormal draws, the LSTM's numpy forward) and the MILP solver's
build (an equally good optimum picked differently, or a different answer when the 2-s limit is
hit on a slow machine). A value passes when ``|now - ref| <= abs + rel * |ref|``. The bounds are
set to about one decision's worth of change, so that one interval decided differently on another
machine passes and a systematic change (a worse predictor, a changed objective) fails:

* ``pas_mean`` abs 0.002: a 1200-s run has 120 decisions; one interval at a neighbouring variant
  moves the mean PAS by (PAS difference of two variants, <= ~0.25) / 120 ~ 0.002.
* ``cost_cores_mean`` abs 0.05 cores + rel 1%: one interval with one replica more or less moves
  the mean by (base cores of a replica, 1-8) / 120 <= 0.07 cores; 1% keeps large pipelines'
  means (tens of cores) from failing on a single such interval.
* ``sla_violation_rate`` abs 0.002 + rel 5%: violations cluster at load spikes, and an
  interval provisioned differently at a spike moves a few tenths of a percent of requests.
* ``unanswered_rate`` (the paper's metric: dropped + failed) the same, for the same reason.
* ``latency_p99_s`` rel 5% + abs 1 ms: the p99 is one order statistic of lognormal draws and
  queueing; a few hundred requests served differently shift it by a few percent.

``requests_sent`` must be equal and the pipeline hash must match: neither depends on floats.

Measured on the synthetic reference (tests/reference/adaptation-quality-synthetic.csv, 40
cells): a predictor under-predicting by 10% moves 25 cells beyond these tolerances, one halving
the load 29; the same matrix solved by HiGHS instead of CBC moves 2 cells (ties between equally
good configurations broken differently change which requests are late), so the solver is part
of the matrix definition (CBC, bundled with PuLP) and changing it means a refresh.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ipa.errors import ConfigError
from ipa.outputs import write_atomic
from ipa.quality.matrix import METRICS, SEED, Cell, CellResult

REFERENCE_FILE = Path(__file__).with_name("reference.csv")
COLUMNS = ("pipeline", "workload", "policy", "seed", *METRICS, "requests_sent", "pipeline_sha256")


@dataclass(frozen=True)
class Tolerance:
    abs: float
    rel: float
    higher_is_better: bool

    def allows(self, reference: float, now: float) -> bool:
        return abs(now - reference) <= self.abs + self.rel * abs(reference) + 1e-12

    def __str__(self) -> str:
        parts = [f"±{self.abs:g}"] if self.abs else []
        if self.rel:
            parts.append(f"±{100 * self.rel:g}%")
        return " + ".join(parts)


TOLERANCES: dict[str, Tolerance] = {
    "pas_mean": Tolerance(abs=0.002, rel=0.0, higher_is_better=True),
    "cost_cores_mean": Tolerance(abs=0.05, rel=0.01, higher_is_better=False),
    "sla_violation_rate": Tolerance(abs=0.002, rel=0.05, higher_is_better=False),
    "unanswered_rate": Tolerance(abs=0.002, rel=0.05, higher_is_better=False),
    "latency_p99_s": Tolerance(abs=0.001, rel=0.05, higher_is_better=False),
}


@dataclass(frozen=True)
class ReferenceRow:
    cell: Cell
    metrics: dict[str, float]
    requests_sent: int
    pipeline_sha256: str


def _fmt(value: float) -> str:
    # 9 significant digits: far below every tolerance, and stable in review
    return f"{value:.9g}"


def rows_from_results(results: Iterable[CellResult]) -> list[ReferenceRow]:
    return [ReferenceRow(r.cell, dict(r.metrics), r.requests_sent, r.pipeline_sha256) for r in results]


def write_reference(rows: Iterable[ReferenceRow], path: str | Path) -> None:
    """Write the rows sorted by cell, atomically (a refresh never leaves half a file)."""
    path = Path(path)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in sorted(rows, key=lambda r: r.cell):
        w.writerow([r.cell.pipeline, r.cell.workload, r.cell.policy, SEED,
                    *(_fmt(r.metrics[m]) for m in METRICS), r.requests_sent, r.pipeline_sha256])
    write_atomic(path, buf.getvalue())


def read_reference(path: str | Path) -> list[ReferenceRow]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"reference file {path}: no such file; create it with `ipa quality refresh`")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"reference file {path} lacks column(s) {', '.join(missing)}")
        rows, seen = [], set()
        for line, raw in enumerate(reader, start=2):
            cell = Cell(raw["pipeline"], raw["workload"], raw["policy"])
            if cell in seen:
                raise ConfigError(f"{path}:{line}: cell {cell} appears twice")
            seen.add(cell)
            try:
                metrics = {m: float(raw[m]) for m in METRICS}
                sent = int(raw["requests_sent"])
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{path}:{line}: cell {cell}: {e}") from None
            if not all(math.isfinite(v) for v in metrics.values()):
                raise ConfigError(f"{path}:{line}: cell {cell} has a non-finite metric")
            if int(raw["seed"]) != SEED:
                raise ConfigError(f"{path}:{line}: seed {raw['seed']}, the matrix runs seed {SEED}")
            rows.append(ReferenceRow(cell, metrics, sent, raw["pipeline_sha256"]))
    return rows


def merge(old: Sequence[ReferenceRow], new: Sequence[ReferenceRow]) -> list[ReferenceRow]:
    """The old reference with every pipeline present in ``new`` replaced by its new rows."""
    refreshed = {r.cell.pipeline for r in new}
    return [r for r in old if r.cell.pipeline not in refreshed] + list(new)


@dataclass(frozen=True)
class Difference:
    """One line of the failure table."""

    cell: Cell
    metric: str
    reference: str
    now: str
    change: str
    tolerance: str


def _change(metric: str, ref: float, now: float) -> str:
    delta = now - ref
    tol = TOLERANCES[metric]
    worse = (delta < 0) if tol.higher_is_better else (delta > 0)
    rel = f" ({100 * delta / ref:+.1f}%)" if ref else ""
    return f"{delta:+.4g}{rel} {'worse' if worse else 'better'}"


def compare(reference: Sequence[ReferenceRow], current: Sequence[ReferenceRow]) -> list[Difference]:
    """Every way ``current`` departs from ``reference`` beyond the tolerances, cell by cell.
    A cell of the reference that did not run is a difference too (the check would otherwise
    pass by running less)."""
    now = {r.cell: r for r in current}
    out: list[Difference] = []
    for ref in sorted(reference, key=lambda r: r.cell):
        cur = now.get(ref.cell)
        if cur is None:
            out.append(Difference(ref.cell, "(cell)", "present", "not run", "missing", "-"))
            continue
        if cur.pipeline_sha256 != ref.pipeline_sha256:
            out.append(Difference(ref.cell, "pipeline data", ref.pipeline_sha256[:12], cur.pipeline_sha256[:12],
                                  "profiles or parameters changed: refresh if intended", "equal"))
        if cur.requests_sent != ref.requests_sent:
            out.append(Difference(ref.cell, "requests_sent", str(ref.requests_sent), str(cur.requests_sent),
                                  f"{cur.requests_sent - ref.requests_sent:+d} (the load itself changed)", "equal"))
        for m in METRICS:
            a, b = ref.metrics[m], cur.metrics[m]
            if not TOLERANCES[m].allows(a, b):
                out.append(Difference(ref.cell, m, f"{a:.4g}", f"{b:.4g}", _change(m, a, b), str(TOLERANCES[m])))
    return out


def format_table(rows: Sequence[Mapping[str, str]] | Sequence[Difference], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width table (readable in a CI log without any renderer)."""
    if rows and isinstance(rows[0], Difference):
        columns = ("cell", "metric", "reference", "now", "change", "tolerance")
        rows = [{"cell": str(d.cell), "metric": d.metric, "reference": d.reference, "now": d.now,
                 "change": d.change, "tolerance": d.tolerance} for d in rows]
    columns = list(columns or (rows[0].keys() if rows else []))
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    line = lambda r: "  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip()  # noqa: E731
    return "\n".join([line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns}),
                      *(line(r) for r in rows)])
