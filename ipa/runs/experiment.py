"""One experiment end to end: names -> pipeline, workload, predictor, policy, backend -> the
adapter loop -> the run folder. `ipa run` and the benchmark scripts call ``execute``."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable

from ipa.adapter import DEFAULT_INTERVAL_S, AdapterLoop, first_interval_peak
from ipa.backends.registry import BACKENDS, LIVE_BACKENDS, backend_options, check_backend_options, make_backend
from ipa.errors import ConfigError
from ipa.optimizer.solver import DEFAULT_SOLVER
from ipa.predictors.base import in_trace_units
from ipa.runs.capacity import check_fits_machine, nominal_cores_note, peak_per_second
from ipa.runs.folder import WORK_DIR, check_out_dir, write_run_folder
from ipa.runs.tables import build_tables

DEFAULT_PREDICTOR = "lstm"  # all systems use the paper's LSTM (fact 31)
VERSIONED = ("ipa-bench", "numpy", "pandas", "pulp", "highspy")


@dataclass(frozen=True)
class RunSpec:
    """What defines a run (besides the pipeline's data): equal specs on equal data give equal
    run folders."""

    pipeline: str
    policy: str
    workload: str | None = None
    trace: str | None = None
    predictor: str = DEFAULT_PREDICTOR
    backend: str = "sim"
    seed: int = 0
    interval_s: int = DEFAULT_INTERVAL_S
    duration_s: int | None = None
    arrivals: str = "poisson"
    solver: str = DEFAULT_SOLVER
    # the backend's settings (e.g. local: mode, quick); strings are typed by its SETTINGS fields
    backend_options: dict = field(default_factory=dict)
    # the policy's settings (hpa, ray-serve: e.g. target_utilisation); strings typed by the policy
    policy_options: dict = field(default_factory=dict)
    # a run whose policy, predictor or apply raised is not a sound result unless asked for
    # (check_run_folder and the analysis refuse it otherwise)
    tolerate_decision_errors: bool = False


def _check_names(spec: RunSpec) -> None:
    """Every name, before anything heavy is loaded: a typo costs nothing."""
    from ipa.policies import POLICIES
    from ipa.predictors import RUN_PREDICTORS
    from ipa.workloads import WORKLOADS

    if spec.policy not in POLICIES:
        raise ConfigError(f"unknown policy {spec.policy!r}; known: {', '.join(POLICIES)}")
    if spec.predictor not in RUN_PREDICTORS:
        raise ConfigError(f"unknown predictor {spec.predictor!r}; known: {', '.join(RUN_PREDICTORS)}")
    if spec.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {spec.backend!r}; known: {', '.join(BACKENDS)}")
    if (spec.workload is None) == (spec.trace is None):
        raise ConfigError("give exactly one of a workload name (--workload) or a trace file (--trace); "
                          f"workloads: {', '.join(WORKLOADS)}")
    if int(spec.interval_s) != spec.interval_s or spec.interval_s < 1:
        raise ConfigError(f"--interval must be a whole number of seconds >= 1, got {spec.interval_s!r}")
    if spec.duration_s is not None and (int(spec.duration_s) != spec.duration_s or spec.duration_s < 1):
        raise ConfigError(f"--duration must be a whole number of seconds >= 1, got {spec.duration_s!r}")
    check_backend_options(spec.backend, spec.backend_options)


def _load_workload(spec: RunSpec):
    from ipa.workloads import load_trace, load_workload

    workload = load_workload(spec.workload) if spec.workload is not None else load_trace(spec.trace)
    if spec.duration_s is not None and spec.duration_s != workload.duration_s:
        if spec.duration_s > workload.duration_s:
            raise ConfigError(f"--duration {spec.duration_s} s is longer than the workload "
                              f"({workload.duration_s} s)")
        workload = workload.window(0, spec.duration_s)
    return workload


def computes_on_this_machine(backend: str, options: dict) -> bool:
    """Real mode on the local backend runs full-size models on these cores (quick builds are tiny
    stand-ins that do not use the cores their profiles assume)."""
    return backend == "local" and options.get("mode") == "real" and not options.get("quick")


def _constant_peaks(spec: RunSpec, pipeline, duration_s: int):
    """R -> the (first-interval, per-second) peaks of workload constant-R as this run would send it."""
    from ipa.workloads import load_workload

    def peaks(r: int) -> tuple[float, float]:
        w = load_workload(f"constant-{r}").window(0, duration_s).scaled(pipeline.load_scale)
        times = w.send_times(spec.seed, spec.arrivals)
        return first_interval_peak(times, spec.interval_s), peak_per_second(times)

    return peaks


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_params(spec: RunSpec, pipeline, workload) -> dict[str, Any]:
    """The parameters summary.json records; two runs are "the same run" when these are equal."""
    from ipa.policies import PREDICTOR_OF, policy_options

    p = pipeline.params
    params = asdict(spec)
    params.update({
        "predictor": PREDICTOR_OF.get(spec.policy, spec.predictor),
        "policy_options": policy_options(spec.policy, spec.policy_options, pipeline),  # typed, catalogue's included
        "backend_options": check_backend_options(spec.backend, spec.backend_options),  # typed
        "workload": spec.workload if spec.workload is not None else f"trace:{Path(spec.trace).name}",
        "trace_sha256": _sha256_file(spec.trace) if spec.trace is not None else None,
        "duration_s": workload.duration_s, "load_scale": pipeline.load_scale,
        "sla_s": pipeline.sla_s, "drop_limit_s": pipeline.drop_limit_s,
        "alpha": p["alpha"], "beta": p["beta"], "gamma": p["gamma"],
        "batching_cap": pipeline.batching_cap, "scaling_cap": pipeline.scaling_cap,
        "predictor_margin": p.get("predictor_margin", 0.0), "accuracy_method": p["accuracy_method"],
        # the profiles and parameters the run used, so runs on different data never look equal
        "pipeline_sha256": hashlib.sha256(json.dumps(pipeline.describe(), sort_keys=True, default=str)
                                          .encode()).hexdigest(),
    })
    return params


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def execute(spec: RunSpec, out_dir: str | Path, *, force: bool = False, requests: bool = False,
            pipeline=None, progress: Callable | None = None, argv: list[str] | None = None,
            predictor=None) -> dict[str, Any]:
    """Run one experiment and write its folder; returns the summary. ``pipeline`` replaces the
    catalogue's pipeline of that name (tests, user catalogues); ``predictor`` (an object with
    ``name`` and ``predict``) replaces ``spec.predictor``, and its name is what the run records.
    Nothing is written unless the run finishes; an output folder holding another run is refused
    before anything runs."""
    from ipa.pipelines import load_pipeline
    from ipa.policies import make_policy
    from ipa.predictors import ORACLE, TruePeak, make_predictor

    _check_names(spec)
    if pipeline is None:
        pipeline = load_pipeline(spec.pipeline)
    elif pipeline.name != spec.pipeline:
        raise ConfigError(f"the given pipeline is {pipeline.name!r}, the spec names {spec.pipeline!r}")
    workload = _load_workload(spec).scaled(pipeline.load_scale)
    params = run_params(spec, pipeline, workload)
    if predictor is not None:
        params["predictor"] = predictor.name
    out_dir = Path(out_dir)
    check_out_dir(out_dir, params, force)

    oracle = params["predictor"] == ORACLE and predictor is None
    if predictor is None and not oracle:
        predictor = make_predictor(params["predictor"])
    if predictor is not None:
        predictor = in_trace_units(predictor, pipeline.load_scale)
    policy = make_policy(spec.policy, pipeline, solver=spec.solver,
                         peak_rate_rps=max(float(workload.rates.max()), 1e-3), options=spec.policy_options,
                         interval_s=spec.interval_s)
    send_times = workload.send_times(spec.seed, spec.arrivals)
    if computes_on_this_machine(spec.backend, params["backend_options"]):
        check_fits_machine(policy, pipeline, first_interval_peak(send_times, spec.interval_s),
                           peak_per_second(send_times), _constant_peaks(spec, pipeline, workload.duration_s))
    options = dict(params["backend_options"], seed=spec.seed)
    work = out_dir / WORK_DIR
    if "work_dir" in backend_options(spec.backend):
        # the backend's scratch space lives in the run folder, not in /tmp: nothing to clean up
        # elsewhere, and a failed run leaves its logs where its results would have been
        shutil.rmtree(work, ignore_errors=True)  # a failed earlier attempt's
        work.mkdir(parents=True)
        options["work_dir"] = str(work)
    backend = make_backend(spec.backend, **options)
    if oracle:  # the true peak, from the send times the backend replays, on the backend's clock
        predictor = TruePeak(send_times, backend.clock)
    started_wall, started = datetime.now(timezone.utc), time.perf_counter()
    loop = AdapterLoop(backend, pipeline, policy, predictor, interval_s=spec.interval_s, progress=progress)
    try:
        output = loop.run(send_times, workload.duration_s, first_interval_peak(send_times, spec.interval_s))
    except Exception as e:
        if (work / "logs").is_dir():
            e.add_note(f"the run's logs are in {work / 'logs'}")
        raise
    wall_s = time.perf_counter() - started
    tables = build_tables(pipeline, output, loop.records, workload.duration_s, params,
                          with_requests=requests or spec.backend in LIVE_BACKENDS)
    tables["summary"]["versions"] = _versions()
    tables["summary"]["git_revision"] = _git("rev-parse", "HEAD")
    peak_cores = max((c for _, c in output.provisioned_cores), default=0.0) or max(
        (a.configuration.total_cores for a in output.applied), default=0)
    note = nominal_cores_note(spec.backend, params["backend_options"], peak_cores)
    if note:
        print(f"ipa run: warning: {note}", file=sys.stderr, flush=True)
    meta = {
        "started_at": started_wall.isoformat(), "ended_at": datetime.now(timezone.utc).isoformat(),
        "wall_s": wall_s, "command": argv if argv is not None else sys.argv,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "workload_provenance": workload.provenance,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "hostname": platform.node()},
        "peak_provisioned_cores": peak_cores,
        "cores_warning": note,
    }
    write_run_folder(out_dir, tables, meta, output.extra_files)
    shutil.rmtree(work, ignore_errors=True)
    return tables["summary"]
