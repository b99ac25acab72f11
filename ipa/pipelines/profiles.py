"""Profiles: how fast each variant is, per batch size and core count.

Two layers of files:

* ``data/profiles/<slug>.json``: one file per profile key (variant @ input shape), written by
  ``ipa profile``; the raw measurements (every repetition) and their provenance.
* ``data/profiles.csv``: the assembled table every other part reads, one row per
  (key, batch, cores). A row at a measured thread count is measured; a row at a core count not
  measured (4, 8 and 16 on a 2-core machine) comes from the family scaling model
  (:mod:`ipa.pipelines.scaling`) anchored on the key's own measurement. ``source`` says which,
  ``model`` by which model and parameters, and ``ci_low_s`` / ``ci_high_s`` bound the median.

Every table is checked against the physical invariants (:mod:`ipa.pipelines.invariants`) when
it is read: a file that breaks one does not load.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ipa.errors import CatalogueError, ProfileMissing
from ipa.pipelines import invariants, scaling
from ipa.pipelines.catalogue import DATA, csv_rows

PROFILE_COLUMNS = (
    "key", "batch", "cores", "latency_p50_s", "latency_p99_s", "latency_mean_s",
    "latency_std_s", "throughput_rps", "peak_memory_mb", "load_time_s", "source",
)
# Written always; optional when read (a hand-made table may leave them out: no interval known,
# model = source).
PROVENANCE_COLUMNS = ("ci_low_s", "ci_high_s", "model")
MODELLED_CORES = (1, 2, 4, 8, 16)  # every table has these; the ones not measured are modelled
SOURCES = ("measured", "modelled")
# How far a median may move when the same key is measured again on the same host, quiet
# (benchmarks/profiles/repeat.py holds the committed profiles to it; it measured at most 4.9 %).
# More than this between a profile and a run means another host, or a loaded one.
REPEATABILITY_LIMIT = 0.10


@dataclass(frozen=True)
class ProfileRow:
    key: str
    batch: int
    cores: int
    latency_p50_s: float
    latency_p99_s: float
    latency_mean_s: float
    latency_std_s: float
    throughput_rps: float
    peak_memory_mb: float
    load_time_s: float
    source: str
    ci_low_s: float = 0.0   # 95 % interval of the median (0: unknown)
    ci_high_s: float = 0.0
    model: str = "measured"  # "measured", or the scaling model and parameters that made the row

    def latency(self, statistic: str) -> float:
        return {"p50": self.latency_p50_s, "p99": self.latency_p99_s, "mean": self.latency_mean_s}[statistic]


class ProfileTable:
    """Lookup of profile rows by (key, batch, cores)."""

    def __init__(self, rows: Iterable[ProfileRow]):
        self._rows: dict[tuple[str, int, int], ProfileRow] = {}
        for r in rows:
            self._rows[(r.key, r.batch, r.cores)] = r

    def __len__(self) -> int:
        return len(self._rows)

    def keys(self) -> set[str]:
        return {k for (k, _, _) in self._rows}

    def rows(self, key: str | None = None) -> list[ProfileRow]:
        return sorted((r for r in self._rows.values() if key is None or r.key == key),
                      key=lambda r: (r.key, r.batch, r.cores))

    def get(self, key: str, batch: int, cores: int) -> ProfileRow:
        try:
            return self._rows[(key, batch, cores)]
        except KeyError:
            if key not in self.keys():
                raise ProfileMissing(f"no profile for {key!r}; run `ipa profile` for it") from None
            have = sorted({(b, c) for (k, b, c) in self._rows if k == key})
            raise ProfileMissing(f"profile of {key!r} has no row for batch {batch} at {cores} cores; "
                                 f"it has (batch, cores) {have}") from None

    def batches(self, key: str) -> list[int]:
        return sorted({b for (k, b, _) in self._rows if k == key})

    def cores(self, key: str) -> list[int]:
        return sorted({c for (k, _, c) in self._rows if k == key})


def _num(row: Mapping[str, str], name: str, where: str, *, integer: bool = False) -> float:
    text = row.get(name)
    try:
        value = int(text) if integer else float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CatalogueError(f"{where}: field {name!r} must be {'an integer' if integer else 'a number'}, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise CatalogueError(f"{where}: field {name!r} must be finite and non-negative, got {text!r}")
    return value


def read_profile_csv(path: Path, check: bool = True) -> ProfileTable:
    """Read a profile table; with ``check`` (always, outside tests of the checker itself) a
    table that breaks a physical invariant raises, naming the file, the row and the invariant."""
    rows = []
    row_numbers: dict[tuple[str, int, int], int] = {}
    for row_no, raw in csv_rows(path, PROFILE_COLUMNS):
        where = f"{path}, row {row_no}"
        if not (raw.get("key") or "").strip():
            raise CatalogueError(f"{where}: field 'key' is empty")
        if raw["source"] not in SOURCES:
            raise CatalogueError(f"{where}: field 'source' must be one of {SOURCES}, got {raw['source']!r}")
        r = ProfileRow(
            key=raw["key"], batch=int(_num(raw, "batch", where, integer=True)),
            cores=int(_num(raw, "cores", where, integer=True)),
            latency_p50_s=_num(raw, "latency_p50_s", where), latency_p99_s=_num(raw, "latency_p99_s", where),
            latency_mean_s=_num(raw, "latency_mean_s", where), latency_std_s=_num(raw, "latency_std_s", where),
            throughput_rps=_num(raw, "throughput_rps", where), peak_memory_mb=_num(raw, "peak_memory_mb", where),
            load_time_s=_num(raw, "load_time_s", where), source=raw["source"],
            ci_low_s=_num(raw, "ci_low_s", where) if raw.get("ci_low_s") not in (None, "") else 0.0,
            ci_high_s=_num(raw, "ci_high_s", where) if raw.get("ci_high_s") not in (None, "") else 0.0,
            model=(raw.get("model") or "").strip() or raw["source"],
        )
        if r.batch < 1 or r.cores < 1:
            raise CatalogueError(f"{where}: batch and cores must be >= 1, got batch {r.batch}, cores {r.cores}")
        if r.latency_p50_s <= 0 or r.latency_mean_s <= 0 or r.latency_p99_s <= 0:
            raise CatalogueError(f"{where}: latencies must be positive")
        if (r.key, r.batch, r.cores) in row_numbers:
            raise CatalogueError(f"{where}: duplicate row for {r.key} batch {r.batch} cores {r.cores} "
                                 f"(first at row {row_numbers[(r.key, r.batch, r.cores)]})")
        row_numbers[(r.key, r.batch, r.cores)] = row_no
        rows.append(r)
    if check:
        violations = invariants.check(rows)
        if violations:
            lines = [f"{path}, row {row_numbers[(v.key, *v.row)]}: {v}" for v in violations]
            raise CatalogueError(f"{path}: {len(violations)} physical-invariant violation(s) (a measurement error: "
                                 "re-measure with `ipa profile --redo-suspect`):\n  " + "\n  ".join(lines))
    return ProfileTable(rows)


def write_profile_csv(table: ProfileTable, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PROFILE_COLUMNS + PROVENANCE_COLUMNS)
        for r in table.rows():
            w.writerow([r.key, r.batch, r.cores] + [f"{getattr(r, c):.6g}" for c in PROFILE_COLUMNS[3:10]]
                       + [r.source, f"{r.ci_low_s:.6g}", f"{r.ci_high_s:.6g}", r.model])
    tmp.replace(path)


def default_profile_path() -> Path:
    return Path(str(DATA / "profiles.csv"))


def default_measurement_dir() -> Path:
    return Path(str(DATA / "profiles"))


def load_profiles(path: Path | None = None) -> ProfileTable:
    path = Path(path) if path else default_profile_path()
    if not path.exists():
        raise ProfileMissing(f"{path} does not exist; run `ipa profile` to measure the variants")
    return read_profile_csv(path)


# --- assembly from the per-key measurement files -------------------------------------------

def default_points_path() -> Path:
    return Path(str(DATA / "scaling_points.csv"))


def _measured_cells(doc: Mapping) -> dict[tuple[int, int], Mapping]:
    return {(int(m["batch"]), int(m["threads"])): m for m in doc["measurements"]}


def measured_curves(docs: Iterable[Mapping]) -> dict[str, list[list[tuple[int, float]]]]:
    """Per family, the (cores, p50) curve of every (key, batch) measured at 2+ thread counts."""
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for doc in docs:
        cells = _measured_cells(doc)
        for batch in sorted({b for b, _ in cells}):
            curve = sorted((c, float(cells[(b, c)]["latency_p50_s"])) for b, c in cells if b == batch)
            if len(curve) >= 2:
                curves.setdefault(doc.get("family") or doc["key"], []).append(curve)
    return curves


def rows_from_measurement(doc: Mapping, fit: "scaling.FamilyFit | None",
                          cores_wanted: Iterable[int] = MODELLED_CORES) -> list[ProfileRow]:
    """Profile rows of one key: every measured cell, and a modelled row at each wanted core
    count not measured, anchored on the largest measured count below it (or the smallest
    above, when none is below)."""
    key = doc["key"]
    load_time = float(doc["load_time_s"])
    cells = _measured_cells(doc)
    rows: list[ProfileRow] = []
    for (batch, threads), m in sorted(cells.items()):
        rows.append(ProfileRow(key, batch, threads, m["latency_p50_s"], m["latency_p99_s"], m["latency_mean_s"],
                               m["latency_std_s"], batch / m["latency_mean_s"], m["peak_memory_mb"], load_time,
                               "measured", float(m.get("ci_low_s", 0.0)), float(m.get("ci_high_s", 0.0)),
                               "measured"))
    if fit is None:
        return rows
    s = fit.serial_fraction
    for batch in sorted({b for b, _ in cells}):
        have = sorted(c for b, c in cells if b == batch)
        for cores in sorted(set(cores_wanted) - set(have)):
            below = [c for c in have if c < cores]
            anchor = max(below) if below else min(have)
            m = cells[(batch, anchor)]
            ratio = scaling.amdahl(s, cores) / scaling.amdahl(s, anchor)
            rows.append(ProfileRow(
                key, batch, cores, m["latency_p50_s"] * ratio, m["latency_p99_s"] * ratio,
                m["latency_mean_s"] * ratio, m["latency_std_s"] * ratio, batch / (m["latency_mean_s"] * ratio),
                m["peak_memory_mb"], load_time, "modelled", float(m.get("ci_low_s", 0.0)) * ratio,
                float(m.get("ci_high_s", 0.0)) * ratio, f"{fit.description} anchor={anchor}"))
    return rows


def read_measurement(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CatalogueError(f"{path}: cannot read measurement file ({e})") from None
    for field in ("key", "load_time_s", "measurements", "provenance"):
        if field not in doc:
            raise CatalogueError(f"{path}: missing field {field!r}")
    return doc


def fit_table(docs: Sequence[Mapping], points_path: Path | None = None) -> tuple[dict, list[ProfileRow]]:
    """Fit the family scaling model to the measurement documents (and the published points);
    return the fits and every row (measured and modelled)."""
    points_path = Path(points_path) if points_path else default_points_path()
    points = scaling.read_points(points_path) if points_path.exists() else []
    published: dict[str, list] = {}
    for (family, _, _), curve in scaling.published_curves(points).items():
        published.setdefault(family, []).append(curve)
    fits = scaling.fit_families(measured_curves(docs), published)
    rows: list[ProfileRow] = []
    for doc in docs:
        rows.extend(rows_from_measurement(doc, fits.get(doc.get("family") or doc["key"])))
    return fits, rows


def assemble(measurement_dir: Path | None = None, out: Path | None = None, *, with_violations: bool = False,
             points_path: Path | None = None):
    """Rebuild ``profiles.csv`` (and ``scaling.json`` beside it: the fitted family model) from
    every measurement file in ``measurement_dir``. Returns the table, and with
    ``with_violations`` also the physical-invariant violations it contains (the table is
    written either way, so a long profile run keeps its progress; loading it then fails until
    the cells are re-measured)."""
    measurement_dir = Path(measurement_dir) if measurement_dir else default_measurement_dir()
    out = Path(out) if out else default_profile_path()
    docs = [read_measurement(p) for p in sorted(measurement_dir.glob("*.json"))]
    fits, rows = fit_table(docs, points_path)
    table = ProfileTable(rows)
    write_profile_csv(table, out)
    fit_doc = {"model": "L(c) = T * (s + (1 - s) / c), s shared per family, bounded "
                        f"[{scaling.S_MIN}, {scaling.S_MAX}]; see ipa/pipelines/scaling.py",
               "families": {f: {"serial_fraction": v.serial_fraction, "basis": v.basis,
                                "measured_curves": v.measured_curves, "published_curves": v.published_curves}
                            for f, v in fits.items()}}
    tmp = out.with_name(f".{out.stem}-scaling.json.tmp")
    tmp.write_text(json.dumps(fit_doc, indent=1) + "\n")
    tmp.replace(out.with_name("scaling.json"))
    if with_violations:
        return table, invariants.check(table.rows())
    return table
