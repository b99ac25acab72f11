"""Profiles: how fast each variant is, per batch size and core count.

Two layers of files:

* ``data/profiles/<slug>.json``: one file per profile key (variant @ input shape), written by
  ``ipa profile``; the raw measurements (every repetition) and their provenance.
* ``data/profiles.csv``: the assembled table every other part reads, one row per
  (key, batch, cores). Rows at 1 and 2 cores are measured; rows at higher core counts come from
  an Amdahl scaling model fitted per (key, batch) to the 1- and 2-thread latencies, and say so in
  the ``source`` column.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ipa.errors import CatalogueError, ProfileMissing
from ipa.pipelines.catalogue import DATA

PROFILE_COLUMNS = (
    "key", "batch", "cores", "latency_p50_s", "latency_p99_s", "latency_mean_s",
    "latency_std_s", "throughput_rps", "peak_memory_mb", "load_time_s", "source",
)
MODELLED_CORES = (4, 8, 16)
SOURCES = ("measured", "modelled")


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


def read_profile_csv(path: Path) -> ProfileTable:
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PROFILE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogueError(f"{path}: missing column(s) {missing}; expected {list(PROFILE_COLUMNS)}")
        for row_no, raw in enumerate(reader, start=2):
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
            )
            if r.batch < 1 or r.cores < 1:
                raise CatalogueError(f"{where}: batch and cores must be >= 1, got batch {r.batch}, cores {r.cores}")
            if r.latency_p50_s <= 0 or r.latency_mean_s <= 0 or r.latency_p99_s <= 0:
                raise CatalogueError(f"{where}: latencies must be positive")
            rows.append(r)
    return ProfileTable(rows)


def write_profile_csv(table: ProfileTable, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PROFILE_COLUMNS)
        for r in table.rows():
            w.writerow([r.key, r.batch, r.cores] + [f"{getattr(r, c):.6g}" for c in PROFILE_COLUMNS[3:10]] + [r.source])
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

def amdahl_serial_fraction(latency_1: float, latency_2: float) -> float:
    """Serial fraction s of L(c) = L1 * (s + (1 - s) / c), fitted to the 1- and 2-thread latencies.

    Clamped to [0, 1]: a 2-thread run slower than 1 thread means no speed-up (s = 1), and a
    super-linear one is not extrapolated further than perfect scaling (s = 0).
    """
    return min(1.0, max(0.0, 2.0 * latency_2 / latency_1 - 1.0))


def amdahl_latency(latency_1: float, serial_fraction: float, cores: int) -> float:
    return latency_1 * (serial_fraction + (1.0 - serial_fraction) / cores)


def rows_from_measurement(doc: Mapping) -> list[ProfileRow]:
    """Profile rows (measured + modelled) for one measurement file's content."""
    key = doc["key"]
    load_time = float(doc["load_time_s"])
    measured: dict[tuple[int, int], Mapping] = {}
    for m in doc["measurements"]:
        measured[(int(m["batch"]), int(m["threads"]))] = m
    rows: list[ProfileRow] = []
    for (batch, threads), m in sorted(measured.items()):
        rows.append(ProfileRow(key, batch, threads, m["latency_p50_s"], m["latency_p99_s"], m["latency_mean_s"],
                               m["latency_std_s"], batch / m["latency_mean_s"], m["peak_memory_mb"], load_time,
                               "measured"))
    for batch in sorted({b for (b, _) in measured}):
        one, two = measured.get((batch, 1)), measured.get((batch, 2))
        if one is None or two is None:
            continue
        fits = {stat: amdahl_serial_fraction(one[stat], two[stat])
                for stat in ("latency_p50_s", "latency_p99_s", "latency_mean_s")}
        for cores in MODELLED_CORES:
            lat = {stat: amdahl_latency(one[stat], s, cores) for stat, s in fits.items()}
            ratio = lat["latency_mean_s"] / one["latency_mean_s"]
            rows.append(ProfileRow(key, batch, cores, lat["latency_p50_s"], lat["latency_p99_s"], lat["latency_mean_s"],
                                   one["latency_std_s"] * ratio, batch / lat["latency_mean_s"],
                                   two["peak_memory_mb"], load_time, "modelled"))
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


def assemble(measurement_dir: Path | None = None, out: Path | None = None) -> ProfileTable:
    """Rebuild ``profiles.csv`` from every measurement file in ``measurement_dir``."""
    measurement_dir = Path(measurement_dir) if measurement_dir else default_measurement_dir()
    rows: list[ProfileRow] = []
    for path in sorted(measurement_dir.glob("*.json")):
        rows.extend(rows_from_measurement(read_measurement(path)))
    table = ProfileTable(rows)
    write_profile_csv(table, Path(out) if out else default_profile_path())
    return table
