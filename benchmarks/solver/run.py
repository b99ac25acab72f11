"""Decision time of the IPA optimiser (build the ILP, solve, decode) with CBC and HiGHS.

Two suites, like the paper's Figure 13 (fact 39):

* reference: every reference pipeline whose profiles exist, driven like the control loop over a
  sweep of rates up and back down, each decision given the previous one as the current
  configuration (so the fewest-changes second solve runs when the answer moves);
* synthetic: pipelines of 1..9 stages x 1..9 variants, each stage a clone of one profiled
  stage (ResNet-18 on 224x224 at 1 core, batches 1-8), variant k slower by 1.25^k, more
  accurate and with more base cores, solved at three rates.

Plus a small comparison of the two exact PAS linearisations where both apply.

    python benchmarks/solver/run.py            # full default run (a few minutes)
    python benchmarks/solver/run.py --quick    # smoke run, a few seconds

Writes benchmarks/solver/results.csv and the results section of benchmarks/solver/README.md.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import pulp

import ipa.optimizer.model as model_module
from ipa.errors import ProfileMissing
from ipa.optimizer import Option, Problem, StageOptions, pas_formulation, problem_from_pipeline, solve
from ipa.pipelines import load_catalogue, load_pipeline
from ipa.pipelines.profiles import default_profile_path, load_profiles

HERE = Path(__file__).resolve().parent
REFERENCE = ("video", "audio-qa", "audio-sent", "sum-qa", "nlp")
SOLVERS = ("cbc", "highs")
SWEEP = (1, 2, 4, 8, 12, 16, 20, 25, 30, 34, 40)
TEMPLATE_KEY = "microsoft/resnet-18@image-224x224"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def timed(problem: Problem, solver: str):
    started = time.perf_counter()
    decision = solve(problem, solver, time_limit_s=30)
    return time.perf_counter() - started, decision


def standin_problem(spec, rate: float, template: dict) -> Problem:
    """A reference pipeline's shape (stages, variants with their published accuracies, batching
    cap, weights) with the template's latency, variant k of a stage (by accuracy) 1.25^k slower."""
    stages, sla = [], 0.0
    cap = int(spec.params["batching_cap"])
    for stage in spec.stages:
        ordered = stage.by_accuracy
        options = []
        for k, v in enumerate(ordered):
            for b, (latency, throughput) in sorted(template.items()):
                if b <= cap:
                    options.append(Option(v.name, b, 1 + k // 3, latency * 1.25 ** k, throughput / 1.25 ** k,
                                          v.accuracy, k / (len(ordered) - 1) if len(ordered) > 1 else 1.0))
        stages.append(StageOptions(stage.name, tuple(options)))
        sla += float(spec.params["sla_factor"]) * statistics.mean(template[1][0] * 1.25 ** k for k in range(len(ordered)))
    p = spec.params
    return Problem(tuple(stages), rate, sla, float(p["alpha"]), float(p["beta"]), float(p["gamma"]),
                   int(p["scaling_cap"]), str(p["accuracy_method"]))


def reference_suite(passes: int, rows: list, notes: list, template: dict) -> None:
    catalogue = load_catalogue()
    for name in REFERENCE:
        suite = "reference"
        try:
            pipeline = load_pipeline(name, catalogue=catalogue)
            make = lambda rate, current: problem_from_pipeline(pipeline, rate, current=current)  # noqa: E731
        except ProfileMissing as e:
            notes.append(f"{name}: not profiled yet ({e}); timed on a stand-in of its shape instead")
            suite = "reference-standin"
            spec = catalogue.pipeline(name)
            make = lambda rate, current: replace(standin_problem(spec, rate, template), current=current)  # noqa: E731
        for solver in SOLVERS:
            current = None
            for _ in range(passes):
                for rate in SWEEP + tuple(reversed(SWEEP[:-1])):
                    problem = make(rate, current)
                    seconds, d = timed(problem, solver)
                    current = d.configuration
                    rows.append(dict(suite=suite, pipeline=name, stages=len(problem.stages),
                                     variants=max(len({o.variant for o in s.options}) for s in problem.stages),
                                     solver=solver, formulation=pas_formulation(problem), rate_rps=rate,
                                     decision_time_s=seconds, feasible=d.feasible,
                                     solves=d.extra.get("solves", 0)))


