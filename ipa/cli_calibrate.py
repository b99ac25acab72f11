"""``ipa calibrate``: recompute each pipeline's load scale from the profiles.

    ipa calibrate                      # every pipeline: print the scale the rule gives
    ipa calibrate --pipeline video     # one pipeline
    ipa calibrate --write              # also write the scales into the catalogue (pipelines.yaml)

The rule (README, "Load scale"): FA2-low's mean cores on the bursty window, simulated with seed
0 and the LSTM predictor, equal the paper's FA2-low figure (the pipeline's ``calibration_cores``,
fact 37). A pipeline whose cost staircase has no step within 3 % of its target says by how much
it missed; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="recompute each pipeline's load scale (README: Load scale)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", action="append", metavar="P", help="only pipeline P (repeatable)")
    p.add_argument("--write", action="store_true", help="write the scales into the package's pipelines.yaml")
    p.set_defaults(func=cmd_calibrate)


def write_scales(path: Path, scales: dict[str, float]) -> None:
    """Replace each named pipeline's ``load_scale:`` line in the catalogue, keeping its comment."""
    lines = path.read_text().splitlines(keepends=True)
    current, done = None, set()
    for i, line in enumerate(lines):
        m = re.match(r"^  ([A-Za-z0-9_-]+):\s*$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^(    load_scale:\s*)([^\s#]+)(.*)$", line.rstrip("\n"))
        if m and current in scales:
            lines[i] = f"{m.group(1)}{scales[current]:.4g}{m.group(3)}\n"
            done.add(current)
    missing = sorted(set(scales) - done)
    if missing:
        from ipa.errors import CatalogueError
        raise CatalogueError(f"{path}: no `load_scale:` line for pipeline(s) {missing}")
    path.write_text("".join(lines))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ipa.calibration import RULE, fa2_low_cost, find_scale
    from ipa.errors import CatalogueError
    from ipa.pipelines.catalogue import DATA, load_catalogue

    catalogue = load_catalogue()
    names = args.pipeline or list(catalogue.pipelines)
    results = []
    print(f"rule: {RULE}")
    for name in names:
        spec = catalogue.pipeline(name)
        target = spec.params.get("calibration_cores")
        if target is None:
            raise CatalogueError(f"pipeline {name!r} has no calibration_cores (the paper's FA2-low mean cores)")
        cal = find_scale(name, float(target), lambda k: fa2_low_cost(name, k), start=float(spec.params["load_scale"]))
        results.append(cal)
        tried = ", ".join(f"{k:.4g}->{c:.1f}" for k, c in cal.runs)
        print(f"{name:<11} target {cal.target_cores:>6.1f} cores  load_scale {cal.load_scale:<8.4g} "
              f"cost {cal.achieved_cores:>6.1f} ({cal.miss:+.1%}){'' if cal.met else '  MISSED'}   tried {tried}")
    if args.write:
        write_scales(Path(str(DATA / "pipelines.yaml")), {c.pipeline: c.load_scale for c in results})
        print(f"wrote {len(results)} load scale(s) into {DATA / 'pipelines.yaml'}")
    return 0 if all(c.met for c in results) else 1
