"""The knobs each baseline pins, from the pipeline (its params override the defaults)."""
from __future__ import annotations

import math
from typing import Mapping

from ipa.errors import ConfigError
from ipa.optimizer.problem import min_replicas, stage_options


def fa2_variants(pipeline, level: str) -> dict[str, str]:
    """FA2 (fact 29): one variant per stage, the least (`low`) or most (`high`) accurate unless
    the pipeline's ``fa2_low``/``fa2_high`` param names one (stage -> variant, partial allowed)."""
    override: Mapping[str, str] = pipeline.params.get(f"fa2_{level}") or {}
    for stage in override:
        pipeline.spec.stage(stage)  # names an unknown stage
    out = {}
    for stage in pipeline.stage_names:
        if stage in override:
            out[stage] = pipeline.spec.stage(stage).variant(override[stage]).name
        else:
            ordered = pipeline.stage_profiles[stage]  # least accurate first
            out[stage] = (ordered[0] if level == "low" else ordered[-1]).variant
    return out


def rim_replicas(pipeline, peak_rate_rps: float | None) -> dict[str, int]:
    """RIM (fact 30): replicas per stage pinned high for the run. By default what FA2-high's
    variant of the stage (fact 29's heavier set) needs at batch 1 to carry the workload's
    *peak* rate, capped at scaling_cap: the paper's counts (e.g. audio-qa 27/6) carry its
    heavier variants through the bursts, which is why only RIM beats IPA's latency (fact 38).
    The pipeline's ``rim_replicas`` param (stage -> count, partial allowed) overrides."""
    override: Mapping[str, int] = pipeline.params.get("rim_replicas") or {}
    for stage, count in override.items():
        pipeline.spec.stage(stage)
        if not isinstance(count, int) or not 1 <= count <= pipeline.scaling_cap:
            raise ConfigError(f"rim_replicas[{stage!r}] must be an integer in [1, {pipeline.scaling_cap}], got {count!r}")
    out = {}
    options = {s.name: s.options for s in stage_options(pipeline)}
    heavy = fa2_variants(pipeline, "high")
    for stage in pipeline.stage_names:
        if stage in override:
            out[stage] = override[stage]
            continue
        if peak_rate_rps is None or not (math.isfinite(peak_rate_rps) and peak_rate_rps > 0):
            raise ConfigError(f"policy rim needs the workload's peak rate (peak_rate_rps, a finite number > 0, "
                              f"got {peak_rate_rps!r}) or rim_replicas for stage {stage!r} in the pipeline params")
        one = next(o for o in options[stage] if o.variant == heavy[stage] and o.batch == 1)
        out[stage] = min(pipeline.scaling_cap, min_replicas(one, peak_rate_rps))
    return out
