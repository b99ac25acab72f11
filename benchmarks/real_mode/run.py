"""A pipeline end to end in `real` mode: full-size architectures (random weights) run every request.

The live backend (router, stage processes, Prometheus, Locust) with ``mode=real`` at a low
rate, adapted by a policy as any run is. Prints the request accounting, the measured
end-to-end latency next to what the optimiser modelled from the profiles, how long each model
took to become ready, and the cores provisioned against the cores this machine has. Exit 0 when
every request is accounted for and none failed, 1 otherwise, 2 on bad input.

    python benchmarks/real_mode/run.py                              # audio-sent, constant-1, 120 s, fa2-low
    python benchmarks/real_mode/run.py --pipeline video
    python benchmarks/real_mode/run.py --trace step.csv --duration 120     # a `second,rps` trace of your own
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from ipa.errors import IpaError
from ipa.runs.experiment import RunSpec, execute


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default="audio-sent")
    ap.add_argument("--workload", default="constant-1", help="a workload name; keep its rate low (default constant-1)")
    ap.add_argument("--trace", type=Path, help="a `second,rps` CSV instead of --workload")
    ap.add_argument("--duration", type=int, default=120)
    # fa2-low: on a 2-core machine the other policies provision more cores than there are even at
    # 1 rps, and `ipa run` refuses them (ipa.runs.capacity)
    ap.add_argument("--policy", default="fa2-low")
    ap.add_argument("--predictor", default="lstm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/real-mode"))
    a = ap.parse_args(argv)
    load = a.trace.stem if a.trace else a.workload
    out = a.out / f"{a.pipeline}-{load}-{a.policy}-{a.duration}s-seed{a.seed}"
    spec = RunSpec(pipeline=a.pipeline, policy=a.policy, workload=None if a.trace else a.workload,
                   trace=str(a.trace) if a.trace else None, predictor=a.predictor, backend="local", seed=a.seed,
                   duration_s=a.duration, backend_options={"mode": "real"})
    print(f"running {a.pipeline} in real mode on {load} for {a.duration} s -> {out}", flush=True)
    try:
        execute(spec, out, force=True, requests=True, argv=sys.argv)
    except IpaError as e:
        print(f"real mode: error: {e}", file=sys.stderr)
        return 2

    import pandas as pd

    s = json.loads((out / "summary.json").read_text())
    decisions = pd.read_csv(out / "decisions.csv")
    accounted = s["requests_on_time"] + s["requests_late"] + s["requests_dropped"] + s["requests_failed"]
    print(f"\nrequests: sent {s['requests_sent']}, on time {s['requests_on_time']}, late {s['requests_late']}, "
          f"dropped {s['requests_dropped']}, failed {s['requests_failed']} (accounted {accounted})")
    print(f"latency, measured: p50 {s['latency_p50_s']:.3f} s, p99 {s['latency_p99_s']:.3f} s; "
          f"SLA {s['params']['sla_s']:.3f} s")
    modelled = decisions.loc[decisions["feasible"].astype(str).str.lower() == "true", "latency_s"]
    if len(modelled):
        print(f"latency, modelled by the optimiser from the profiles: {modelled.min():.3f}-{modelled.max():.3f} s")
    changes = decisions[decisions["applied"].astype(str).str.lower() == "true"]
    for _, row in changes.iterrows():
        stages = json.loads(row["configuration"])
        print(f"t={row['time_s']:g} s: " + ", ".join(f"{k} {v['variant']} b{v['batch']} x{v['replicas']}"
                                                    for k, v in stages.items()))
    for log in sorted((out / "logs").glob("stage-*.log")):
        for m in re.finditer(r"replica \d+ \((.+?)\) ready after ([\d.]+)s", log.read_text()):
            print(f"{log.stem}: {m.group(1)} ready after {m.group(2)} s")
    cores = os.cpu_count() or 1
    print(f"cores provisioned: mean {s['cost_cores_mean']:.2f}, this machine has {cores}"
          + (" (oversubscribed: real latencies exceed the profiled ones)" if s["cost_cores_mean"] > cores else ""))
    ok = accounted == s["requests_sent"] and s["requests_failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
