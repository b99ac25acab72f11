"""The Snakemake workflow, run for real with snakemake in a temporary copy of the workflow.

The end-to-end test runs the `ci` preset on the synthetic test catalogue of conftest.py (made-up
profiles), so it does not depend on the reference profiles being complete; everything else
(snakemake, `ipa run` on the simulator, aggregation, figures, report) is the real thing.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import default_sigint, write_tiny_catalogue

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def merged(*docs: dict) -> dict:
    """Snakemake's config merge: mappings merge key by key, anything else is replaced."""
    out: dict = {}

    def merge(a: dict, b: dict) -> None:
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                merge(a[k], v)
            else:
                a[k] = v

    for d in docs:
        merge(out, yaml.safe_load(yaml.safe_dump(d)))
    return out


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def workflow_copy(dest: Path) -> Path:
    """What a user checks out to run the workflow: Snakefile, config.yaml, workflow/, and the
    solver benchmark the decision-time rule calls."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest)
    shutil.copy(REPO / "config.yaml", dest)
    shutil.copytree(REPO / "workflow", dest / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "benchmarks/solver").mkdir(parents=True)
    shutil.copy(REPO / "benchmarks/solver/run.py", dest / "benchmarks/solver/run.py")
    return dest


def snakemake(cwd: Path, *args: str, check: bool = True, timeout: int = 900,
              package: Path | None = None) -> subprocess.CompletedProcess:
    """``package``: a folder holding another copy of the `ipa` package, imported instead."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if package is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def tiny_ci_config(root: Path) -> Path:
    """The `ci` preset with the synthetic catalogue in place of the packaged one. A full config
    (used with --replace-workflow-config): the embedded default's preferences name the
    reference pipelines, which the synthetic catalogue does not have."""
    write_tiny_catalogue(root / "catalogue")
    cfg = merged(load(root / "config.yaml"), load(root / "workflow/presets/ci.yaml"))
    cfg["catalogue"] = {"pipelines": "catalogue/pipelines.yaml", "variants": "catalogue/variants.csv",
                        "profiles": "catalogue/profiles.csv"}
    for section in (cfg, cfg["preference_sweep"], cfg["predictor_ablation"], cfg["autoscaler_sweep"]):
        section["pipelines"] = ["tiny-video"]
    prefs = cfg["preference_sweep"]["preferences"]
    cfg["preference_sweep"]["preferences"] = {name: {"default": w["default"]} for name, w in prefs.items()}
    path = root / "test-config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def dry_run_outputs(proc: subprocess.CompletedProcess, rule: str) -> set[str]:
    """Output files of the jobs of ``rule`` in a `snakemake -n` listing."""
    outputs, current = set(), None
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("rule ") or line.startswith("localrule "):
            current = line.split()[1].rstrip(":")
        elif line.startswith("output:") and current == rule:
            outputs.update(p.strip() for p in line[len("output:"):].split(","))
    return outputs


# --- the configuration --------------------------------------------------------------------------
def test_schema_names_match_the_package():
    from ipa.policies import AUTOSCALERS, POLICIES, PREDICTOR_OF
    from ipa.predictors import PREDICTORS, RUN_PREDICTORS
    from ipa.workloads import WORKLOADS

    schema = load(SCHEMA)
    defs = schema["$defs"]
    assert defs["policy"]["enum"] == list(POLICIES)
    assert defs["predictor"]["enum"] == list(PREDICTORS)
    assert defs["ablation_predictor"]["enum"] == list(RUN_PREDICTORS)
    assert defs["workload"]["enum"] == list(WORKLOADS)
    sweep = schema["properties"]["autoscaler_sweep"]["properties"]["settings"]["propertyNames"]["enum"]
    assert sweep == list(AUTOSCALERS)
    # the workflow lays out the oracle's runs under the predictor the run records
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert PREDICTOR_OF == {"oracle": "oracle"} and 'ORACLE = "oracle"' in common


