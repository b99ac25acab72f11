# Aggregation of the run folders into results/summary.csv, and the figures drawn from results/.
# Which runs a figure shows is decided here (params.args); ipa.analysis.figures only draws.


rule summary:
    """Every run of the config in one table; fails if a run folder is partial or its requests
    do not add up."""
    input:
        all_runs(),
    output:
        "results/summary.csv",
    params:
        code=ANALYSIS_CODE,
    log:
        "logs/summary.log",
    conda:
        ENV
    script:
        "../scripts/summary.py"


rule figure_load_patterns:
    input:
        workloads=expand("results/workloads/{workload}.csv", workload=config["workloads"]),
    output:
        **figure_outputs("load_patterns", "load_patterns", "1. Workloads"),
    params:
        code=ANALYSIS_CODE,
        kind="load_patterns",
        workloads=config["workloads"],
    log:
        "logs/figures/load_patterns.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"


rule figure_timeseries:
    input:
        summary="results/summary.csv",
    output:
        **figure_outputs("timeseries/{pipeline}", "timeseries", "2. Time series", pipeline="{pipeline}"),
    params:
        code=ANALYSIS_CODE,
        kind="timeseries",
        args=timeseries_args,
    log:
        "logs/figures/timeseries/{pipeline}.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"


rule figure_summary_bars:
    input:
        summary="results/summary.csv",
    output:
        **figure_outputs("summary_bars", "summary_bars", "3. Summary"),
    params:
        code=ANALYSIS_CODE,
        kind="summary_bars",
        args={"where": matrix_where()},
    log:
        "logs/figures/summary_bars.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"


rule figure_latency_cdf:
    input:
        summary="results/summary.csv",
    output:
        **figure_outputs("latency_cdf", "latency_cdf", "4. Latency"),
    params:
        code=ANALYSIS_CODE,
        kind="latency_cdf",
        args=latency_cdf_args() if "latency_cdf" in config else {},
    log:
        "logs/figures/latency_cdf.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"


rule figure_decision_time:
    input:
        bench="results/solver/decision_times.csv",
    output:
        **figure_outputs("decision_time", "decision_time", "5. Decision time"),
    params:
        code=ANALYSIS_CODE,
        kind="decision_time",
    log:
        "logs/figures/decision_time.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"


rule figure_preference_sweep:
    input:
        summary="results/summary.csv",
    output:
        **figure_outputs("preference_sweep", "preference_sweep", "6. Objective preference"),
    params:
        code=ANALYSIS_CODE,
        kind="preference_sweep",
        args=preference_args() if "preference_sweep" in config else {},
    log:
        "logs/figures/preference_sweep.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"


rule figure_predictor_ablation:
    input:
        summary="results/summary.csv",
    output:
        **figure_outputs("predictor_ablation", "predictor_ablation", "7. Predictor ablation"),
    params:
        code=ANALYSIS_CODE,
        kind="predictor_ablation",
        args=ablation_args() if "predictor_ablation" in config else {},
    log:
        "logs/figures/predictor_ablation.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"


rule figure_fidelity:
    input:
        summary="results/summary.csv",
    output:
        **figure_outputs("fidelity", "fidelity", "8. Simulator fidelity"),
    params:
        code=ANALYSIS_CODE,
        kind="fidelity",
        args=fidelity_args(),
    log:
        "logs/figures/fidelity.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"


rule figure_pareto:
    """Where each policy sits per pipeline (PAS against cores, violations as marker size), the
    oracle's points ringed, the autoscalers' knob sweeps as curves."""
    input:
        summary="results/summary.csv",
    output:
        **figure_outputs("pareto", "pareto", "9. Pareto"),
    params:
        code=ANALYSIS_CODE,
        kind="pareto",
        args=pareto_args(),
    log:
        "logs/figures/pareto.log",
    conda:
        ENV
    script:
        "../scripts/figure.py"
