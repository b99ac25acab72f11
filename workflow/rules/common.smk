# Helpers shared by the rules: config validation, the run-folder layout, the experiment matrix.
# Only the catalogue loader of `ipa` is imported here (YAML + CSV), so `snakemake -n` stays cheap.

import itertools
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = "../schemas/config.schema.yaml"


def _config_key(path) -> str:
    """`live.pipelines[0]` from jsonschema's path deque."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe_config_error(error) -> str:
    """One line naming the config key, what is wrong, and what would be right."""
    key = _config_key(error.absolute_path)
    if error.validator == "enum":
        return f"config key {key}: {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"config key {key}: unknown key(s) {unknown}; allowed keys: {allowed}"
    if error.validator == "type":
        return f"config key {key}: {error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "required":
        return f"config key {key}: {error.message}"
    return f"config key {key}: {error.message}"


def validate_config(cfg) -> None:
    """Validate against the schema before any job exists; re-raise with a one-line cause."""
    import jsonschema

    try:
        validate(cfg, SCHEMA)
    except WorkflowError as e:
        # snakemake raises it while handling jsonschema's error, which keeps the details
        cause = e.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        raise WorkflowError(f"invalid config: {describe_config_error(cause)}") from None
    _check_consistency(cfg)
    _check_pipelines(cfg)


def catalogue_paths() -> dict:
    """The catalogue files in use: the config's, else the packaged ones."""
    from ipa.pipelines.catalogue import DATA
    from ipa.pipelines.profiles import default_profile_path

    own = config["catalogue"]
    return {
        "pipelines": own["pipelines"] or str(DATA / "pipelines.yaml"),
        "variants": own["variants"] or str(DATA / "variants.csv"),
        "profiles": own["profiles"] or str(default_profile_path()),
    }


def _check_pipelines(cfg) -> None:
    """Every pipeline the config names exists in the catalogue in use."""
    from ipa.errors import IpaError
    from ipa.pipelines import load_catalogue

    paths = catalogue_paths()
    try:
        known = sorted(load_catalogue(paths["pipelines"], paths["variants"]).pipelines)
    except (IpaError, OSError) as e:
        raise WorkflowError(f"invalid config: config key catalogue: {e}") from None
    named = [("pipelines", cfg["pipelines"]), ("live.pipelines", cfg["live"]["pipelines"])]
    for section in ("preference_sweep", "predictor_ablation"):
        if section in cfg:
            named.append((f"{section}.pipelines", cfg[section]["pipelines"]))
    for pref, weights in cfg.get("preference_sweep", {}).get("preferences", {}).items():
        named.append((f"preference_sweep.preferences.{pref}", [k for k in weights if k != "default"]))
    for key, names in named:
        for i, name in enumerate(names):
            if name not in known:
                where = f"{key}[{i}]" if not key.startswith("preference_sweep.preferences") else f"{key}.{name}"
                raise WorkflowError(f"invalid config: config key {where}: {name!r} is not a pipeline of the "
                                    f"catalogue {paths['pipelines']}; allowed values: {known}")


def _check_consistency(cfg) -> None:
    """Cross-key rules the schema cannot express: each requested figure has its inputs."""
    figures = set(cfg["figures"])
    needs = {
        "preference_sweep": "preference_sweep",
        "predictor_ablation": "predictor_ablation",
        "decision_time": "solver_benchmark",
        "latency_cdf": "latency_cdf",
    }
    for figure, key in needs.items():
        if figure in figures and key not in cfg:
            raise WorkflowError(f"invalid config: figure {figure!r} needs the config key {key!r}")
    if "fidelity" in figures and not (cfg["live"]["pipelines"] and cfg["live"]["workloads"] and cfg["live"]["policies"]):
        raise WorkflowError(
            "invalid config: figure 'fidelity' compares live runs with the simulator; "
            "config key live.pipelines/workloads/policies is empty (drop 'fidelity' from figures)"
        )
    _check_sweep(cfg)
    if cfg["reprofile"] and (cfg["catalogue"]["pipelines"] or cfg["catalogue"]["variants"]):
        raise WorkflowError("invalid config: reprofile: true profiles the packaged catalogue; "
                            "config key catalogue.pipelines/variants must be null with it")
    if "latency_cdf" in figures and cfg["latency_cdf"]["workload"] not in cfg["workloads"]:
        raise WorkflowError(
            f"invalid config: latency_cdf.workload {cfg['latency_cdf']['workload']!r} is not in "
            f"workloads {cfg['workloads']}"
        )


