"""A profiled pipeline: the catalogue's declaration joined with the profiles, plus the
parameters the paper derives from them (base core allocation per variant, SLA, drop limit).

Everything downstream (optimiser, simulator, servers, analysis) reads a ``Pipeline``.
"""
from __future__ import annotations

import copy

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from ipa.errors import CatalogueError, ConfigError
from ipa.pipelines.catalogue import Catalogue, PipelineSpec, Stage, load_catalogue
from ipa.pipelines.profiles import ProfileRow, ProfileTable, load_profiles


@dataclass(frozen=True)
class StageProfile:
    """What the optimiser needs of one (stage, variant): accuracy, base cores, per-batch rows."""

    stage: str
    variant: str
    accuracy: float
    rank_accuracy: float  # rank-normalised accuracy within the stage, in [0, 1]
    base_cores: int
    threshold_met: bool  # False when even the largest profiled core count misses the threshold rate
    rows: Mapping[int, ProfileRow]  # batch -> row at base_cores
    start_floor_s: float = 0.0  # the pipeline's replica_start_s

    def latency(self, batch: int, statistic: str) -> float:
        return self.rows[batch].latency(statistic)

    def throughput(self, batch: int) -> float:
        return self.rows[batch].throughput_rps

    @property
    def load_time_s(self) -> float:
        """How long a new replica takes before it serves: the profiled load time (build + load
        of the model), at least the pipeline's ``replica_start_s`` (on the paper's cluster a
        change took ~8 s to apply, fact 22: process and pod start, model download)."""
        return max(next(iter(self.rows.values())).load_time_s, self.start_floor_s)