def template_rows() -> tuple[dict[int, tuple[float, float]], str]:
    """batch -> (p99 latency, throughput) of the template stage at 1 core, and its source."""
    try:
        table = load_profiles()
        rows = {r.batch: (r.latency_p99_s, r.throughput_rps) for r in table.rows(TEMPLATE_KEY) if r.cores == 1}
        if rows:
            return rows, f"{TEMPLATE_KEY} at 1 core from {default_profile_path().name}"
    except ProfileMissing:
        pass
    # Only if the profile is missing: made-up numbers of the same shape (clearly not a measurement).
    return ({1: (0.044, 25.6), 2: (0.058, 35.3), 4: (0.101, 39.9), 8: (0.226, 37.0)},
            "made-up numbers shaped like ResNet-18 (its profile was missing)")


def synthetic_problem(stages: int, variants: int, rate: float, template: dict) -> Problem:
    options = []
    for k in range(variants):
        slow = 1.25 ** k
        accuracy = 0.60 + 0.35 * (1 - 0.7 ** (k + 1))
        cores = 1 + k // 3
        for b, (latency, throughput) in sorted(template.items()):
            options.append(Option(f"v{k}", b, cores, latency * slow, throughput / slow, accuracy,
                                  k / (variants - 1) if variants > 1 else 1.0))
    stage_sla = 5 * statistics.mean(template[1][0] * 1.25 ** k for k in range(variants))
    return Problem(stages=tuple(StageOptions(f"s{i}", tuple(options)) for i in range(stages)),
                   rate_rps=rate, sla_s=stages * stage_sla, alpha=2.0, beta=1.0, gamma=1e-6,
                   scaling_cap=100)


def synthetic_suite(sizes: range, rates: tuple, rows: list, template: dict) -> None:
    for solver in SOLVERS:
        for s in sizes:
            for v in sizes:
                for rate in rates:
                    problem = synthetic_problem(s, v, rate, template)
                    seconds, d = timed(problem, solver)
                    rows.append(dict(suite="synthetic", pipeline=f"synthetic-{s}x{v}", stages=s, variants=v,
                                     solver=solver, formulation=pas_formulation(problem), rate_rps=rate,
                                     decision_time_s=seconds, feasible=d.feasible, solves=d.extra.get("solves", 0)))


def formulation_suite(sizes: list, rates: tuple, rows: list, template: dict) -> None:
    default_limit = model_module.COMBINATION_LIMIT
    """Both exact PAS linearisations on sizes where the combinations one still applies."""
    for solver in SOLVERS:
        for s, v in sizes:
            for limit, label in ((10 ** 12, "combinations"), (0, "chain")):
                model_module.COMBINATION_LIMIT = limit
                try:
                    for rate in rates:
                        problem = synthetic_problem(s, v, rate, template)
                        seconds, d = timed(problem, solver)
                        rows.append(dict(suite="formulation", pipeline=f"synthetic-{s}x{v}", stages=s, variants=v,
                                         solver=solver, formulation=label, rate_rps=rate, decision_time_s=seconds,
                                         feasible=d.feasible, solves=d.extra.get("solves", 0)))
                finally:
                    model_module.COMBINATION_LIMIT = default_limit


def p90(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)]


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    from importlib.metadata import version
    return (f"{model}, {os.cpu_count()} cores visible; Python {platform.python_version()}, PuLP {pulp.__version__} "
            f"(bundled CBC), highspy {version('highspy')}; 1-min load average at start {load:.2f}")


