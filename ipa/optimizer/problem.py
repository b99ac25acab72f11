"""The optimisation problem as plain data, and everything that can be said about a choice
without a solver: its metrics, its feasibility, the fallback when nothing is feasible.

A ``Problem`` is built from a ``Pipeline`` (``problem_from_pipeline``) or directly (tests,
synthetic benchmarks). The ILP (``model.py``) and the brute force (``brute_force.py``) both read
it through ``allowed_options``/``replica_bounds``/``evaluate`` so they cannot disagree on what a
configuration costs or whether it meets the constraints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError

ACCURACY_METHODS = ("pas", "rank_sum")


@dataclass(frozen=True)
class Option:
    """One (variant, batch) choice of a stage, with its profile at the variant's base cores."""

    variant: str
    batch: int
    base_cores: int
    latency_s: float       # profiled latency of one batch at the chosen statistic
    throughput_rps: float  # per replica
    accuracy: float        # in [0, 1]
    rank_accuracy: float   # rank-normalised within the stage, in [0, 1]
    load_time_s: float = 0.0  # a new replica's start to ready (what a switch to this variant waits)


@dataclass(frozen=True)
class StageOptions:
    name: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Problem:
    """Everything one decision depends on. Pins restrict it (baselines); ``current`` only
    breaks ties between equally good answers (fewest changes)."""

    stages: tuple[StageOptions, ...]
    rate_rps: float
    sla_s: float
    alpha: float
    beta: float
    gamma: float
    scaling_cap: int
    accuracy_method: str = "pas"
    pinned_variants: Mapping[str, str] = field(default_factory=dict)
    pinned_replicas: Mapping[str, int] = field(default_factory=dict)
    current: Configuration | None = None
    # ipa-plus's switch cost: a changed variant's new replicas hold their cores for their load time
    # before serving; spread over the interval the decision lasts (None: switches are free)
    switch_interval_s: float | None = None

    def __post_init__(self) -> None:
        check_rate(self.rate_rps)
        if self.switch_interval_s is not None and not (math.isfinite(self.switch_interval_s)
                                                       and self.switch_interval_s > 0):
            raise ConfigError(f"switch_interval_s must be a finite number > 0 or None, got {self.switch_interval_s!r}")
        if not self.stages:
            raise ConfigError("a problem needs at least one stage")
        for s in self.stages:
            if not s.options:
                raise ConfigError(f"stage {s.name!r} has no (variant, batch) option")
            for o in s.options:
                if not (o.latency_s > 0 and math.isfinite(o.latency_s)
                        and o.throughput_rps > 0 and math.isfinite(o.throughput_rps)
                        and o.batch >= 1 and o.base_cores >= 1):
                    raise ConfigError(f"stage {s.name!r}, option {o}: latency and throughput must be "
                                      f"finite and positive, batch and base cores >= 1")
        for name in ("alpha", "beta", "gamma"):
            check_weight(name, getattr(self, name))
        if not isinstance(self.scaling_cap, int) or self.scaling_cap < 1:
            raise ConfigError(f"scaling_cap must be an integer >= 1, got {self.scaling_cap!r}")
        if self.accuracy_method not in ACCURACY_METHODS:
            raise ConfigError(f"accuracy_method must be one of {ACCURACY_METHODS}, got {self.accuracy_method!r}")
        names = [s.name for s in self.stages]
        for stage, variant in self.pinned_variants.items():
            if stage not in names:
                raise ConfigError(f"variant pin for unknown stage {stage!r}; stages: {names}")
            known = sorted({o.variant for o in self.stage(stage).options})
            if variant not in known:
                raise ConfigError(f"variant pin {variant!r} for stage {stage!r} is not one of {known}")
        for stage, replicas in self.pinned_replicas.items():
            if stage not in names:
                raise ConfigError(f"replica pin for unknown stage {stage!r}; stages: {names}")
            if not isinstance(replicas, int) or not 1 <= replicas <= self.scaling_cap:
                raise ConfigError(f"replica pin for stage {stage!r} must be an integer in "
                                  f"[1, scaling_cap={self.scaling_cap}], got {replicas!r}")
        fastest = fastest_latency_s(self.stages)
        if not (math.isfinite(self.sla_s) and self.sla_s >= fastest):
            raise ConfigError(f"SLA {self.sla_s!r} s is below the fastest possible end-to-end latency "
                              f"{fastest:.4g} s (each stage's fastest option, no batching wait); "
                              f"use an SLA >= {fastest:.4g} s")

    def stage(self, name: str) -> StageOptions:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"no stage {name!r}; stages: {[s.name for s in self.stages]}")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)