def test_the_embedded_default_names_the_whole_reference_catalogue():
    from ipa.pipelines import load_catalogue

    cfg = load(REPO / "config.yaml")
    assert cfg["pipelines"] == list(load_catalogue().pipelines)
    from ipa.policies import POLICIES

    assert len(cfg["workloads"]) == 4 and cfg["policies"] == list(POLICIES)
    assert cfg["live"]["backend"] == "local" and cfg["live"]["pipelines"] == ["video"]


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    root = workflow_copy(tmp_path_factory.mktemp("wf"))
    tiny_ci_config(root)
    return root


def test_dry_run_lists_the_whole_matrix(copy):
    # The profile table is only read when runs execute: any existing file stands in for the
    # reference table here, so the listing does not wait on profiling.
    overlay = copy / "dry-run.yaml"
    overlay.write_text(yaml.safe_dump({"catalogue": {"profiles": "catalogue/profiles.csv"}}))
    proc = snakemake(copy, "-n", "--configfile", str(overlay))
    cfg = load(copy / "config.yaml")
    runs = "results/runs/{}/{}/{}/{}s/{}/{}/{}/seed{}/summary.json"
    # the oracle's runs record (and live under) the predictor they use: the true peak
    main = {runs.format("sim", p, w, cfg["sim"]["duration_s"], x, "oracle" if x == "oracle" else cfg["predictor"],
                        "default", s)
            for p, w, x, s in itertools.product(cfg["pipelines"], cfg["workloads"], cfg["policies"], cfg["seeds"])}
    sim = dry_run_outputs(proc, "run_sim")
    assert len(main) == 180
    sweep, abl = cfg["preference_sweep"], cfg["predictor_ablation"]
    sweep_runs = {runs.format("sim", p, sweep["workload"], cfg["sim"]["duration_s"], sweep["policy"],
                              cfg["predictor"], g, 0) for p in sweep["pipelines"] for g in sweep["preferences"]}
    # the ablation's oracle is the oracle policy's run of the main matrix
    ablation_runs = {runs.format("sim", p, abl["workload"], cfg["sim"]["duration_s"],
                                 "oracle" if r == "oracle" else abl["policy"], r, "default", 0)
                     for p in abl["pipelines"] for r in abl["predictors"]}
    scalers = cfg["autoscaler_sweep"]
    knob_runs = {runs.format("sim", p, scalers["workload"], cfg["sim"]["duration_s"], policy, cfg["predictor"],
                             f"{policy}-{k['option']}-{v:g}".replace("_", "-").replace(".", "p"), 0)
                 for p in scalers["pipelines"] for policy, k in scalers["settings"].items() for v in k["values"]}
    assert "results/runs/sim/video/bursty/1200s/hpa/lstm/hpa-target-utilisation-0p5/seed0/summary.json" in knob_runs
    live = cfg["live"]
    live_runs = {runs.format(live["backend"], p, w, live["duration_s"], x, cfg["predictor"], "default", 0)
                 for p, w, x in itertools.product(live["pipelines"], live["workloads"], live["policies"])}
    twins = {r.replace(f"runs/{live['backend']}/", "runs/sim/") for r in live_runs}  # for the fidelity figure
    assert dry_run_outputs(proc, "run_live") == live_runs
    assert sim == main | sweep_runs | ablation_runs | knob_runs | twins
    # 180 + 15 preference + 15 extra predictors (lstm and oracle are the main matrix's) + 40 knob
    # settings + 2 twins: shared runs run once
    assert len(sim) == 252
    figures = {f for f in dry_run_outputs(proc, "figure_timeseries")}
    assert figures == {f"results/figures/timeseries/{p}.{ext}" for p in cfg["pipelines"] for ext in ("png", "pdf")}