def _check_sweep(cfg) -> None:
    """Each autoscaler setting of the sweep is one its policy takes, before any run starts."""
    from ipa.errors import IpaError
    from ipa.policies import policy_options

    for policy, knob in cfg.get("autoscaler_sweep", {}).get("settings", {}).items():
        for value in knob["values"]:
            try:
                policy_options(policy, {knob["option"]: value})
            except IpaError as e:
                raise WorkflowError(f"invalid config: config key autoscaler_sweep.settings.{policy}: {e}") from None
    if "pareto" in cfg["figures"] and "autoscaler_sweep" in cfg:
        missing = [p for p in cfg["autoscaler_sweep"]["settings"] if p not in cfg["policies"]]
        if missing:
            raise WorkflowError(f"invalid config: autoscaler_sweep.settings names {missing}, which the main "
                                f"matrix does not run (policies: {cfg['policies']}): the sweep extends their points")


validate_config(config)

# Live runs share one machine (or one cluster): they must never overlap. The workflow profile
# declares `resources: cluster=1`; this keeps the guarantee when no profile is loaded.
if "cluster" not in workflow.global_resources:
    workflow.register_resource("cluster", 1)
# Snakemake caps a job's threads at --cores: a live run takes the whole machine.
LIVE_THREADS = 1024


# --- which code made a result -------------------------------------------------------------------
# A result made by other code is made again. The rules that run experiments carry a fingerprint
# of the `ipa` package (everything but ipa/analysis), the summary and figure rules one of
# ipa/analysis, as params: Snakemake's params rerun trigger then redoes what a changed simulator,
# policy or plot would change, instead of presenting yesterday's figures as today's.
def package_fingerprints() -> tuple[str, str]:
    """(everything but ipa/analysis, ipa/analysis) of the installed package, in one pass.
    ipa/quality (the regression gate and its reference table) is left out: it reads runs and
    never feeds one, so refreshing the reference must not re-run the workflow."""
    import hashlib
    import importlib.util

    root = Path(importlib.util.find_spec("ipa").origin).parent
    run, analysis = hashlib.sha256(), hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(root)
        if relative.parts[0] == "quality" or relative.as_posix() == "cli_quality.py":
            continue
        h = analysis if relative.parts[0] == "analysis" else run
        for part in (relative.as_posix().encode(), b"\0", path.read_bytes()):
            h.update(part)
    return run.hexdigest()[:16], analysis.hexdigest()[:16]


RUN_CODE, ANALYSIS_CODE = package_fingerprints()


# --- the run-folder layout ---------------------------------------------------------------------
# One folder per run; every parameter that changes the result is a path component, so two
# experiments that need the same run share it (e.g. the ablation's lstm run is the main run).
RUN_DIR = "results/runs/{backend}/{pipeline}/{workload}/{duration}s/{policy}/{predictor}/{weights}/seed{seed}"
DEFAULT_WEIGHTS = "default"  # the catalogue's alpha/beta for the pipeline


wildcard_constraints:
    backend="sim|local|kubernetes",
    duration=r"\d+",
    seed=r"\d+",
    pipeline="[a-z][a-z0-9-]*",
    workload="[a-z][a-z0-9-]*",
    policy="[a-z][a-z0-9-]*",
    predictor="[a-z][a-z0-9-]*",
    weights="[a-z][a-z0-9-]*",


def run_summary(**keys) -> str:
    return f"{RUN_DIR.format(**keys)}/summary.json"


def _runs(backends, pipelines, workloads, durations, policies, predictors, weights):
    return [
        run_summary(backend=b, pipeline=p, workload=w, duration=d, policy=x, predictor=r, weights=g, seed=s)
        for b, p, w, d, x, r, g, s in itertools.product(
            backends, pipelines, workloads, durations, policies, predictors, weights, config["seeds"]
        )
    ]


