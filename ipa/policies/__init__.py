"""Policies: IPA and its baselines, each a small pure function of (observation, state).

``make_policy(name, pipeline, **options)`` returns a callable ``policy(observation, state) ->
(Decision, state)``; ``policy.initial_state()`` gives the state of the first call.

The policies are the entries of ``REGISTRY`` (name -> ``PolicyKind``: its rule or autoscaler
step, what it pins, its settings, its predictor); adding one is one entry there, and the
workflow schema's enum is held equal to it by tests/test_workflow.py.

``hpa``, ``ray-serve`` and ``ipa-plus`` take options (``make_policy(options=...)``: their settings'
fields, e.g. ``target_utilisation``, ``target_ongoing_requests``, ``switch_cost``,
``forecast_quantile``); the others take none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pulp

from ipa.configuration import Configuration, Decision
from ipa.errors import ConfigError
from ipa.optimizer.problem import picks_of, problem_from_pipeline
from ipa.optimizer.solver import DEFAULT_SOLVER, make_solver, solver_name
from ipa.policies.autoscalers import HpaSettings, RayServeSettings, autoscaler_rule, hpa_step, ray_serve_step
from ipa.policies.observation import DEFAULT_INTERVAL_S, Observation, PolicyState
from ipa.policies.pins import fa2_variants, rim_replicas
from ipa.policies.rules import Context, adaptive, static
from ipa.policies.settings import IpaPlusSettings, settings_from

Rule = Callable[[Observation, PolicyState, Context], "tuple[Decision, PolicyState]"]


def _free(pipeline) -> None:
    return None


def _fa2(level: str) -> Callable:
    return lambda pipeline: fa2_variants(pipeline, level)


@dataclass(frozen=True)
class PolicyKind:
    """What makes a policy: a new one is one entry of ``REGISTRY``."""

    summary: str
    rule: Rule | None = None          # None: built from the autoscaler ``step`` and the settings
    step: Callable | None = None      # an autoscaler's per-interval step (``autoscalers``)
    settings: type | None = None      # the dataclass its options are typed and checked by
    variants: Callable = _free        # pipeline -> {stage: variant} it pins, or None
    pins_replicas: bool = False       # RIM: replicas pinned for the run (``pins.rim_replicas``)
    predictor: str | None = None      # the predictor its runs use instead of the configured one
    paper: bool = False               # one of the paper's IPA and baselines (facts 29-30)
    # its base allocations use the catalogue's baseline_threshold_rps where a pipeline gives one
    # (fact 16: sum-qa's FA2-low and RIM were configured with threshold 1, IPA with 5)
    baseline_threshold: bool = False


REGISTRY: dict[str, PolicyKind] = {
    "ipa": PolicyKind("every knob free (variant, batch, replicas per stage)", adaptive, paper=True),
    "fa2-low": PolicyKind("variants pinned to the paper's light set (param fa2_low; else least accurate)",
                          adaptive, variants=_fa2("low"), paper=True, baseline_threshold=True),
    "fa2-high": PolicyKind("variants pinned to the paper's heavier set (param fa2_high; else most accurate)",
                           adaptive, variants=_fa2("high"), paper=True),
    "rim": PolicyKind("replicas pinned per stage for the run (param rim_replicas, else what FA2-high's "
                      "variants need at batch 1 for option peak_rate_rps)", adaptive, pins_replicas=True, paper=True,
                      baseline_threshold=True),
    "static": PolicyKind("IPA's decision at the first call, kept for the whole run", static, paper=True),
    "oracle": PolicyKind("ipa given the true peak of the next 20 s instead of a forecast (the run builds "
                         "its predictor from the send times: ipa.predictors.oracle)", adaptive, predictor="oracle"),
    # the autoscalers start where FA2-low starts and keep its variants, cores and batch sizes
    "hpa": PolicyKind("the Kubernetes HPA on CPU utilisation: replicas only", step=hpa_step,
                      settings=HpaSettings, variants=_fa2("low"), baseline_threshold=True),
    "ray-serve": PolicyKind("Ray Serve's default autoscaling policy: replicas only", step=ray_serve_step,
                            settings=RayServeSettings, variants=_fa2("low"), baseline_threshold=True),
    "ipa-plus": PolicyKind("ipa with a switch cost (a changed variant pays its load time in idle cores, "
                           "spread over the interval) and forecast-quantile provisioning instead of the fixed "
                           "margin, each part switchable", adaptive, settings=IpaPlusSettings),
}

POLICIES = tuple(REGISTRY)
PAPER_POLICIES = tuple(n for n, k in REGISTRY.items() if k.paper)
# the policies that do not decide on the load forecast but on each stage's measured load
AUTOSCALERS = {n: (k.settings, k.step) for n, k in REGISTRY.items() if k.step is not None}
# the policies with options, and the settings that hold them
SETTINGS = {n: k.settings for n, k in REGISTRY.items() if k.settings is not None}
# the policies whose run replaces the configured predictor
PREDICTOR_OF = {n: k.predictor for n, k in REGISTRY.items() if k.predictor}
DEFAULT_TIME_LIMIT_S = 2.0  # the paper's budget for one decision (fact 22)


@dataclass(frozen=True)
class Policy:
    name: str
    rule: Rule
    context: Context
    # ipa-plus: the adapter provisions the forecast times this quantile of its recent realised /
    # forecast ratios instead of the fixed margin (None: the margin)
    forecast_quantile: float | None = None

    def initial_state(self, fixed: Configuration | None = None) -> PolicyState:
        """The state before the first call; ``fixed`` gives ``static`` its configuration up front."""
        if fixed is not None:
            if self.rule is not static:
                raise ConfigError(f"only policy 'static' takes a fixed configuration, not {self.name!r}")
            if picks_of(self.context.template, fixed) is None:
                raise ConfigError(f"configuration {fixed.to_json()} does not fit the pipeline's stages, "
                                  f"variants and batch sizes")
        return PolicyState(fixed=fixed)

    def __call__(self, observation: Observation, state: PolicyState) -> tuple[Decision, PolicyState]:
        return self.rule(observation, state, self.context)

    @property
    def pins(self) -> dict:
        t = self.context.template
        return {"variants": dict(t.pinned_variants), "replicas": dict(t.pinned_replicas)}


def _settings(name: str, options: dict | None, pipeline) -> tuple[object | None, list[str]]:
    """The policy's settings (None for a policy without options) from ``options`` over the
    pipeline's ``policy_options[name]`` (the catalogue's), and the option names given."""
    from_catalogue = (pipeline.params.get("policy_options") or {}).get(name) if pipeline is not None else None
    merged = {**(from_catalogue or {}), **(options or {})}
    if name not in SETTINGS:
        if merged:
            raise ConfigError(f"policy {name} takes no options (got {sorted(merged)}); "
                              f"options are for {', '.join(SETTINGS)}")
        return None, []
    return settings_from(SETTINGS[name], merged, name), list(merged)


def policy_options(name: str, options: dict | None, pipeline=None) -> dict:
    """The options given (``options`` over the catalogue's), typed against the policy's settings:
    what a run records. A bad name or value, or options for a policy that takes none, raise
    ``ConfigError`` naming the option."""
    settings, given = _settings(name, options, pipeline)
    return {key: getattr(settings, key) for key in given}


def policy_pipeline(name: str, pipeline):
    """The pipeline as policy ``name`` provisions it: a baseline's base allocations follow the
    catalogue's ``baseline_threshold_rps`` where the pipeline gives one (what a run's cores are
    checked against)."""
    own_threshold = pipeline.params.get("baseline_threshold_rps") if pipeline is not None else None
    if REGISTRY[name].baseline_threshold and own_threshold:
        return pipeline.with_threshold(float(own_threshold))
    return pipeline


def make_policy(name: str, pipeline, *, sla_s: float | None = None, alpha: float | None = None,
                beta: float | None = None, gamma: float | None = None, statistic: str | None = None,
                accuracy_method: str | None = None, solver: str | pulp.LpSolver = DEFAULT_SOLVER,
                time_limit_s: float | None = DEFAULT_TIME_LIMIT_S,
                peak_rate_rps: float | None = None, options: dict | None = None,
                interval_s: float = DEFAULT_INTERVAL_S) -> Policy:
    """A policy for ``pipeline``; every bad option raises ``ConfigError`` here, never in a call."""
    if name not in POLICIES:
        raise ConfigError(f"unknown policy {name!r}; use one of {', '.join(POLICIES)}")
    kind = REGISTRY[name]
    settings, _ = _settings(name, options, pipeline)
    pipeline = policy_pipeline(name, pipeline)
    rule = kind.rule or autoscaler_rule(kind.step, settings)
    plus = settings if isinstance(settings, IpaPlusSettings) else None
    pinned_variants = kind.variants(pipeline)
    pinned_replicas = rim_replicas(pipeline, peak_rate_rps) if kind.pins_replicas else None
    template = problem_from_pipeline(pipeline, 1.0, sla_s=sla_s, alpha=alpha, beta=beta, gamma=gamma,
                                     statistic=statistic, accuracy_method=accuracy_method,
                                     pinned_variants=pinned_variants, pinned_replicas=pinned_replicas,
                                     switch_interval_s=float(interval_s) if plus and plus.switch_cost else None)
    context = Context(template, make_solver(solver, time_limit_s), solver_name(solver), time_limit_s)
    return Policy(name, rule, context, plus.forecast_quantile if plus else None)


__all__ = ["AUTOSCALERS", "SETTINGS", "DEFAULT_TIME_LIMIT_S", "Observation", "PAPER_POLICIES", "POLICIES", "PREDICTOR_OF",
           "Policy", "PolicyState", "make_policy", "policy_options", "policy_pipeline"]