def report(rows: list, notes: list, template_source: str, started: str, elapsed: float, args) -> str:
    out = [f"Measured {started} on {machine()}.",
           f"Command: `python benchmarks/solver/run.py{' --quick' if args.quick else ''}`; "
           f"total run time {elapsed:.0f} s. Decision time = build the model + solve + decode, wall clock.", ""]
    ref = [r for r in rows if r["suite"].startswith("reference")]
    out += ["### Reference pipelines (target: median < 50 ms)", "",
            f"Rates swept up and down over {', '.join(map(str, SWEEP))} rps, each decision starting "
            "from the previous configuration. Profiles: `measured` = the committed reference profiles; "
            f"`stand-in` = the pipeline's shape (stages, variants and their published accuracies, batching "
            f"cap, weights) with latencies cloned from {template_source}, used while it is not profiled.", "",
            "| pipeline | profiles | solver | PAS formulation | decisions | infeasible | 2nd solves | median ms | p90 ms | max ms |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name in REFERENCE:
        for solver in SOLVERS:
            sel = [r for r in ref if r["pipeline"] == name and r["solver"] == solver]
            if not sel:
                continue
            t = [r["decision_time_s"] for r in sel]
            kind = "measured" if sel[0]["suite"] == "reference" else "stand-in"
            out.append(f"| {name} | {kind} | {solver} | {sel[0]['formulation']} | {len(sel)} | "
                       f"{sum(not r['feasible'] for r in sel)} | {sum(r['solves'] == 2 for r in sel)} | "
                       f"{ms(statistics.median(t))} | {ms(p90(t))} | {ms(max(t))} |")
    if notes:
        out.append("")
    for n in notes:
        out.append(f"- {n}")
    syn = [r for r in rows if r["suite"] == "synthetic"]
    if syn:
        sizes = sorted({r["stages"] for r in syn})
        out += ["", "### Synthetic pipelines, stages x variants (target: < 1 s at 9 x 9)", "",
                f"Each stage a clone of {template_source}; rates {', '.join(map(str, args.rates))} rps; "
                "cells: median decision time in ms over the rates (`*`: PAS by the chain linearisation, "
                f"more than {model_module.COMBINATION_LIMIT} variant combinations; otherwise by combinations). "
                "Paper (Gurobi, fact 39): 0.136 s at 2 stages x 5 variants, 2.22 s at 9 x 9.", ""]
        for solver in SOLVERS:
            out += [f"**{solver}** (rows: stages, columns: variants)", "",
                    "| stages \\ variants | " + " | ".join(map(str, sizes)) + " |",
                    "|---" * (len(sizes) + 1) + "|"]
            for s in sizes:
                cells = []
                for v in sizes:
                    sel = [r for r in syn if r["solver"] == solver and r["stages"] == s and r["variants"] == v]
                    mark = "*" if sel[0]["formulation"] == "chain" else ""
                    cells.append(f"{ms(statistics.median(r['decision_time_s'] for r in sel))}{mark}")
                out.append(f"| {s} | " + " | ".join(cells) + " |")
            big = [r["decision_time_s"] for r in syn if r["solver"] == solver and r["stages"] == max(sizes)
                   and r["variants"] == max(sizes)]
            out += ["", f"{solver} at {max(sizes)} x {max(sizes)}: median {ms(statistics.median(big))} ms, "
                        f"max {ms(max(big))} ms.", ""]
    form = [r for r in rows if r["suite"] == "formulation"]
    if form:
        out += ["### The two exact PAS linearisations", "",
                "| size | solver | combinations: median ms | chain: median ms |", "|---|---|---|---|"]
        for size in sorted({(r["stages"], r["variants"]) for r in form}):
            for solver in SOLVERS:
                med = {label: statistics.median(r["decision_time_s"] for r in form if r["solver"] == solver and
                                                (r["stages"], r["variants"]) == size and r["formulation"] == label)
                       for label in ("combinations", "chain")}
                out.append(f"| {size[0]} x {size[1]} ({size[1] ** size[0]} combinations) | {solver} | "
                           f"{ms(med['combinations'])} | {ms(med['chain'])} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: sizes 1-3, one pass")
    parser.add_argument("--passes", type=int, default=2, help="sweeps per reference pipeline and solver")
    parser.add_argument("--max-size", type=int, default=9, help="largest synthetic stages/variants")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for results.csv and README.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.passes, args.max_size = 1, 3
    args.rates = (5, 20, 50)
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.perf_counter()
    rows: list[dict] = []
    notes: list[str] = []
    template, source = template_rows()
    reference_suite(args.passes, rows, notes, template)
    synthetic_suite(range(1, args.max_size + 1), args.rates, rows, template)
    formulation_suite([(2, 5), (3, 5), (4, 4), (3, 9), (4, 6)] if not args.quick else [(2, 3)], args.rates, rows, template)
    elapsed = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    text = report(rows, notes, source, started, elapsed, args)
    print(text)
    readme = args.out / "README.md"
    body = readme.read_text() if readme.exists() else f"# Solver benchmark\n\n{BEGIN}\n{END}\n"
    head, _, rest = body.partition(BEGIN)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
