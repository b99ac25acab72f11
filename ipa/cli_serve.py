"""`ipa serve`: a pipeline's live stack (router, stage servers, Prometheus) until interrupted.

    ipa serve --pipeline video [--mode emulated|real] [--config FILE]

For debugging, demos and other load tools: any Open Inference Protocol client can send
``POST <router>/v2/models/<pipeline>/infer`` with one ``input`` row (FP32, shape [1, n]).
"""
from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError
from ipa.serving.modes import MODES

STAGE_KEYS = {"variant", "batch", "replicas", "cores"}


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run a pipeline's live stack until interrupted",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", required=True, help="pipeline name (see `ipa pipelines`)")
    p.add_argument("--mode", choices=MODES, default="emulated",
                   help="emulated: replicas hold for the profiled latency; real: built models run (default emulated)")
    p.add_argument("--quick", action="store_true", help="real mode: tiny models of the same families (fast to build)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="YAML/JSON {stage: {variant, batch, replicas[, cores]}} (default: lightest variants, "
                        "batch 1, one replica)")
    p.add_argument("--port", type=int, default=None, help="router port (default: a free one)")
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    p.add_argument("--prometheus", metavar="PATH", help="the Prometheus binary (default: `prometheus` on PATH)")
    p.add_argument("--work-dir", type=Path, help="logs, specs and the Prometheus TSDB (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profiles-file", type=Path, metavar="FILE")
    p.add_argument("--pipelines-file", type=Path, metavar="FILE")
    p.add_argument("--variants-file", type=Path, metavar="FILE")
    p.set_defaults(func=run)


def read_configuration(path: Path, pipeline) -> Configuration:
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path}: not YAML/JSON ({e})") from None
    doc = doc.get("stages", doc) if isinstance(doc, dict) else doc
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path}: expected a mapping {{stage: {{variant, batch, replicas}}}}")
    stages = {}
    for name in pipeline.stage_names:
        d = doc.get(name)
        if not isinstance(d, dict):
            raise ConfigError(f"--config {path}: stage {name!r} missing or not a mapping; stages are "
                              f"{list(pipeline.stage_names)}")
        extra = set(d) - STAGE_KEYS
        if extra:
            raise ConfigError(f"--config {path}: stage {name!r} has unknown key(s) {sorted(extra)}; "
                              f"allowed: {sorted(STAGE_KEYS)}")
        if "variant" not in d:
            raise ConfigError(f"--config {path}: stage {name!r} needs a 'variant'")
        variant = pipeline.stage_profile(name, str(d["variant"])).variant
        try:
            stages[name] = StageConfig(variant, int(d.get("batch", 1)), int(d.get("replicas", 1)),
                                       int(d.get("cores", pipeline.base_cores(name, variant))))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--config {path}: stage {name!r}: batch, replicas, cores must be integers ({e})") from None
    unknown = set(doc) - set(pipeline.stage_names)
    if unknown:
        raise ConfigError(f"--config {path}: unknown stage(s) {sorted(unknown)}; stages are {list(pipeline.stage_names)}")
    return Configuration(stages)


def run(args) -> int:
    from ipa.cli_run import _pipeline
    from ipa.pipelines import load_pipeline
    from ipa.serving.spec import default_configuration
    from ipa.serving.stack import LiveStack

    pipeline = _pipeline(args) or load_pipeline(args.pipeline)
    config = read_configuration(args.config, pipeline) if args.config else default_configuration(pipeline)
    pipeline.check(config)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ipa-serve-"))
    stack = LiveStack(pipeline, work, mode=args.mode, quick=args.quick, seed=args.seed, router_port=args.port,
                      prometheus=not args.no_prometheus, prometheus_binary=args.prometheus)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start(config)
        print(f"pipeline {pipeline.name} ({args.mode}), SLA {pipeline.sla_s:.3f}s, drop limit "
              f"{pipeline.drop_limit_s:.3f}s; logs in {work}")
        for name, url in stack.urls().items():
            print(f"  {name:<22} {url}")
        print("  admin                  POST <router>/admin/configuration, GET <router>/admin/status")
        print("Ctrl-C to stop.", flush=True)
        while not stop["now"]:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("stopped: every process of the stack has exited", file=sys.stderr)
    return 0