def check_rate(rate_rps: float) -> None:
    if not (isinstance(rate_rps, (int, float)) and math.isfinite(rate_rps) and rate_rps > 0):
        raise ConfigError(f"arrival rate must be a finite number > 0 requests/s, got {rate_rps!r}")


def check_weight(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"weight {name} must be a finite number >= 0, got {value!r}")


def fastest_latency_s(stages: Sequence[StageOptions]) -> float:
    """The rate-independent lower bound of any configuration's latency."""
    return sum(min(o.latency_s for o in s.options) for s in stages)


# --- per-option quantities shared by the ILP and the brute force ----------------------------

def min_replicas(option: Option, rate_rps: float) -> int:
    """Fewest replicas whose combined throughput reaches the rate (exact in floats)."""
    n = max(1, math.ceil(rate_rps / option.throughput_rps))
    while n > 1 and (n - 1) * option.throughput_rps >= rate_rps:
        n -= 1
    while n * option.throughput_rps < rate_rps:
        n += 1
    return n


def option_latency_s(option: Option, rate_rps: float) -> float:
    """Profiled latency plus the worst-case wait for a batch to fill, (b - 1) / rate (fact 12)."""
    return option.latency_s + (option.batch - 1) / rate_rps


def replica_bounds(problem: Problem, stage: str) -> tuple[int, int]:
    pinned = problem.pinned_replicas.get(stage)
    return (pinned, pinned) if pinned is not None else (1, problem.scaling_cap)


def replicas_for(problem: Problem, stage: str, option: Option) -> int:
    """The replica count that is best for ``option``, lexicographically (objective, then changes).

    Cores cost beta > 0 each, so the fewest replicas carrying the load win; the current count
    is kept instead only when that costs nothing (beta = 0, or it is the fewest anyway). Pinned
    replicas are the pin.
    """
    lo, hi = replica_bounds(problem, stage)
    if lo == hi:
        return hi
    need = min_replicas(option, problem.rate_rps)
    current = problem.current.stages.get(stage) if problem.current is not None else None
    if current is not None and problem.beta == 0 and need <= current.replicas <= hi:
        return current.replicas
    return need


def allowed_options(problem: Problem, stage: StageOptions) -> list[tuple[int, Option]]:
    """(index, option) pairs that respect the pins and can carry the rate within the replica
    bounds; the others cannot be part of any feasible answer, so the model never sees them."""
    pinned = problem.pinned_variants.get(stage.name)
    _, hi = replica_bounds(problem, stage.name)
    return [(i, o) for i, o in enumerate(stage.options)
            if (pinned is None or o.variant == pinned) and min_replicas(o, problem.rate_rps) <= hi]


# --- a choice and what it is worth -----------------------------------------------------------

Pick = tuple[Option, int]  # (option, replicas) for one stage


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    cost_cores: int
    batch_sum: int
    latency_s: float
    objective: float
    feasible: bool
    reason: str
    changes: int


def pipeline_accuracy(problem: Problem, options: Sequence[Option]) -> float:
    if problem.accuracy_method == "pas":
        return math.prod(o.accuracy for o in options)
    return sum(o.rank_accuracy for o in options)


def stage_changes(problem: Problem, stage: str, option: Option, replicas: int) -> int:
    """Changed knobs (variant, batch, replicas) of one stage against the current configuration."""
    c = problem.current.stages.get(stage) if problem.current is not None else None
    if c is None:
        return 3
    return (c.variant != option.variant) + (c.batch != option.batch) + (c.replicas != replicas)


