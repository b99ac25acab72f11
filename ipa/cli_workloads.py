"""`ipa workloads`: list the named workloads; `ipa workloads show NAME|--trace FILE`: one in full."""
from __future__ import annotations

import json
import sys


from ipa.errors import ConfigError
from ipa.workloads import SYNTHETIC, WORKLOADS, load_trace, load_workload


def add_parser(sub) -> None:
    p = sub.add_parser("workloads", help="list the trace patterns, or show one workload")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="workload name (with `show`), e.g. bursty or sine-15-10-300")
    p.add_argument("--trace", help="a `second,rps` CSV to show instead of a named workload")
    p.add_argument("--duration", type=int, default=None, help="seconds (synthetic default 1200)")
    p.add_argument("--csv", action="store_true", help="with `show`: print the per-second rates as second,rps")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def stats(w) -> dict:
    r = w.rates
    return {"workload": w.name, "duration_s": w.duration_s, "rps_min": float(r.min()),
            "rps_max": float(r.max()), "rps_mean": round(float(r.mean()), 3),
            "requests": round(w.expected_requests, 3), "provenance": w.provenance}


def run(args) -> int:
    if args.action == "list":
        rows = [stats(load_workload(n)) for n in WORKLOADS]
        if args.json:
            print(json.dumps({"workloads": rows, "synthetic": list(SYNTHETIC)}, indent=2))
            return 0
        print(f"{'workload':<12} {'seconds':>7} {'RPS min-max':>12} {'mean':>6} {'requests':>9}")
        for r in rows:
            print(f"{r['workload']:<12} {r['duration_s']:>7} {r['rps_min']:>5g} - {r['rps_max']:<4g} "
                  f"{r['rps_mean']:>6.1f} {r['requests']:>9,.0f}")
        print(f"synthetic: {', '.join(SYNTHETIC)} (e.g. constant-10, step-5-20, ramp-0-30, sine-15-10-300)")
        return 0
    if args.trace:
        w = load_trace(args.trace)
    elif args.name:
        w = load_workload(args.name, duration=args.duration)
    else:
        raise ConfigError("`ipa workloads show` needs a workload name or --trace FILE; see `ipa workloads list`")
    if args.csv:
        out = sys.stdout
        out.write("second,rps\n")
        out.writelines(f"{i},{v:g}\n" for i, v in enumerate(w.rates))
        return 0
    s = stats(w)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{s['workload']}: {s['duration_s']} s, {s['rps_min']:g}-{s['rps_max']:g} RPS, "
          f"mean {s['rps_mean']:.2f}, {s['requests']:,.0f} requests")
    print(f"  provenance: {s['provenance']}")
    # one line per minute: the mean and the peak, so the shape is visible in a terminal
    for m in range(0, w.duration_s, 60):
        block = w.rates[m:m + 60]
        bar = "#" * int(round(block.max()))
        print(f"  {m // 60:>3} min  mean {block.mean():6.1f}  peak {block.max():6.1f}  {bar}")
    return 0
