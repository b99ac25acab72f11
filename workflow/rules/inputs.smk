# Inputs every run shares: the trace windows and the profile table the runs use.

ENV = "../envs/ipa.yaml"


rule workload_window:
    """The per-second request rates of one trace window, as the runs and the figures see them."""
    output:
        "results/workloads/{workload}.csv",
    params:
        code=RUN_CODE,
    log:
        "logs/workloads/{workload}.log",
    conda:
        ENV
    script:
        "../scripts/workload_window.py"


rule profiles:
    """The profile table of this experiment: the committed reference profiles (or the config's
    catalogue.profiles), or with `reprofile: true` a fresh `ipa profile` of every pipeline in the
    matrix on this machine. No code fingerprint here: a re-profile takes hours, and the table only
    changes when its input (the committed profiles) or `reprofile` does."""
    input:
        reference=catalogue_paths()["profiles"],
    output:
        "results/profiles/profiles.csv",
    params:
        reprofile=config["reprofile"],
        pipelines=sorted(
            set(config["pipelines"])
            | set(config["live"]["pipelines"])
            | set(config.get("preference_sweep", {}).get("pipelines", []))
            | set(config.get("predictor_ablation", {}).get("pipelines", []))
        ),
    log:
        "logs/profiles.log",
    conda:
        ENV
    script:
        "../scripts/profiles.py"


rule catalogue:
    """The pipeline catalogue a run sees: the packaged one with the config's SLA factor and, for a
    preference of the objective-preference sweep, its alpha/beta weights, or for a setting of the
    autoscaler sweep, its policy option."""
    input:
        reference=catalogue_paths()["pipelines"],
        variants=catalogue_paths()["variants"],
    output:
        "results/catalogue/{weights}/pipelines.yaml",
    params:
        sla_factor=config["sla_factor"],
        overlay=catalogue_overlay,
        code=RUN_CODE,
    log:
        "logs/catalogue/{weights}.log",
    conda:
        ENV
    script:
        "../scripts/catalogue.py"
