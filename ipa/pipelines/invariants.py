"""Physical invariants of a latency profile, checked whenever profiles are loaded or assembled.

For one profile key, with latency L(b, c) at batch b on c cores:

* **batch**: at fixed cores, latency does not fall as the batch grows (more work never takes
  less time): L(b', c) >= L(b, c) for b' > b;
* **cores**: at fixed batch, latency does not rise with cores: L(b, c') <= L(b, c) for c' > c;
* **speedup**: more cores never help more than their ratio: L(b, c) / L(b, c') <= c' / c.

Each is checked on the median (p50), the mean and the p99 of the rows. A measured value is
uncertain: two cells are only in conflict when they differ by more than their medians'
confidence intervals allow (``ci_low_s`` / ``ci_high_s`` of the rows, as a relative width
applied to every statistic). A modelled row carries its anchor's interval. A violation is a
measurement error to re-measure, never a fact to fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from ipa.pipelines.profiles import ProfileRow

STATISTICS = ("latency_p50_s", "latency_mean_s", "latency_p99_s")
INVARIANTS = ("batch", "cores", "speedup")
DESCRIPTION = {
    "batch": "latency falls as the batch grows",
    "cores": "latency rises with cores",
    "speedup": "speedup exceeds the core ratio",
}


@dataclass(frozen=True)
class Violation:
    key: str
    invariant: str  # one of INVARIANTS
    statistic: str
    row: tuple[int, int]    # (batch, cores) of the row that breaks it
    other: tuple[int, int]  # (batch, cores) it is compared with
    detail: str

    def __str__(self) -> str:
        b, c = self.row
        return f"{self.key} batch {b} cores {c}: {DESCRIPTION[self.invariant]} ({self.statistic}: {self.detail})"


def _rel_low(r: "ProfileRow") -> float:
    """How far below its median the row's true median may lie, relative."""
    return max(0.0, (r.latency_p50_s - r.ci_low_s) / r.latency_p50_s) if r.ci_low_s > 0 else 0.0


def _rel_high(r: "ProfileRow") -> float:
    return max(0.0, (r.ci_high_s - r.latency_p50_s) / r.latency_p50_s) if r.ci_high_s > 0 else 0.0


def _pairs(rows: Sequence["ProfileRow"]):
    """(smaller, larger) pairs of rows of one key along batch (same cores) and cores (same batch)."""
    by_cores: dict[int, list] = {}
    by_batch: dict[int, list] = {}
    for r in rows:
        by_cores.setdefault(r.cores, []).append(r)
        by_batch.setdefault(r.batch, []).append(r)
    for group in by_cores.values():
        group.sort(key=lambda r: r.batch)
        for a, b in zip(group, group[1:]):
            yield "batch", a, b
    for group in by_batch.values():
        group.sort(key=lambda r: r.cores)
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                yield "cores", a, b


def check_key(rows: Sequence["ProfileRow"], statistics: Sequence[str] = STATISTICS) -> list[Violation]:
    """Every invariant violation among the rows of one profile key."""
    out: list[Violation] = []
    for axis, a, b in _pairs(rows):
        for stat in statistics:
            la, lb = getattr(a, stat), getattr(b, stat)
            if axis == "batch":
                # b has the larger batch: its latency may not lie below a's beyond the intervals
                if lb * (1 + _rel_high(b)) < la * (1 - _rel_low(a)):
                    out.append(Violation(b.key, "batch", stat, (b.batch, b.cores), (a.batch, a.cores),
                                         f"{lb:.4g} s at batch {b.batch} < {la:.4g} s at batch {a.batch}"))
                continue
            # b has more cores
            if lb * (1 - _rel_low(b)) > la * (1 + _rel_high(a)):
                out.append(Violation(b.key, "cores", stat, (b.batch, b.cores), (a.batch, a.cores),
                                     f"{lb:.4g} s on {b.cores} cores > {la:.4g} s on {a.cores}"))
            ratio = b.cores / a.cores
            if la * (1 - _rel_low(a)) > ratio * lb * (1 + _rel_high(b)):
                out.append(Violation(b.key, "speedup", stat, (b.batch, b.cores), (a.batch, a.cores),
                                     f"{la / lb:.2f}x from {a.cores} to {b.cores} cores"))
    return out


def check(rows: Iterable["ProfileRow"], statistics: Sequence[str] = STATISTICS) -> list[Violation]:
    """Every invariant violation in a profile table's rows, key by key."""
    by_key: dict[str, list] = {}
    for r in rows:
        by_key.setdefault(r.key, []).append(r)
    out: list[Violation] = []
    for key in sorted(by_key):
        out.extend(check_key(by_key[key], statistics))
    return out


def report(violations: Sequence[Violation], where: str = "") -> str:
    head = f"{where}: " if where else ""
    lines = [f"{head}{len(violations)} physical-invariant violation(s):"]
    lines += [f"  {v}" for v in violations]
    return "\n".join(lines)
