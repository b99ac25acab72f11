# Decision time vs pipeline size: the solver benchmark's synthetic sweep (fact 39), small.


rule solver_benchmark:
    """Solve the IPA program on the solver benchmark's synthetic pipelines of 1..max_stages stages
    x 1..max_variants variants per stage, with CBC and HiGHS; one row per solve."""
    input:
        bench=str(Path(workflow.basedir) / "benchmarks/solver/run.py"),
    output:
        "results/solver/decision_times.csv",
    params:
        max_stages=config.get("solver_benchmark", {}).get("max_stages", 1),
        max_variants=config.get("solver_benchmark", {}).get("max_variants", 1),
        repeats=config.get("solver_benchmark", {}).get("repeats", 1),
        code=RUN_CODE,
    log:
        "logs/solver_benchmark.log",
    benchmark:
        "results/benchmarks/solver_benchmark.tsv"
    conda:
        ENV
    script:
        "../scripts/solver_benchmark.py"
