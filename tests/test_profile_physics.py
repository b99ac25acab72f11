"""Profiles that obey physics: cell statistics, the invariant check, the family scaling model,
and the committed reference profiles held to all three."""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ipa.errors import CatalogueError
from ipa.pipelines import invariants, scaling
from ipa.pipelines.profiles import (PROFILE_COLUMNS, ProfileRow, default_points_path, default_profile_path,
                                    load_profiles, read_profile_csv, rows_from_measurement)
from ipa.profiling import stats

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def row(b: int, c: int, lat: float, *, ci: float = 0.0, source: str = "measured") -> ProfileRow:
    return ProfileRow("k", b, c, lat, lat * 1.1, lat, 0.0, b / lat, 1.0, 1.0, source,
                      lat * (1 - ci) if ci else 0.0, lat * (1 + ci) if ci else 0.0)


# --- cell statistics ----------------------------------------------------------------------

def test_median_interval_ranks_match_the_binomial_tables():
    # textbook 95 % distribution-free intervals for the median: n=10 -> (x2, x9), n=20 -> (x6, x15)
    assert stats.median_ci(list(range(1, 11))) == (2, 9)
    assert stats.median_ci(list(range(1, 21))) == (6, 15)
    assert stats.median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few for 95 %: the whole range


def test_median_interval_covers_the_true_median():
    rng = random.Random(7)
    hits, trials = 0, 2000
    for _ in range(trials):
        xs = [math.exp(rng.gauss(0.0, 0.3)) for _ in range(11)]  # lognormal, true median exactly 1
        lo, hi = stats.median_ci(xs)
        hits += lo <= 1.0 <= hi
    assert hits / trials >= 0.94  # nominal >= 0.95; 2000 trials leave about +-0.5 % of noise


def test_judge_flags_drift_spread_and_other_work():
    rng = random.Random(3)
    calm = [1.0 + rng.uniform(-0.01, 0.01) for _ in range(12)]
    assert stats.judge(calm, threads=1, nproc=2).reasons == ()
    drifting = [1.0 + 0.05 * i for i in range(12)]  # the machine slows down by 55 % over the cell
    assert any(r.startswith("trend") for r in stats.judge(drifting, threads=1, nproc=2).reasons)
    spread = [1.0, 1.5, 0.7, 1.4, 0.8, 1.6, 0.75, 1.3, 1.0]
    assert any(r.startswith("spread") for r in stats.judge(spread, threads=1, nproc=2).reasons)
    # a 2-thread cell on a 2-core machine leaves no core free: half a core of other work is too much
    busy = stats.judge(calm, threads=2, nproc=2, other_cpu_s=6.0, wall_s=12.0)
    assert any(r.startswith("other work") for r in busy.reasons)
    # a 1-thread cell leaves one core: a third of a core beside it is fine
    assert stats.judge(calm, threads=1, nproc=2, other_cpu_s=4.0, wall_s=12.0).reasons == ()


# --- physical invariants ------------------------------------------------------------------

def test_each_kind_of_violation_is_found():
    ok = [row(1, 1, 1.0), row(2, 1, 1.8), row(1, 2, 0.6), row(2, 2, 1.0)]
    assert invariants.check(ok) == []
    falls = [row(1, 1, 1.0), row(2, 1, 0.8)]
    assert [(v.invariant, v.row) for v in invariants.check(falls, ["latency_p50_s"])] == [("batch", (2, 1))]
    rises = [row(1, 1, 1.0), row(1, 2, 1.2)]
    assert [(v.invariant, v.row) for v in invariants.check(rises, ["latency_p50_s"])] == [("cores", (1, 2))]
    superlinear = [row(1, 1, 1.0), row(1, 2, 0.4)]  # 2.5x from 2 cores
    assert [(v.invariant, v.row) for v in invariants.check(superlinear, ["latency_p50_s"])] == [("speedup", (1, 2))]
    far = [row(1, 1, 1.0), row(1, 4, 1.0 / 5)]  # 5x from 4 cores, also caught across a gap
    assert [v.invariant for v in invariants.check(far, ["latency_p50_s"])] == ["speedup"]


