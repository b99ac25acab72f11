"""What an adapter chooses: per stage a variant, a batch size and a replica count."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class StageConfig:
    variant: str
    batch: int
    replicas: int
    cores: int  # per replica: the variant's base allocation

    @property
    def total_cores(self) -> int:
        return self.replicas * self.cores


@dataclass(frozen=True)
class Configuration:
    """One configuration of a whole pipeline, stages in pipeline order."""

    stages: Mapping[str, StageConfig]

    @property
    def total_cores(self) -> int:
        return sum(s.total_cores for s in self.stages.values())

    @property
    def variants(self) -> dict[str, str]:
        return {name: s.variant for name, s in self.stages.items()}

    def __getitem__(self, stage: str) -> StageConfig:
        return self.stages[stage]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(s) for name, s in self.stages.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> "Configuration":
        return cls({name: StageConfig(**s) for name, s in d.items()})

    def changes_from(self, other: "Configuration | None") -> int:
        """How many stage knobs (variant, batch, replicas) differ from ``other``."""
        if other is None:
            return 3 * len(self.stages)
        n = 0
        for name, s in self.stages.items():
            o = other.stages.get(name)
            if o is None:
                n += 3
                continue
            n += (s.variant != o.variant) + (s.batch != o.batch) + (s.replicas != o.replicas)
        return n


@dataclass(frozen=True)
class Decision:
    """A policy's answer for one adaptation interval."""

    configuration: Configuration
    feasible: bool
    reason: str = ""            # why infeasible, or empty
    objective: float = float("nan")
    accuracy: float = float("nan")
    cost_cores: int = 0
    latency_s: float = float("nan")  # modelled end-to-end latency at the rate it was solved for
    solve_time_s: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)