class Pipeline:
    """A pipeline with its profiles attached and its derived parameters computed."""

    def __init__(self, spec: PipelineSpec, profiles: ProfileTable):
        self.spec = spec
        self.profiles = profiles
        self.params: Mapping[str, Any] = spec.params
        for stage in spec.stages:
            for v in stage.variants:
                profiles.get(stage.profile_key(v), 1, 1)  # raises ProfileMissing with the key's name
        self._base_cores, self.stage_sla_s, self._threshold_met = self._derive_allocation()

    def with_threshold(self, threshold_rps: float) -> "Pipeline":
        """The same pipeline with base allocations derived for another threshold rate (trace
        units, scaled like the pipeline's own), under this pipeline's stage SLAs: the SLA is
        the pipeline's, one for every policy, while a baseline may have been configured with
        its own threshold (fact 16: sum-qa's FA2-low and RIM used 1, IPA 5)."""
        other = copy.copy(self)
        other.__dict__.pop("stage_profiles", None)  # cached from this pipeline's allocation
        scaled = float(threshold_rps) * self.load_scale
        other._base_cores, other._threshold_met = self._allocate(scaled, self.stage_sla_s)
        return other

    # --- identity ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.spec.stages

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.spec.stages)

    # --- parameters -------------------------------------------------------------------------
    @property
    def sla_s(self) -> float:
        """Pipeline SLA: the sum of the stage SLAs (fact 15, sla_factor applied once)."""
        return sum(self.stage_sla_s.values())

    @property
    def drop_limit_s(self) -> float:
        explicit = self.params.get("drop_limit_s")
        return float(explicit) if explicit else float(self.params["drop_limit_factor"]) * self.sla_s

    @property
    def load_scale(self) -> float:
        """Every request rate of this pipeline's runs is the trace's times this (see README,
        "Load scale"): the paper's 96-core Xeons and this project's profiling machine price the
        same rate differently, and the scale makes the costs comparable."""
        return float(self.params["load_scale"])

    @property
    def threshold_rps(self) -> float:
        """The per-replica rate a base allocation must reach (fact 16), in the scaled load."""
        return float(self.params["threshold_rps"]) * self.load_scale

    @property
    def batching_cap(self) -> int:
        return int(self.params["batching_cap"])

    @property
    def scaling_cap(self) -> int:
        return int(self.params["scaling_cap"])

    @property
    def latency_statistic(self) -> str:
        return str(self.params["latency_statistic"])

    def batch_sizes(self, stage: str, variant: str) -> list[int]:
        """Profiled batch sizes of (stage, variant) allowed by the batching cap."""
        key = self.spec.stage(stage).profile_key(variant)
        allowed = [b for b in self.profiles.batches(key) if b <= self.batching_cap]
        return [b for b in allowed if b in self.params["batch_sizes"] or b == 1]

    # --- per-variant data -------------------------------------------------------------------
    def base_cores(self, stage: str, variant: str) -> int:
        return self._base_cores[(stage, self.spec.stage(stage).variant(variant).name)]

    @cached_property
    def stage_profiles(self) -> dict[str, tuple[StageProfile, ...]]:
        """Per stage, one ``StageProfile`` per variant, least accurate first."""
        out: dict[str, tuple[StageProfile, ...]] = {}
        for stage in self.stages:
            ordered = stage.by_accuracy
            n = len(ordered)
            profs = []
            for rank, v in enumerate(ordered):
                cores = self._base_cores[(stage.name, v.name)]
                key = stage.profile_key(v)
                rows = {b: self.profiles.get(key, b, cores) for b in self.batch_sizes(stage.name, v.name)}
                profs.append(StageProfile(stage.name, v.name, v.accuracy, rank / (n - 1) if n > 1 else 1.0,
                                          cores, self._threshold_met[(stage.name, v.name)], rows,
                                          float(self.params.get("replica_start_s", 0.0))))
            out[stage.name] = tuple(profs)
        return out

    def stage_profile(self, stage: str, variant: str) -> StageProfile:
        name = self.spec.stage(stage).variant(variant).name
        for p in self.stage_profiles[stage]:
            if p.variant == name:
                return p
        raise CatalogueError(f"no profile for {stage}/{variant}")  # unreachable: variant() raised

    # --- derivation -------------------------------------------------------------------------
    def _derive_allocation(self):
        """Base cores per variant and SLA per stage, as the paper defines them (facts 15, 16).

        The two depend on each other (the base allocation must meet the threshold rate within
        the stage SLA; the stage SLA is sla_factor x the mean batch-1 latency at the base
        allocation), so iterate from the SLA-free allocation to a fixed point.
        """
        factor = float(self.params["sla_factor"])
        stage_sla = {s.name: math.inf for s in self.stages}
        for _ in range(20):
            base, met = self._allocate(self.threshold_rps, stage_sla)
            new_sla = {}
            for stage in self.stages:
                lat = [self.profiles.get(stage.profile_key(v), 1, base[(stage.name, v.name)]).latency_mean_s
                       for v in stage.variants]
                new_sla[stage.name] = factor * sum(lat) / len(lat)
            if new_sla == stage_sla:
                break
            stage_sla = new_sla
        return base, stage_sla, met

    def _allocate(self, threshold: float, stage_sla: Mapping[str, float]
                  ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], bool]]:
        """Base cores per variant for a threshold rate under given stage SLAs (fact 16), and
        whether each variant reached the threshold."""
        statistic = self.latency_statistic
        base: dict[tuple[str, str], int] = {}
        met: dict[tuple[str, str], bool] = {}
        for stage in self.stages:
            floor = 1
            for v in stage.by_accuracy:
                key = stage.profile_key(v)
                chosen = None
                for cores in self.profiles.cores(key):
                    if cores < floor:
                        continue
                    for b in self.batch_sizes(stage.name, v.name):
                        row = self.profiles.get(key, b, cores)
                        if row.throughput_rps >= threshold and row.latency(statistic) <= stage_sla[stage.name]:
                            chosen = cores
                            break
                    if chosen is not None:
                        break
                met[(stage.name, v.name)] = chosen is not None
                if chosen is None:
                    chosen = self._most_efficient_cores(stage, v, floor, stage_sla[stage.name])
                base[(stage.name, v.name)] = chosen
                floor = chosen  # a more accurate variant never gets fewer cores (fact 16)
        return base, met

    def _most_efficient_cores(self, stage: Stage, variant, floor: int, stage_sla: float) -> int:
        """The base allocation of a variant that reaches the threshold rate at no core count.

        The paper's rule (fact 16) does not say; giving such a variant the largest count would
        price every replica of a poorly scaling model (a generation loop speeds up 1.4x from 1 to
        16 cores) at 16 cores for little more throughput. Instead: among the counts >= ``floor``
        whose latency fits the stage SLA, the one with the most throughput per core (the fewest
        cores on a tie), so the variant scales out in replicas; when none fits the SLA, the
        fastest (largest) count.
        """
        key = stage.profile_key(variant)
        options = [c for c in self.profiles.cores(key) if c >= floor]
        if not options:
            return floor
        best, best_rate = None, -1.0
        batches = self.batch_sizes(stage.name, variant.name)
        for cores in options:
            rows = [self.profiles.get(key, b, cores) for b in batches]
            rates = [r.throughput_rps / cores for r in rows if r.latency(self.latency_statistic) <= stage_sla]
            if rates and max(rates) > best_rate * (1 + 1e-9):
                best, best_rate = cores, max(rates)
        return best if best is not None else max(options)

    # --- evaluating a configuration ----------------------------------------------------------
    def accuracy(self, variants: Mapping[str, str], method: str | None = None) -> float:
        """Pipeline accuracy of one variant per stage: PAS (product) or rank-normalised sum."""
        method = method or str(self.params["accuracy_method"])
        if method == "pas":
            return math.prod(self.stage_profile(s, variants[s]).accuracy for s in self.stage_names)
        if method == "rank_sum":
            return sum(self.stage_profile(s, variants[s]).rank_accuracy for s in self.stage_names)
        raise ConfigError(f"unknown accuracy method {method!r}; use 'pas' or 'rank_sum'")

    def check(self, configuration) -> None:
        """A clear error for a configuration that cannot run this pipeline: every stage, in order,
        a variant of the catalogue, and at least one replica, batch and core (a stage without a
        replica cannot answer, on any backend)."""
        if list(configuration.stages) != list(self.stage_names):
            raise ConfigError(f"configuration stages {list(configuration.stages)} do not match pipeline "
                              f"{self.name!r} stages {list(self.stage_names)}")
        for name, s in configuration.stages.items():
            self.stage_profile(name, s.variant)  # raises naming the unknown variant
            if s.batch < 1 or s.replicas < 1 or s.cores < 1:
                raise ConfigError(f"stage {name!r}: batch, replicas and cores must be >= 1, got "
                                  f"batch={s.batch} replicas={s.replicas} cores={s.cores}")

    def describe(self) -> dict:
        """A JSON-ready description: stages, variants, accuracy, profiles at base cores, SLA."""
        stages = []
        for stage in self.stages:
            variants = []
            for p in self.stage_profiles[stage.name]:
                v = stage.variant(p.variant)
                variants.append({
                    "variant": v.name, "metric": v.metric, "metric_value": v.metric_value,
                    "higher_is_better": v.higher_is_better, "accuracy": p.accuracy,
                    "source": v.source, "base_cores": p.base_cores, "threshold_met": p.threshold_met,
                    "load_time_s": p.load_time_s, "profile_key": stage.profile_key(v),
                    "profile": [{"batch": b, "cores": r.cores, "latency_p50_s": r.latency_p50_s,
                                 "latency_p99_s": r.latency_p99_s, "latency_mean_s": r.latency_mean_s,
                                 "throughput_rps": r.throughput_rps, "source": r.source, "model": r.model}
                                for b, r in sorted(p.rows.items())],
                })
            stages.append({"name": stage.name, "task": stage.task, "input": stage.input.id,
                           "sla_s": self.stage_sla_s[stage.name], "variants": variants})
        return {"pipeline": self.name, "description": self.spec.description, "sla_s": self.sla_s,
                "load_scale": self.load_scale, "threshold_rps": self.threshold_rps,
                "drop_limit_s": self.drop_limit_s,
                "params": {k: v for k, v in self.params.items()}, "stages": stages}


def load_pipeline(name: str, catalogue: Catalogue | None = None, profiles: ProfileTable | None = None,
                  overrides: Mapping[str, Mapping[str, Any]] | None = None,
                  profiles_path: Path | None = None) -> Pipeline:
    catalogue = catalogue or load_catalogue(overrides=overrides)
    return Pipeline(catalogue.pipeline(name), profiles or load_profiles(profiles_path))

