"""What a policy sees each adaptation interval, and the state it carries between intervals."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ipa.configuration import Configuration

DEFAULT_INTERVAL_S = 10  # a decision every 10 s (fact 22): the adapter's clock, ipa-plus's switch amortisation


@dataclass(frozen=True)
class Observation:
    time_s: float
    rate_rps: float                      # the load to provision for (the adapter applied its margin)
    current: Configuration | None = None  # what runs now; ties are broken towards it
    # each stage's measured load (ipa.monitoring.reading.StageSeries), for the autoscalers that act on
    # it; empty at the first decision and where the backend could not read it
    stages: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyState:
    decisions: int = 0
    fixed: Configuration | None = None  # `static`: the configuration it keeps; autoscalers: their first
    scaler: Any = None                  # an autoscaler's own state (ipa.policies.autoscalers.ScalerState)
