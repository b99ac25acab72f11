# One rule per run. `ipa run` writes the whole run folder and its summary.json last, atomically;
# the rules declare summary.json as their output, so a folder without it (an interrupted run)
# never looks complete and is run again.


rule run_sim:
    """One simulated run: discrete-event simulation of the pipeline under one policy."""
    input:
        profiles="results/profiles/profiles.csv",
        catalogue="results/catalogue/{weights}/pipelines.yaml",
        variants=catalogue_paths()["variants"],
    output:
        "results/runs/sim/{pipeline}/{workload}/{duration}s/{policy}/{predictor}/{weights}/seed{seed}/summary.json",
    params:
        backend="sim",
        requests=writes_requests,
        interval_s=config["interval_s"],
        solver=config["solver"],
        code=RUN_CODE,
    log:
        "logs/runs/sim/{pipeline}/{workload}/{duration}s/{policy}/{predictor}/{weights}/seed{seed}.log",
    benchmark:
        "results/benchmarks/runs/sim/{pipeline}/{workload}/{duration}s/{policy}/{predictor}/{weights}/seed{seed}.tsv"
    conda:
        ENV
    script:
        "../scripts/run.py"


rule run_live:
    """One live run: real processes (local) or a cluster (kubernetes). Live runs never overlap:
    each holds the one `cluster` resource. It also takes every core, so that no simulation
    competes with the live processes for the CPU and distorts what the run measures."""
    input:
        profiles="results/profiles/profiles.csv",
        catalogue="results/catalogue/{weights}/pipelines.yaml",
        variants=catalogue_paths()["variants"],
    output:
        "results/runs/{backend}/{pipeline}/{workload}/{duration}s/{policy}/{predictor}/{weights}/seed{seed}/summary.json",
    wildcard_constraints:
        backend="local|kubernetes",
    params:
        backend="{backend}",
        requests=True,
        interval_s=config["interval_s"],
        solver=config["solver"],
        code=RUN_CODE,
    threads: LIVE_THREADS
    resources:
        cluster=1,
    log:
        "logs/runs/{backend}/{pipeline}/{workload}/{duration}s/{policy}/{predictor}/{weights}/seed{seed}.log",
    benchmark:
        "results/benchmarks/runs/{backend}/{pipeline}/{workload}/{duration}s/{policy}/{predictor}/{weights}/seed{seed}.tsv"
    conda:
        ENV
    script:
        "../scripts/run.py"