def switch_cores(problem: Problem, stage: str, option: Option, replicas: int) -> float:
    """Cores a variant change holds without serving, averaged over the decision's interval:
    the new replicas' cores x their load time / interval (0 when the variant stays, with no
    current configuration, or without a switch cost)."""
    if problem.switch_interval_s is None or problem.current is None:
        return 0.0
    c = problem.current.stages.get(stage)
    if c is None or c.variant == option.variant:
        return 0.0
    return option.base_cores * replicas * option.load_time_s / problem.switch_interval_s


def option_penalty(problem: Problem, stage: str, option: Option, replicas: int) -> float:
    """What one stage's choice subtracts from the objective: its cores (and the cores a switch
    idles), its batch size."""
    return (problem.beta * (option.base_cores * replicas + switch_cores(problem, stage, option, replicas))
            + problem.gamma * option.batch)


def changes(problem: Problem, picks: Sequence[Pick]) -> int:
    return sum(stage_changes(problem, s.name, o, r) for s, (o, r) in zip(problem.stages, picks))


def evaluate(problem: Problem, picks: Sequence[Pick]) -> Evaluation:
    """Metrics of one (option, replicas) per stage, in stage order, and whether it is feasible."""
    options = [o for o, _ in picks]
    accuracy = pipeline_accuracy(problem, options)
    cores = sum(o.base_cores * r for o, r in picks)
    batches = sum(o.batch for o in options)
    latency = sum(option_latency_s(o, problem.rate_rps) for o in options)
    objective = problem.alpha * accuracy - sum(option_penalty(problem, s.name, o, r)
                                               for s, (o, r) in zip(problem.stages, picks))
    reasons = []
    for stage, (o, r) in zip(problem.stages, picks):
        if r * o.throughput_rps < problem.rate_rps:
            reasons.append(f"stage {stage.name}: {r} replicas x {o.throughput_rps:.4g} rps = "
                           f"{r * o.throughput_rps:.4g} rps < load {problem.rate_rps:.4g} rps")
    if latency > problem.sla_s:
        reasons.append(f"latency {latency:.4g} s > SLA {problem.sla_s:.4g} s")
    return Evaluation(accuracy, cores, batches, latency, objective, not reasons, "; ".join(reasons),
                      changes(problem, picks))


def to_configuration(problem: Problem, picks: Sequence[Pick]) -> Configuration:
    return Configuration({s.name: StageConfig(o.variant, o.batch, r, o.base_cores)
                          for s, (o, r) in zip(problem.stages, picks)})


def picks_of(problem: Problem, configuration: Configuration) -> list[Pick] | None:
    """The problem's (option, replicas) per stage for a configuration, or None if it does not fit
    the problem (a stage, variant or batch the problem does not have)."""
    picks = []
    for s in problem.stages:
        c = configuration.stages.get(s.name)
        match = None if c is None else next(
            (o for o in s.options if o.variant == c.variant and o.batch == c.batch), None)
        if match is None:
            return None
        picks.append((match, c.replicas))
    return picks


# --- infeasibility: which constraint, and what to run instead --------------------------------

def infeasibility(problem: Problem) -> str:
    """Why no configuration meets the problem's constraints, or '' if one does.

    Exact without a solver: throughput is per stage, and the latency constraint is a sum of
    per-stage terms, so the fastest load-carrying option of each stage decides it.
    """
    reasons = []
    fastest = 0.0
    for s in problem.stages:
        ok = allowed_options(problem, s)
        if not ok:
            _, hi = replica_bounds(problem, s.name)
            pinned = problem.pinned_variants.get(s.name)
            best = max((o for o in s.options if pinned is None or o.variant == pinned),
                       key=lambda o: o.throughput_rps)
            reasons.append(f"stage {s.name}: at most {hi} replicas x {best.throughput_rps:.4g} rps "
                           f"({best.variant}, batch {best.batch}) = {hi * best.throughput_rps:.4g} rps "
                           f"< load {problem.rate_rps:.4g} rps")
        else:
            fastest += min(option_latency_s(o, problem.rate_rps) for _, o in ok)
    if reasons:
        return "throughput: " + "; ".join(reasons)
    if fastest > problem.sla_s:
        return (f"latency: the fastest configuration carrying {problem.rate_rps:.4g} rps takes "
                f"{fastest:.4g} s > SLA {problem.sla_s:.4g} s")
    return ""