def test_lint_is_clean(copy):
    overlay = copy / "dry-run.yaml"
    overlay.write_text(yaml.safe_dump({"catalogue": {"profiles": "catalogue/profiles.csv"}}))
    proc = snakemake(copy, "--lint", "--configfile", str(overlay))
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


@pytest.mark.parametrize("overlay, key, allowed", [
    ({"pipelines": ["video", "vidoe"]}, "pipelines[1]", "'audio-qa'"),
    ({"policies": ["ipa", "greedy"]}, "policies[1]", "'fa2-low'"),
    ({"live": {"backend": "docker"}}, "live.backend", "'kubernetes'"),
    ({"predictor": "arima"}, "predictor", "'ewma'"),
    ({"workloads": ["spiky"]}, "workloads[0]", "'steady-high'"),
    ({"sim": {"duration": 60}}, "sim", "'duration_s'"),
    ({"colour": "blue"}, "(top level)", "'preference_sweep'"),
    ({"seeds": "0"}, "seeds", "array"),
    ({"interval_s": 2.5}, "interval_s", "integer"),
    ({"preference_sweep": {"preferences": {"speed": {"default": {"alpha": 1, "beta": 1}, "nlpp": {"alpha": 1, "beta": 1}}}}},
     "preference_sweep.preferences.speed.nlpp", "'sum-qa'"),
])
def test_invalid_config_fails_before_any_job_naming_the_key_and_the_allowed_values(copy, overlay, key, allowed):
    path = copy / "bad.yaml"
    path.write_text(yaml.safe_dump(overlay))
    proc = snakemake(copy, "--cores", "1", "--configfile", str(path), check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config key {key}" in out and allowed in out, out[-2000:]
    assert not (copy / "results").exists() and not (copy / "logs").exists()


@pytest.mark.slow
def test_ci_preset_end_to_end_resumes_and_reports(copy):
    config = ["--configfile", "test-config.yaml", "--replace-workflow-config"]
    snakemake(copy, "--cores", "2", *config)
    cfg = load(copy / "test-config.yaml")

    summary = pd.read_csv(copy / "results/summary.csv")
    main = summary[(summary["weights"] == "default") & (summary["predictor"].isin([cfg["predictor"], "oracle"]))]
    assert len(main) == len(cfg["workloads"]) * len(cfg["policies"])
    assert set(main.loc[main["policy"] == "oracle", "predictor"]) == {"oracle"}
    knobs = {f"{policy}-{k['option']}-{v:g}".replace("_", "-").replace(".", "p"): (policy, k["option"], v)
             for policy, k in cfg["autoscaler_sweep"]["settings"].items() for v in k["values"]}
    assert set(summary["weights"]) == {"default"} | set(cfg["preference_sweep"]["preferences"]) | set(knobs)
    assert set(summary["predictor"]) == set(cfg["predictor_ablation"]["predictors"]) | {"oracle"}
    # each knob setting reached its run: the run folder records the option it ran with
    for row in summary[summary["weights"].isin(knobs)].itertuples():
        policy, option, value = knobs[row.weights]
        params = json.loads((copy / row.run_dir / "summary.json").read_text())["params"]
        assert row.policy == policy and params["policy_options"] == {option: value}
    assert (summary["requests_sent"] == summary["requests_completed"] + summary["requests_dropped"]
            + summary["requests_failed"]).all()
    assert (summary["requests_sent"] > 0).all() and (summary["duration_s"] == cfg["sim"]["duration_s"]).all()
    # the weights of a preference reached the run (the catalogue the run saw)
    cost = summary[summary["weights"] == "cost"].iloc[0]
    assert (cost["alpha"], cost["beta"]) == (cfg["preference_sweep"]["preferences"]["cost"]["default"]["alpha"],
                                            cfg["preference_sweep"]["preferences"]["cost"]["default"]["beta"])
    for name in cfg["figures"]:
        stem = "timeseries/tiny-video" if name == "timeseries" else name
        for ext in ("png", "pdf"):
            assert (copy / f"results/figures/{stem}.{ext}").stat().st_size > 1000, (name, ext)
    assert (copy / "results/benchmarks/runs/sim").is_dir()  # benchmark: on simulation rules

    # a second run does nothing
    again = snakemake(copy, "--cores", "2", *config)
    assert "Nothing to be done" in again.stdout + again.stderr

    # an interrupted workflow resumes without redoing finished runs (see test_interrupted_...)
    # and a run folder whose summary.json is gone is redone when its results are asked for
    victim = copy / Path(main.iloc[0]["run_dir"])
    (victim / "summary.json").unlink()
    before = {p: p.stat().st_mtime_ns for p in (copy / "results/runs").rglob("summary.json")}
    dry = snakemake(copy, "-n", *config, "--forcerun", "summary")
    assert dry_run_outputs(dry, "run_sim") == {str(Path(main.iloc[0]["run_dir"]) / "summary.json")}
    snakemake(copy, "--cores", "2", *config, "--forcerun", "summary")
    assert (victim / "summary.json").is_file()
    for p, mtime in before.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was redone"

    # a result made by other code is made again: a changed policy reruns every run (the profile
    # table stays), a changed plot only the summary and figures; the same code reruns nothing
    import ipa

    package = copy / "package"
    shutil.copytree(Path(ipa.__file__).parent, package / "ipa", ignore=shutil.ignore_patterns("__pycache__"))
    same = snakemake(copy, "-n", *config, package=package)
    assert "Nothing to be done" in same.stdout + same.stderr
    runs = {str(Path(r) / "summary.json") for r in summary["run_dir"]}
    policy_module = package / "ipa/policies/rules.py"
    original = policy_module.read_text()
    policy_module.write_text(original + "\n# changed\n")
    dry = snakemake(copy, "-n", *config, package=package)
    assert dry_run_outputs(dry, "run_sim") | dry_run_outputs(dry, "run_live") == runs
    assert "rule profiles" not in dry.stdout
    policy_module.write_text(original)
    (package / "ipa/analysis/figures.py").write_text((package / "ipa/analysis/figures.py").read_text() + "\n# changed\n")
    dry = snakemake(copy, "-n", *config, package=package)
    assert not dry_run_outputs(dry, "run_sim") and dry_run_outputs(dry, "summary") == {"results/summary.csv"}

    # the HTML report holds every figure with its caption
    snakemake(copy, "--report", "report.html", *config)
    html = (copy / "report.html").read_text()
    for name in cfg["figures"]:
        assert f"{name}.png" in html or (name == "timeseries" and "tiny-video.png" in html), name
    assert "Pareto plane" in html and "Pipeline <strong>tiny-video</strong>" in html


@pytest.mark.slow
def test_an_interrupted_workflow_resumes_without_redoing_finished_runs(tmp_path):
    root = workflow_copy(tmp_path / "wf")
    tiny_ci_config(root)
    config = ["--configfile", "test-config.yaml", "--replace-workflow-config"]
    runs = root / "results/runs"
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", *config], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 300
        while len(list(runs.rglob("summary.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the workflow finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in runs.rglob("summary.json")}
    assert finished and not (root / "results/summary.csv").exists()
    for folder in {p.parent for p in runs.rglob("*") if p.is_file()}:
        if (folder / "summary.json").exists():  # whatever looks complete is complete
            assert json.loads((folder / "summary.json").read_text())["complete"] is True
    # The job in flight at the signal may have written its summary.json before snakemake
    # recorded it done; snakemake then flags it incomplete and reruns it with --rerun-incomplete
    # (the workflow profile sets it). Every other finished run is kept.
    snakemake(root, "--cores", "2", "--rerun-incomplete", *config)
    assert (root / "results/summary.csv").is_file()
    redone = [p for p, mtime in finished.items() if p.stat().st_mtime_ns != mtime]
    assert len(redone) <= 1 and len(finished) - len(redone) >= 1, redone