# The policy whose runs replace the configured predictor: `oracle` is IPA given the true peak,
# and its run folder says so (ipa.policies.PREDICTOR_OF; tests/test_workflow.py checks they agree).
ORACLE = "oracle"


def predictor_of(policy: str) -> str:
    return ORACLE if policy == ORACLE else config["predictor"]


def main_runs():
    """The full matrix on the simulator."""
    return sorted({r for policy in config["policies"]
                   for r in _runs(["sim"], config["pipelines"], config["workloads"], [config["sim"]["duration_s"]],
                                  [policy], [predictor_of(policy)], [DEFAULT_WEIGHTS])})


def live_runs(backend=None):
    """The live subset, on the live backend or (with backend='sim') its simulated twin."""
    live = config["live"]
    return _runs([backend or live["backend"]], live["pipelines"], live["workloads"], [live["duration_s"]],
                 live["policies"], [config["predictor"]], [DEFAULT_WEIGHTS])


def preference_runs():
    if "preference_sweep" not in config["figures"]:
        return []
    sweep = config["preference_sweep"]
    return _runs(["sim"], sweep["pipelines"], [sweep["workload"]], [config["sim"]["duration_s"]],
                 [sweep["policy"]], [config["predictor"]], sorted(sweep["preferences"]))


def ablation_runs():
    """The ablation's predictors under its policy; `oracle` is the oracle policy's run (the same
    thing: IPA given the true peak), so the main matrix's oracle run is shared, never duplicated."""
    if "predictor_ablation" not in config["figures"]:
        return []
    abl = config["predictor_ablation"]
    runs = []
    for predictor in abl["predictors"]:
        policy = ORACLE if predictor == ORACLE else abl["policy"]
        runs += _runs(["sim"], abl["pipelines"], [abl["workload"]], [config["sim"]["duration_s"]],
                      [policy], [predictor], [DEFAULT_WEIGHTS])
    return runs


def sweep_tag(policy: str, option: str, value) -> str:
    """The path component of one autoscaler setting, e.g. hpa-target-utilisation-0p5."""
    return f"{policy}-{option}-{value:g}".replace("_", "-").replace(".", "p")


def sweep_settings() -> dict:
    """tag -> (policy, option, value) of the autoscaler sweep."""
    if "autoscaler_sweep" not in config:
        return {}
    out = {}
    for policy, knob in config["autoscaler_sweep"]["settings"].items():
        for value in knob["values"]:
            out[sweep_tag(policy, knob["option"], value)] = (policy, knob["option"], value)
    return out


def sweep_runs():
    if "pareto" not in config["figures"] or "autoscaler_sweep" not in config:
        return []
    sweep = config["autoscaler_sweep"]
    return [r for tag, (policy, _, _) in sweep_settings().items()
            for r in _runs(["sim"], sweep["pipelines"], [sweep["workload"]], [config["sim"]["duration_s"]],
                           [policy], [config["predictor"]], [tag])]


def all_runs():
    runs = main_runs() + live_runs()
    if "fidelity" in config["figures"]:
        runs += live_runs("sim")
    return sorted(set(runs + preference_runs() + ablation_runs() + sweep_runs()))


def catalogue_overlay(wildcards):
    """What the catalogue of a run's {weights} component sets in every pipeline's entry
    ({"default": ..., pipeline: ...}): a preference's alpha/beta, or one autoscaler setting of the
    sweep (its policy_options); nothing for the catalogue's own ("default")."""
    if wildcards.weights == DEFAULT_WEIGHTS:
        return {}
    prefs = config.get("preference_sweep", {}).get("preferences", {})
    if wildcards.weights in prefs:
        return prefs[wildcards.weights]
    settings = sweep_settings()
    if wildcards.weights in settings:
        policy, option, value = settings[wildcards.weights]
        return {"default": {"policy_options": {policy: {option: value}}}}
    raise WorkflowError(f"{wildcards.weights!r} is neither a preference ({sorted(prefs)}) nor an autoscaler "
                        f"setting ({sorted(settings)}) of the config")


# --- selections the figures draw from results/summary.csv ------------------------------------
def first_seed() -> int:
    return min(config["seeds"])


