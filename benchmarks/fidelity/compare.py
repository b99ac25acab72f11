"""Fidelity of the simulator against the live backend: the same run on both, compared.

Same pipeline, workload slice (the first ``--duration`` seconds), policy, predictor and seed;
``sim`` then ``local`` (real processes, Prometheus, Locust). Passes when the SLA-violation rates
are within 2 percentage points, the mean provisioned cores within 10 % and the p99 latencies
within 20 % (of the live value). Prints the comparison; exit code 0 pass, 1 fail, 2 bad input.

    python benchmarks/fidelity/compare.py                     # video, bursty, ipa, 300 s, seed 0
    python benchmarks/fidelity/compare.py --pipeline tiny-video --pipelines-file ... --duration 60

Against real compute (the live replicas run the full-size models, each pinned to a core of its
own; README "Real compute"), at low load and above capacity:

    python benchmarks/fidelity/compare.py --mode real --pipelines-file benchmarks/fidelity/real-compute.yaml \
        --pipeline audio-sent-2core --workload constant-0.5 --duration 120
    python benchmarks/fidelity/compare.py --mode real --pipelines-file benchmarks/fidelity/real-compute.yaml \
        --pipeline audio-sent-2core --workload constant-7 --duration 120       # 1.8x capacity on the 2026-12-04 profiles
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ipa.errors import IpaError
from ipa.runs.experiment import RunSpec, execute

TOLERANCES = {"sla_violation_rate": ("abs", 0.02), "cost_cores_mean": ("rel", 0.10), "latency_p99_s": ("rel", 0.20)}


def compare(sim: dict, live: dict) -> list[tuple[str, float, float, float, float, bool]]:
    """Rows (metric, sim, live, difference, tolerance, within) for the TOLERANCES metrics."""
    rows = []
    for key, (kind, tol) in TOLERANCES.items():
        s, lv = float(sim[key]), float(live[key])
        diff = abs(s - lv) if kind == "abs" else abs(s - lv) / max(abs(lv), 1e-12)
        rows.append((key, s, lv, diff, tol, diff <= tol))
    return rows


def decision_agreement(sim_dir: Path, live_dir: Path) -> tuple[int, int, int]:
    """(steps, steps that observed the same peak rate, steps that chose the same configuration)."""
    import pandas as pd

    sim, live = (pd.read_csv(d / "decisions.csv").set_index("time_s") for d in (sim_dir, live_dir))
    both = pd.merge(sim, live, left_index=True, right_index=True, suffixes=("_sim", "_live"))
    same_obs = ((both["observed_rps_sim"] - both["observed_rps_live"]).abs() < 1e-9) | (
        both["observed_rps_sim"].isna() & both["observed_rps_live"].isna())
    return len(both), int(same_obs.sum()), int((both["configuration_sim"] == both["configuration_live"]).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default="video")
    ap.add_argument("--workload", default="bursty")
    ap.add_argument("--policy", default="ipa")
    ap.add_argument("--predictor", default="lstm")
    ap.add_argument("--duration", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/fidelity"))
    ap.add_argument("--pipelines-file", type=Path)
    ap.add_argument("--variants-file", type=Path)
    ap.add_argument("--profiles-file", type=Path)
    ap.add_argument("--mode", choices=("emulated", "real"), default="emulated",
                    help="the live replicas: hold for a drawn profiled latency, or run the real model")
    a = ap.parse_args(argv)
    try:
        from ipa.pipelines import load_catalogue, load_pipeline

        catalogue = load_catalogue(a.pipelines_file, a.variants_file) if (a.pipelines_file or a.variants_file) else None
        pipeline = load_pipeline(a.pipeline, catalogue=catalogue, profiles_path=a.profiles_file)
        summaries, folders = {}, {}
        for backend in ("sim", "local"):
            spec = RunSpec(pipeline=a.pipeline, policy=a.policy, workload=a.workload, predictor=a.predictor,
                           backend=backend, seed=a.seed, duration_s=a.duration,
                           backend_options={"mode": a.mode} if backend == "local" else {})
            live = f"-{a.mode}" if backend == "local" and a.mode != "emulated" else ""
            out = a.out / f"{a.pipeline}-{a.workload}-{a.policy}-{a.duration}s-seed{a.seed}-{backend}{live}"
            print(f"running {backend} ({a.duration} s{' of wall time' if backend == 'local' else ''}) -> {out}",
                  flush=True)
            execute(spec, out, force=True, requests=True, pipeline=pipeline, argv=sys.argv)
            summaries[backend] = json.loads((out / "summary.json").read_text())
            folders[backend] = out
    except IpaError as e:
        print(f"fidelity: error: {e}", file=sys.stderr)
        return 2
    rows = compare(summaries["sim"], summaries["local"])
    import os
    print(f"\n{a.pipeline} / {a.workload} / {a.policy} / {a.predictor}, first {a.duration} s, seed {a.seed}, "
          f"live mode {a.mode}; load average now {os.getloadavg()}")
    print(f"{'metric':<22}{'sim':>12}{'local':>12}{'difference':>14}{'tolerance':>12}  verdict")
    for key, s, lv, diff, tol, ok in rows:
        kind = TOLERANCES[key][0]
        d = f"{diff * 100:.2f} pp" if kind == "abs" else f"{diff * 100:.1f} %"
        t = f"{tol * 100:.0f} pp" if kind == "abs" else f"{tol * 100:.0f} %"
        print(f"{key:<22}{s:>12.4f}{lv:>12.4f}{d:>14}{t:>12}  {'within' if ok else 'OUTSIDE'}")
    for backend, summ in summaries.items():
        print(f"{backend}: sent {summ['requests_sent']}, on time {summ['requests_on_time']}, late "
              f"{summ['requests_late']}, dropped {summ['requests_dropped']}, failed {summ['requests_failed']}, "
              f"PAS {summ['pas_mean']:.4f}")
    steps, same_obs, same_cfg = decision_agreement(folders["sim"], folders["local"])
    print(f"adaptation steps: {steps}; same observed peak {same_obs}, same configuration chosen {same_cfg}")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
