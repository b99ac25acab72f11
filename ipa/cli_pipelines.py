"""`ipa pipelines`: list the catalogue; `ipa pipelines show NAME`: one pipeline in full."""
from __future__ import annotations

import json

from ipa.pipelines import load_catalogue, load_pipeline


def add_parser(sub) -> None:
    p = sub.add_parser("pipelines", help="list the pipelines, or show one with its profiles")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="pipeline name (with `show`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.action == "list":
        catalogue = load_catalogue()
        rows = [{"pipeline": p.name, "description": p.description,
                 "stages": [{"name": s.name, "variants": len(s.variants)} for s in p.stages]}
                for p in catalogue.pipelines.values()]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                stages = " -> ".join(f"{s['name']}({s['variants']})" for s in r["stages"])
                print(f"{r['pipeline']:<11} {stages:<55} {r['description']}")
        return 0
    if not args.name:
        from ipa.errors import ConfigError
        raise ConfigError("`ipa pipelines show` needs a pipeline name; see `ipa pipelines list`")
    desc = load_pipeline(args.name).describe()
    if args.json:
        print(json.dumps(desc, indent=2))
        return 0
    print(f"{desc['pipeline']}: {desc['description']}")
    print(f"  SLA {desc['sla_s']:.3f} s, drop limit {desc['drop_limit_s']:.3f} s, load scale {desc['load_scale']:g} "
          f"(trace rates x {desc['load_scale']:g}), threshold {desc['threshold_rps']:.3g} RPS "
          f"({desc['params']['threshold_rps']:g} x load scale), batching cap {desc['params']['batching_cap']}")
    modelled: set[str] = set()
    for s in desc["stages"]:
        print(f"  stage {s['name']} ({s['task']}, input {s['input']}), stage SLA {s['sla_s']:.3f} s")
        print(f"    {'variant':<58} {'acc':>6} {'cores':>5} {'load s':>7}  latency p99 per batch (s)")
        for v in s["variants"]:
            lat = " ".join(f"b{r['batch']}={r['latency_p99_s']:.3f}{'*' if r['source'] == 'modelled' else ''}"
                           for r in v["profile"])
            modelled.update(r["model"] for r in v["profile"] if r["source"] == "modelled")
            flag = "" if v["threshold_met"] else "  (threshold not met)"
            print(f"    {v['variant']:<58} {v['accuracy']:>6.3f} {v['base_cores']:>5} {v['load_time_s']:>7.2f}  {lat}{flag}")
    if modelled:
        print("  * modelled, not measured (this machine has fewer cores than the base allocation): "
              + "; ".join(sorted({m.rsplit(' anchor=', 1)[0] for m in modelled}))
              + " (docs/profiles.md)")
    return 0