def main_selection() -> dict:
    # the oracle's runs carry their own predictor; no other policy of the matrix runs with it
    return {"backend": "sim", "duration_s": config["sim"]["duration_s"],
            "predictor": sorted({predictor_of(p) for p in config["policies"]}), "weights": DEFAULT_WEIGHTS}


FIGURES = "results/figures"


def figure_files(name: str) -> list[str]:
    return [f"{FIGURES}/{name}.png", f"{FIGURES}/{name}.pdf"]


def figure_outputs(name, caption, category, **labels):
    """A figure's PNG (in the report, with its caption) and PDF."""
    return dict(
        png=report(f"{FIGURES}/{name}.png", caption=f"../report/{caption}.rst", category=category,
                   labels=labels or None),
        pdf=f"{FIGURES}/{name}.pdf",
    )


def all_figures() -> list[str]:
    out = []
    for name in config["figures"]:
        if name == "timeseries":
            for p in config["pipelines"]:
                out += figure_files(f"timeseries/{p}")
        else:
            out += figure_files(name)
    return out


def all_targets() -> list[str]:
    return ["results/summary.csv"] + all_figures()


def matrix_where() -> dict:
    """The main matrix's runs in results/summary.csv."""
    return {**main_selection(), "pipeline": config["pipelines"], "workload": config["workloads"],
            "policy": config["policies"], "seed": config["seeds"]}


def timeseries_args(wildcards) -> dict:
    return {"pipeline": wildcards.pipeline, "where": matrix_where()}


def writes_requests(wildcards) -> bool:
    """A simulated run keeps one row per request only where a figure reads them: the latency
    CDF's workload (per-request latency, not per-second p99). Elsewhere the time series is enough
    and the folders stay small."""
    return "latency_cdf" in config and wildcards.workload == config["latency_cdf"]["workload"]


def latency_cdf_args() -> dict:
    return {"where": {**matrix_where(), "workload": config["latency_cdf"]["workload"]}}


def preference_args() -> dict:
    sweep = config["preference_sweep"]
    where = {"backend": "sim", "duration_s": config["sim"]["duration_s"],
             "predictor": main_selection()["predictor"],  # the references include the oracle's runs
             "pipeline": sweep["pipelines"], "workload": sweep["workload"], "policy": sweep["policy"],
             "seed": config["seeds"]}
    # the baselines' points on the same plane, where the main matrix ran them on this workload
    in_matrix = sweep["workload"] in config["workloads"] and set(sweep["pipelines"]) <= set(config["pipelines"])
    references = [p for p in config["policies"] if p != sweep["policy"]] if in_matrix else []
    return {"where": where, "preferences": sorted(sweep["preferences"]), "references": references}


def ablation_args() -> dict:
    abl = config["predictor_ablation"]
    where = {"backend": "sim", "duration_s": config["sim"]["duration_s"], "weights": DEFAULT_WEIGHTS,
             "pipeline": abl["pipelines"], "workload": abl["workload"],
             "policy": sorted({ORACLE if r == ORACLE else abl["policy"] for r in abl["predictors"]}),
             "seed": config["seeds"]}
    return {"where": where, "predictors": abl["predictors"]}


def pareto_args() -> dict:
    """The main matrix's points, and the autoscaler sweep's (tag -> policy and knob value)."""
    sweep = {}
    if "autoscaler_sweep" in config:
        sweep = {"where": {"backend": "sim", "duration_s": config["sim"]["duration_s"],
                           "predictor": config["predictor"], "workload": config["autoscaler_sweep"]["workload"],
                           "pipeline": config["autoscaler_sweep"]["pipelines"], "seed": config["seeds"]},
                 "settings": {tag: [policy, option, value] for tag, (policy, option, value) in sweep_settings().items()}}
    return {"where": matrix_where(), "sweep": sweep}


def fidelity_args() -> dict:
    live = config["live"]
    where = {"duration_s": live["duration_s"], "predictor": config["predictor"], "weights": DEFAULT_WEIGHTS,
             "pipeline": live["pipelines"], "workload": live["workloads"], "policy": live["policies"],
             "seed": config["seeds"]}
    return {"where": where, "live_backend": live["backend"]}