def test_differences_inside_the_confidence_intervals_are_not_violations():
    # 2 threads 3 % slower than 1, each median known to +-5 %: noise, not physics
    assert invariants.check([row(1, 1, 1.0, ci=0.05), row(1, 2, 1.03, ci=0.05)]) == []
    # 30 % slower is beyond both intervals
    assert invariants.check([row(1, 1, 1.0, ci=0.05), row(1, 2, 1.3, ci=0.05)], ["latency_p50_s"])


def _write(path: Path, rows: list[ProfileRow]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PROFILE_COLUMNS)
        for r in rows:
            w.writerow([r.key, r.batch, r.cores, r.latency_p50_s, r.latency_p99_s, r.latency_mean_s, r.latency_std_s,
                        r.throughput_rps, r.peak_memory_mb, r.load_time_s, r.source])


def test_a_file_that_breaks_an_invariant_fails_loading_with_file_row_and_invariant(tmp_path):
    path = tmp_path / "profiles.csv"
    _write(path, [row(1, 1, 1.0), row(1, 2, 0.6), row(2, 1, 0.9), row(2, 2, 0.7)])
    with pytest.raises(CatalogueError) as e:
        read_profile_csv(path)
    msg = str(e.value)
    assert str(path) in msg and "row 4: k batch 2 cores 1: latency falls as the batch grows" in msg
    assert read_profile_csv(path, check=False).get("k", 2, 1).latency_p50_s == 0.9


# --- the family scaling model -------------------------------------------------------------

def test_fit_recovers_a_shared_serial_fraction():
    curves = [[(c, t * (0.2 + 0.8 / c)) for c in (1, 2)] for t in (0.05, 0.3, 2.0)]
    assert scaling.fit_serial_fraction(curves) == pytest.approx(0.2, abs=0.002)
    # super-linear data cannot push s below its bound, a slowdown cannot push it above
    assert scaling.fit_serial_fraction([[(1, 1.0), (2, 0.4)]]) == scaling.S_MIN
    assert scaling.fit_serial_fraction([[(1, 1.0), (2, 1.2)]]) == scaling.S_MAX


def _doc(cells: dict[tuple[int, int], float]) -> dict:
    ms = [{"batch": b, "threads": t, "latency_p50_s": lat, "latency_p99_s": lat * 1.2, "latency_mean_s": lat,
           "latency_std_s": 0.01, "peak_memory_mb": 10, "ci_low_s": lat * 0.97, "ci_high_s": lat * 1.03}
          for (b, t), lat in cells.items()]
    return {"key": "k", "family": "cnn", "load_time_s": 1.5, "measurements": ms}


def test_modelled_rows_are_anchored_on_the_measurement_and_obey_the_invariants():
    fit = scaling.FamilyFit("cnn", 0.1, "published", 2, 3)
    rows = rows_from_measurement(_doc({(1, 1): 1.0, (1, 2): 0.6, (2, 1): 1.8, (2, 2): 1.0}), fit)
    by = {(r.batch, r.cores): r for r in rows}
    assert {c for b, c in by if b == 1} == {1, 2, 4, 8, 16}
    assert by[(1, 2)].source == "measured" and by[(1, 16)].source == "modelled"
    # from the 2-core anchor: 0.6 * (0.1 + 0.9/16) / (0.1 + 0.9/2)
    assert by[(1, 16)].latency_p50_s == pytest.approx(0.6 * (0.1 + 0.9 / 16) / 0.55)
    assert "family=cnn s=0.100" in by[(1, 16)].model and "anchor=2" in by[(1, 16)].model
    assert invariants.check(rows) == []


