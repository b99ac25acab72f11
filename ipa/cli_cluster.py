"""`ipa cluster`: the Kubernetes side of a run, for review, GitOps or `kubectl apply`."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ipa.configuration import Configuration
from ipa.errors import ConfigError
from ipa.outputs import require_writable_dir
from ipa.k8s.manifests import ClusterOptions
from ipa.k8s.render import cheapest_configuration, run_objects, write_manifests
from ipa.pipelines import load_pipeline
from ipa.pipelines.pipeline import Pipeline
from ipa.serving.modes import MODES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("cluster", help="Kubernetes manifests of a pipeline run")
    sub = p.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    r = sub.add_parser("render", help="write the manifests a run applies at its initial configuration",
                       description="Write one YAML file per object (numbered in creation order) and "
                                   "all.yaml, for `kubectl apply -f DIR`.")
    r.add_argument("--pipeline", required=True)
    r.add_argument("--policy", default=None,
                   help="take the initial configuration from this policy (default: the cheapest "
                        "variant per stage, batch 1, one replica)")
    r.add_argument("--rate", type=float, default=None,
                   help="with --policy: the load (RPS) the first decision is made for "
                        "(default: the pipeline's threshold rate)")
    r.add_argument("--out", required=True, type=Path, help="an empty (or new) folder")
    r.add_argument("--namespace", default="ipa")
    r.add_argument("--image", default=ClusterOptions.image)
    r.add_argument("--mode", choices=MODES, default="emulated")
    r.add_argument("--router-node-port", type=int, default=ClusterOptions.router_node_port)
    r.add_argument("--prometheus-node-port", type=int, default=ClusterOptions.prometheus_node_port)
    r.set_defaults(func=render)


def initial_configuration(pipeline: Pipeline, policy: str | None,
                          rate_rps: float | None = None) -> tuple[Configuration, str]:
    """The configuration a run starts from, and where it came from (said to the user).

    With a policy: its first decision for ``rate_rps`` (default: the pipeline's threshold rate),
    as the adapter's first interval would make it."""
    if policy is None:
        return cheapest_configuration(pipeline), "cheapest variant per stage, batch 1, 1 replica"
    from ipa.policies import Observation, make_policy  # noqa: PLC0415 (the solver is not needed otherwise)
    rate = float(rate_rps if rate_rps is not None else pipeline.threshold_rps)
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigError(f"--rate must be a finite number > 0, got {rate_rps!r}")
    p = make_policy(policy, pipeline, peak_rate_rps=rate)
    decision, _ = p(Observation(time_s=0.0, rate_rps=rate), p.initial_state())
    if not decision.feasible:
        return decision.configuration, f"policy {policy!r} at {rate:g} RPS (infeasible: {decision.reason}; its fallback)"
    return decision.configuration, f"policy {policy!r} at {rate:g} RPS"


def render(args: argparse.Namespace) -> int:
    require_writable_dir(args.out)
    pipeline = load_pipeline(args.pipeline)
    configuration, source = initial_configuration(pipeline, args.policy, args.rate)
    options = ClusterOptions(namespace=args.namespace, image=args.image, mode=args.mode,
                             router_node_port=args.router_node_port,
                             prometheus_node_port=args.prometheus_node_port)
    paths = write_manifests(run_objects(pipeline, configuration, options), args.out)
    print(f"initial configuration ({source}): {configuration.to_json()}", file=sys.stderr)
    print(f"wrote {len(paths)} objects to {args.out} (and all.yaml); apply with: kubectl apply -f {args.out / 'all.yaml'}")
    return 0
