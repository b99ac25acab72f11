"""What a policy sees each adaptation interval, and the state it carries between intervals."""
from __future__ import annotations

from dataclasses import dataclass

from ipa.configuration import Configuration


@dataclass(frozen=True)
class Observation:
    time_s: float
    rate_rps: float                      # the load to provision for (the adapter applied its margin)
    current: Configuration | None = None  # what runs now; ties are broken towards it


@dataclass(frozen=True)
class PolicyState:
    decisions: int = 0
    fixed: Configuration | None = None  # `static`: the configuration it keeps