def test_a_measured_row_replaces_a_modelled_one():
    fit = scaling.FamilyFit("cnn", 0.1, "published", 2, 3)
    rows = rows_from_measurement(_doc({(1, 1): 1.0, (1, 2): 0.6, (1, 4): 0.4}), fit)
    by = {(r.batch, r.cores): r for r in rows}
    assert by[(1, 4)].source == "measured" and by[(1, 4)].latency_p50_s == 0.4
    assert "anchor=4" in by[(1, 8)].model  # the modelled rows above start from the largest measurement


# --- the committed reference profiles -------------------------------------------------------

def test_committed_profiles_obey_every_invariant_without_exceptions():
    table = load_profiles()  # raises on any violation
    assert invariants.check(table.rows()) == []
    assert {r.source for r in table.rows()} == {"measured", "modelled"}
    for r in table.rows():
        if r.source == "modelled":
            assert r.model.startswith("amdahl family=") and "anchor=" in r.model, r
        else:
            assert r.ci_low_s <= r.latency_p50_s <= r.ci_high_s, r


def test_committed_measurements_are_precise_and_undisturbed():
    from ipa.pipelines.profiles import default_measurement_dir, read_measurement

    for path in sorted(default_measurement_dir().glob("*.json")):
        doc = read_measurement(path)
        assert doc["suspect_blocks"] == 0, f"{path.name}: {doc['suspect_blocks']} suspect cell(s)"
        for m in doc["measurements"]:
            assert m["reps"] >= 5 and not m["reasons"], (path.name, m["batch"], m["threads"], m["reasons"])


def test_scaling_model_error_on_published_points_is_within_25_percent():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "scaling"))
    from validate import validation_rows  # the script that prints the table

    rows = validation_rows(default_profile_path().parent / "profiles", default_points_path())
    assert rows, "no published point to validate against"
    worst = max(rows, key=lambda r: abs(r["fit_error"]))
    assert abs(worst["fit_error"]) <= 0.25, worst


# --- the profiler's interference detector, against a real CPU hog ---------------------------

def cli(*argv: str) -> int:
    from ipa.cli_profile import add_parser

    parser = argparse.ArgumentParser(prog="ipa")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["profile", *argv])
    return args.func(args)


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
def test_a_cpu_hog_during_a_quick_profile_gets_its_cells_flagged(tmp_path):
    out = tmp_path / "profiles"
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        # 25 rounds: a quick model's call takes 1-6 ms on a fast host, and other processes' CPU is
        # read in 10-ms jiffies, so a cell needs some 25-150 ms of calls before a hog shows
        assert cli("--quick", "--out", str(out), "--variant", "microsoft/resnet-18", "--min-reps", "25",
                   "--max-reps", "25") == 0
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    doc = json.loads(next(out.glob("*.json")).read_text())
    flagged = [m for m in doc["measurements"] if any(r.startswith("other work") for r in m["reasons"])]
    assert len(flagged) >= len(doc["measurements"]) // 2, [m["reasons"] for m in doc["measurements"]]
    assert doc["suspect_blocks"] >= len(flagged)  # --quick does not retry: they stay suspect


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
def test_threads_above_the_machine_are_refused_and_the_rest_measured(tmp_path, capsys):
    out = tmp_path / "profiles"
    too_many = (os.cpu_count() or 1) * 4
    assert cli("--quick", "--out", str(out), "--variant", "microsoft/resnet-18", "--threads", "1", str(too_many),
               "--min-reps", "2", "--max-reps", "2") == 0
    assert f"not measuring [{too_many}]" in capsys.readouterr().err
    doc = json.loads(next(out.glob("*.json")).read_text())
    assert {m["threads"] for m in doc["measurements"]} == {1}
    # a later run at another thread count adds its cells and keeps the first run's
    if (os.cpu_count() or 1) >= 2:
        assert cli("--quick", "--out", str(out), "--variant", "microsoft/resnet-18", "--threads", "2",
                   "--min-reps", "2", "--max-reps", "2") == 0
        doc = json.loads(next(out.glob("*.json")).read_text())
        assert {m["threads"] for m in doc["measurements"]} == {1, 2}
        assert all("provenance" in m for m in doc["measurements"] if m["threads"] == 1)
