"""`ipa run`: one experiment (pipeline x workload x policy) on a backend, written as a run folder.

    ipa run --pipeline video --workload bursty --policy ipa --backend sim --out results/runs/x

The folder (docs/architecture.md) is complete when summary.json exists; it is written last,
only when the run succeeded. An --out folder holding another run is refused; one holding this
very run (same parameters) is replaced only with --force.

Backend options (`--backend-option KEY=VALUE`, repeatable; `--mode M` is short for
`--backend-option mode=M`) are the fields of the backend's settings (``SETTINGS``), e.g.
local: mode, quick, load_time_scale; kubernetes: image, mode, node_host, router_url, ...
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ipa.adapter import DEFAULT_INTERVAL_S
from ipa.optimizer.solver import DEFAULT_SOLVER, SOLVERS
from ipa.runs.experiment import DEFAULT_PREDICTOR, RunSpec, execute
from ipa.runs.invariants import check_run_folder
from ipa.serving.modes import MODES

PROGRESS_EVERY_S = 2.0  # wall seconds between progress lines; short runs print none


def add_parser(sub) -> None:
    from ipa.backends.registry import BACKENDS
    from ipa.policies import POLICIES
    from ipa.predictors import RUN_PREDICTORS
    from ipa.workloads import WORKLOADS

    p = sub.add_parser("run", help="run one experiment and write its run folder",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", required=True, help="pipeline name (see `ipa pipelines`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workload", help=f"named workload: {', '.join(WORKLOADS)}, or synthetic "
                                        "constant-R, step-A-B, ramp-A-B, sine-MEAN-AMP-PERIOD")
    src.add_argument("--trace", metavar="FILE", help="a `second,rps` CSV of your own")
    p.add_argument("--policy", required=True, help=f"one of {', '.join(POLICIES)}")
    p.add_argument("--backend", default="sim", help=f"one of {', '.join(BACKENDS)} (default sim)")
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE", dest="backend_options",
                   help="a field of the backend's settings, e.g. mode=real, quick=true (repeatable)")
    p.add_argument("--mode", choices=MODES,
                   help="live backends: emulated (replicas hold for profiled latencies) or real (full-size "
                        "models run on this machine's cores; refused up front when the policy would need more "
                        "cores than there are); short for --backend-option mode=M")
    p.add_argument("--policy-option", action="append", default=[], metavar="KEY=VALUE", dest="policy_options",
                   help="a setting of policy hpa or ray-serve, e.g. target_utilisation=0.6, "
                        "target_ongoing_requests=4 (repeatable)")
    p.add_argument("--predictor", default=DEFAULT_PREDICTOR,
                   help=f"one of {', '.join(RUN_PREDICTORS)} (default {DEFAULT_PREDICTOR}; oracle: the true "
                        "peak, read from the run's send times; policy oracle implies it)")
    p.add_argument("--seed", type=int, default=0, help="seeds the send times and the simulator (default 0)")
    p.add_argument("--interval", type=int, default=DEFAULT_INTERVAL_S, metavar="S",
                   help=f"adaptation interval, whole seconds (default {DEFAULT_INTERVAL_S})")
    p.add_argument("--duration", type=int, default=None, metavar="S",
                   help="run only the first S seconds of the workload (default: all of it)")
    p.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson",
                   help="send times within each second (default poisson)")
    p.add_argument("--solver", choices=SOLVERS, default=DEFAULT_SOLVER, help=f"ILP solver (default {DEFAULT_SOLVER})")
    p.add_argument("--requests", action="store_true", help="also write requests.csv (one row per request)")
    p.add_argument("--tolerate-decision-errors", action="store_true",
                   help="accept the run even if a policy, predictor or apply call raised (it then kept its "
                        "configuration); without it such a run ends with exit status 1 and its folder is refused "
                        "by the analysis")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the run folder to write")
    p.add_argument("--force", action="store_true",
                   help="replace a run with the same parameters already in --out (a different run is never replaced)")
    p.add_argument("--profiles-file", type=Path, metavar="FILE", help="profiles.csv to use instead of the packaged one")
    p.add_argument("--pipelines-file", type=Path, metavar="FILE", help="pipelines.yaml to use instead of the packaged one")
    p.add_argument("--variants-file", type=Path, metavar="FILE", help="variants.csv to use instead of the packaged one")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def _pipeline(args):
    from ipa.errors import ConfigError
    from ipa.pipelines import load_catalogue, load_pipeline

    if not (args.profiles_file or args.pipelines_file or args.variants_file):
        return load_pipeline(args.pipeline)  # the packaged catalogue

    for option, path in (("--profiles-file", args.profiles_file), ("--pipelines-file", args.pipelines_file),
                         ("--variants-file", args.variants_file)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{option} {path}: no such file")
    catalogue = load_catalogue(args.pipelines_file, args.variants_file)
    return load_pipeline(args.pipeline, catalogue=catalogue, profiles_path=args.profiles_file)


def _key_values(pairs: list[str], flag: str, example: str) -> dict[str, str]:
    from ipa.errors import ConfigError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {example}")
        if key in out:
            raise ConfigError(f"{flag} {key} is given twice")
        out[key] = value
    return out


def parse_policy_options(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE strings as a dict (typed later, against the policy's settings)."""
    return _key_values(pairs, "--policy-option", "target_utilisation=0.6")


def parse_backend_options(pairs: list[str], mode: str | None = None) -> dict[str, str]:
    """KEY=VALUE strings as a dict (typed later, against the backend's settings)."""
    from ipa.errors import ConfigError

    out = _key_values(pairs, "--backend-option", "mode=real")
    if mode is not None:
        if "mode" in out and out["mode"] != mode:
            raise ConfigError(f"--mode {mode} contradicts --backend-option mode={out['mode']}")
        out["mode"] = mode
    return out


def _progress_printer(quiet: bool):
    last = [time.monotonic()]

    def progress(t: float, duration: float, records) -> None:
        now = time.monotonic()
        if quiet or now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        print(f"ipa run: {t:.0f}/{duration:.0f} s of the workload, {len(records)} decisions",
              file=sys.stderr, flush=True)

    return progress


def run(args) -> int:
    spec = RunSpec(pipeline=args.pipeline, policy=args.policy, workload=args.workload, trace=args.trace,
                   predictor=args.predictor, backend=args.backend, seed=args.seed, interval_s=args.interval,
                   duration_s=args.duration, arrivals=args.arrivals, solver=args.solver,
                   backend_options=parse_backend_options(args.backend_options, args.mode),
                   policy_options=parse_policy_options(args.policy_options),
                   tolerate_decision_errors=args.tolerate_decision_errors)
    started = time.perf_counter()
    pipeline = _pipeline(args)
    s = execute(spec, args.out, force=args.force, requests=args.requests, pipeline=pipeline,
                progress=_progress_printer(args.quiet))
    print(f"{args.out}: {s['requests_sent']} sent, {s['requests_on_time']} on time, {s['requests_late']} late, "
          f"{s['requests_dropped']} dropped, {s['requests_failed']} failed "
          f"(SLA violations {100 * s['sla_violation_rate']:.2f}%); PAS {s['pas_mean']:.4f}, "
          f"{s['cost_cores_mean']:.2f} cores; {time.perf_counter() - started:.1f} s")
    # every run checks its own folder: conservation, the router's ledger on a live run, failed
    # decisions (unless tolerated), cores against configurations
    problems = check_run_folder(args.out, pipeline)
    if problems:
        print(f"ipa run: error: the run folder {args.out} is written for diagnosis, but it is not a sound "
              f"result ({len(problems)} problem(s)):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0