def fallback_picks(problem: Problem) -> list[Pick]:
    """What to run when nothing is feasible (pins respected).

    A stage that cannot carry the load runs its highest-throughput option at its replica cap:
    the most the pipeline can serve. A stage that can carry it runs, among the options that
    do, the one with the lowest latency, with the fewest replicas that carry the load: when only
    the SLA is out of reach this violates it the least and still serves every request.
    """
    picks = []
    for s in problem.stages:
        lo, hi = replica_bounds(problem, s.name)
        ok = [o for _, o in allowed_options(problem, s)]
        if ok:
            o = min(ok, key=lambda o: (option_latency_s(o, problem.rate_rps), -o.accuracy, o.variant, o.batch))
            picks.append((o, max(lo, min_replicas(o, problem.rate_rps))))
        else:
            pinned = problem.pinned_variants.get(s.name)
            o = max((o for o in s.options if pinned is None or o.variant == pinned),
                    key=lambda o: (o.throughput_rps, -o.latency_s, o.accuracy))
            picks.append((o, hi))
    return picks


# --- from a profiled pipeline -----------------------------------------------------------------

def stage_options(pipeline, statistic: str | None = None) -> tuple[StageOptions, ...]:
    """Per stage, one option per (variant, allowed batch) at the variant's base cores."""
    statistic = statistic or pipeline.latency_statistic
    out = []
    for stage in pipeline.stage_names:
        opts = []
        for p in pipeline.stage_profiles[stage]:
            for b in sorted(p.rows):
                opts.append(Option(p.variant, b, p.base_cores, p.latency(b, statistic), p.throughput(b),
                                   p.accuracy, p.rank_accuracy, p.load_time_s))
        out.append(StageOptions(stage, tuple(opts)))
    return tuple(out)


def problem_from_pipeline(pipeline, rate_rps: float, *, sla_s: float | None = None,
                          alpha: float | None = None, beta: float | None = None,
                          gamma: float | None = None, statistic: str | None = None,
                          accuracy_method: str | None = None, scaling_cap: int | None = None,
                          pinned_variants: Mapping[str, str] | None = None,
                          pinned_replicas: Mapping[str, int] | None = None,
                          current: Configuration | None = None,
                          switch_interval_s: float | None = None) -> Problem:
    """A problem with the pipeline's parameters, each overridable. Pinned variant names may be
    short (``resnet-18``) or full (``microsoft/resnet-18``)."""
    params = pipeline.params
    if statistic is not None and statistic not in ("p50", "p99", "mean"):
        raise ConfigError(f"latency statistic must be one of p50, p99, mean; got {statistic!r}")
    variants = {s: pipeline.spec.stage(s).variant(v).name for s, v in (pinned_variants or {}).items()}
    for s in (pinned_replicas or {}):
        pipeline.spec.stage(s)  # names the unknown stage
    return Problem(
        stages=stage_options(pipeline, statistic),
        rate_rps=rate_rps,
        sla_s=pipeline.sla_s if sla_s is None else sla_s,
        alpha=float(params["alpha"]) if alpha is None else alpha,
        beta=float(params["beta"]) if beta is None else beta,
        gamma=float(params["gamma"]) if gamma is None else gamma,
        scaling_cap=pipeline.scaling_cap if scaling_cap is None else scaling_cap,
        accuracy_method=accuracy_method or str(params["accuracy_method"]),
        pinned_variants=variants,
        pinned_replicas=dict(pinned_replicas or {}),
        current=current,
        switch_interval_s=switch_interval_s,
    )
