"""The solver benchmark's synthetic sweep (benchmarks/solver/run.py), small: one row per solve."""
import importlib.util
import itertools

import pandas as pd
from _common import logged

with logged(snakemake.log[0]):
    spec = importlib.util.spec_from_file_location("solver_benchmark", snakemake.input.bench)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    p = snakemake.params
    template, source = bench.template_rows()
    print(f"stage template: {source}")
    rows = []
    for solver, stages, variants, rate, repeat in itertools.product(
            bench.SOLVERS, range(1, p.max_stages + 1), range(1, p.max_variants + 1), (5, 20, 50), range(p.repeats)):
        seconds, decision = bench.timed(bench.synthetic_problem(stages, variants, rate, template), solver)
        rows.append({"solver": solver, "stages": stages, "variants": variants, "rate_rps": rate, "repeat": repeat,
                     "solve_time_s": seconds, "feasible": decision.feasible})
    pd.DataFrame(rows).to_csv(snakemake.output[0], index=False)
    print(f"{len(rows)} solves -> {snakemake.output[0]}")
