"""Simulator speed: one 1200-s bursty run of a 2-stage pipeline, and the full experiment matrix.

    python benchmarks/simulator/run.py             # single-run figures + the 100-run matrix
    python benchmarks/simulator/run.py --no-matrix # single-run figures only
    python benchmarks/simulator/run.py --profile   # + a cProfile of the simulation alone

Prints: the simulation alone (the backend driven at 10-s steps with a fixed configuration, no
policy), the per-decision solve time, a whole `ipa run` split into decisions and the rest, and
the wall time of 5 pipelines x 4 workloads x 5 policies run on 2 worker processes. Reference
pipelines whose profiles are not measured yet are replaced by the synthetic test pipelines
(said in the output), so the matrix has its full size either way.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic catalogue lives with the test fixtures

from conftest import write_tiny_catalogue  # noqa: E402

from ipa.backends.sim import SimBackend  # noqa: E402
from ipa.errors import ProfileMissing  # noqa: E402
from ipa.pipelines import Pipeline, load_catalogue, load_pipeline  # noqa: E402
from ipa.pipelines.profiles import read_profile_csv  # noqa: E402
from ipa.policies import POLICIES, make_policy  # noqa: E402
from ipa.policies.observation import Observation  # noqa: E402
from ipa.runs import RunSpec, execute  # noqa: E402
from ipa.workloads import WORKLOADS, load_workload  # noqa: E402

REFERENCE = ("video", "audio-qa", "audio-sent", "sum-qa", "nlp")
_TINY_DIR = Path(tempfile.mkdtemp(prefix="ipa-bench-sim-"))
_cache: dict[str, Pipeline] = {}


def pipeline_named(name: str) -> Pipeline:
    if name not in _cache:
        if name.startswith("tiny-"):
            pp, vv, pr = write_tiny_catalogue(_TINY_DIR / f"catalogue-{os.getpid()}")
            _cache[name] = Pipeline(load_catalogue(pp, vv).pipeline(name), read_profile_csv(pr))
        else:
            _cache[name] = load_pipeline(name)
    return _cache[name]


def available(name: str, substitute: str) -> str:
    try:
        load_pipeline(name)
        return name
    except ProfileMissing:
        return substitute


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"load average {load[0]:.2f} at start (the CPU is shared: figures are upper bounds)")


def sim_only(pipeline: Pipeline, times, configuration, seconds: int) -> float:
    """Wall seconds of the simulation alone: the backend driven as the adapter drives it
    (clock steps of 10 s, a monitor read each), with a fixed configuration."""
    started = time.perf_counter()
    b = SimBackend(seed=0)
    b.start(pipeline, configuration, times)
    for t in range(10, seconds, 10):
        b.clock.sleep_until(t)
        b.monitor.read(120)
    b.clock.sleep_until(seconds)
    b.stop()
    return time.perf_counter() - started


def solve_times(pipeline: Pipeline, rates, solver: str) -> list[float]:
    policy = make_policy("ipa", pipeline, solver=solver)
    state, current, out = policy.initial_state(), None, []
    for i, r in enumerate(rates):
        started = time.perf_counter()
        d, state = policy(Observation(i * 10.0, float(r), current), state)
        out.append(time.perf_counter() - started)
        current = d.configuration
    return out


def single_run(name: str, repeats: int, solver: str, profile: bool) -> None:
    pipeline = pipeline_named(name)
    w = load_workload("bursty")
    times = w.send_times(0)
    print(f"\n== one run: pipeline {name} ({len(pipeline.stage_names)} stages), workload bursty, "
          f"{w.duration_s} s, {len(times)} requests")
    policy = make_policy("ipa", pipeline, solver=solver)
    peak = max(w.rates[:10])
    configuration = policy(Observation(0.0, float(w.rates.max()), None), policy.initial_state())[0].configuration
    sims = [sim_only(pipeline, times, configuration, w.duration_s) for _ in range(repeats)]
    print(f"simulation alone (fixed configuration for the bursty peak): best {min(sims):.3f} s, "
          f"median {statistics.median(sims):.3f} s over {repeats} -> {w.duration_s / min(sims):,.0f}x real time, "
          f"{len(times) / min(sims):,.0f} requests/s")
    peaks = [w.rates[max(0, i - 10):i].max() if i else peak for i in range(0, w.duration_s, 10)]
    for s in ("cbc", "highs"):
        ts = solve_times(pipeline, peaks, s)
        print(f"decision (ipa policy, solver {s}): median {1000 * statistics.median(ts):.1f} ms, "
              f"p99 {1000 * sorted(ts)[int(0.99 * (len(ts) - 1))]:.1f} ms, {len(ts)} decisions = {sum(ts):.2f} s per run")
    walls = []
    for i in range(repeats):
        out = _TINY_DIR / f"single-{name}-{i}"
        started = time.perf_counter()
        execute(RunSpec(name, "ipa", workload="bursty", solver=solver), out, pipeline=pipeline)
        wall = time.perf_counter() - started
        decide = sum(float(line.split(",")[1]) for line in (out / "decision_times.csv").read_text().splitlines()[1:])
        walls.append((wall, decide))
    wall, decide = min(walls)
    print(f"whole `ipa run` (policy ipa, solver {solver}, predictor lstm): best {wall:.2f} s = "
          f"{decide:.2f} s deciding + {wall - decide:.2f} s simulating, adapting and writing the folder")
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        sim_only(pipeline, times, configuration, w.duration_s)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def _matrix_cell(cell):
    name, workload, policy, solver = cell
    pipeline = pipeline_named(name)
    out = _TINY_DIR / f"m-{name}-{workload}-{policy}"
    started = time.perf_counter()
    s = execute(RunSpec(name, policy, workload=workload, solver=solver), out, pipeline=pipeline, force=True)
    return cell, time.perf_counter() - started, s["requests_sent"], s["sla_violation_rate"]


def matrix(workers: int, solver: str) -> None:
    names = [available(n, ("tiny-video", "tiny-audio")[i % 2]) for i, n in enumerate(REFERENCE)]
    substituted = [f"{a}->{b}" for a, b in zip(REFERENCE, names) if a != b]
    cells = [(n, w, p, solver) for n in names for w in WORKLOADS for p in POLICIES]
    print(f"\n== matrix: {len(names)} pipelines x {len(WORKLOADS)} workloads x {len(POLICIES)} policies = "
          f"{len(cells)} runs on {workers} worker processes, solver {solver}")
    if substituted:
        print(f"(not profiled yet, replaced by synthetic pipelines: {', '.join(substituted)})")
    started = time.perf_counter()
    with get_context("spawn").Pool(workers) as pool:  # HiGHS threads do not survive a fork
        results = pool.map(_matrix_cell, cells, chunksize=1)
    wall = time.perf_counter() - started
    per_run = [r[1] for r in results]
    print(f"matrix wall time: {wall:.1f} s ({wall / 60:.2f} min); per run median {statistics.median(per_run):.2f} s, "
          f"max {max(per_run):.2f} s; {sum(r[2] for r in results):,} requests simulated")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default=None, help="the single-run pipeline (default video, else tiny-video)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--solver", choices=("cbc", "highs"), default="cbc")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-matrix", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the simulation alone")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    single_run(args.pipeline or available("video", "tiny-video"), args.repeats, args.solver, args.profile)
    if not args.no_matrix:
        matrix(args.workers, args.solver)
    return 0


if __name__ == "__main__":
    sys.exit(main())
