"""Statistics of one measured cell (a key at one batch size and thread count), no torch needed.

A cell is a list of timed repetitions taken interleaved with the key's other cells. This module
says how precise its median is and whether the repetitions look disturbed, from what the
measurement itself shows:

* **median confidence interval**: the distribution-free order-statistic interval (the ranks
  come from Binomial(n, 1/2)), so no shape is assumed for the latency distribution;
* **trend**: the repetitions drift (Kendall's tau against their order, and the medians of the
  first and last thirds differ by more than ``TREND_CHANGE``): something slowed the machine
  down (or released it) during the cell, so its median describes neither state;
* **spread**: robust coefficient of variation (1.4826 MAD / median) above ``SPREAD_LIMIT``;
* **other work**: other processes used more CPU than the cores the cell leaves free
  (``/proc/stat`` minus this process, summed over the cell's repetitions).

A cell slower than its neighbours allow (the physical invariants) is found by
:func:`ipa.pipelines.invariants.check` on the cell medians and their intervals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

CONFIDENCE = 0.95
CI_TARGET = 0.05      # stop adding rounds once every median is known within +-5 %
TREND_CHANGE = 0.10   # first-third vs last-third median change that counts as drift
TREND_TAU = 0.5       # |Kendall tau| of latency against repetition order
SPREAD_LIMIT = 0.15   # robust CV
OTHER_MARGIN = 0.2    # cores: other work must stay this far below the cores left free
JIFFY_S = 0.01        # /proc/stat resolution: CPU time is counted in 10 ms ticks


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ValueError("median of no values")
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / 2 ** n


def median_ci(xs: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: (x_(k), x_(n+1-k)) with the largest k
    whose coverage 1 - 2 P(X <= k-1) is at least ``confidence``. With too few repetitions for
    that coverage (n < 6 at 95 %) the interval is the whole range (min, max)."""
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ValueError("confidence interval of no values")
    k = 0
    while k + 1 <= n // 2 and 1 - 2 * _binom_cdf(k, n) >= confidence:
        k += 1
    k = max(k, 1)  # k is 1-based: x_(1) is the minimum
    return s[k - 1], s[n - k]


def ci_halfwidth(xs: Sequence[float], confidence: float = CONFIDENCE) -> float:
    """The interval's larger half, relative to the median."""
    m = median(xs)
    lo, hi = median_ci(xs, confidence)
    return max(m - lo, hi - m) / m if m > 0 else math.inf


def kendall_tau(xs: Sequence[float]) -> float:
    """Kendall's tau-a of the values against their order (1 = strictly rising)."""
    n = len(xs)
    if n < 2:
        return 0.0
    score = 0
    for i in range(n):
        for j in range(i + 1, n):
            score += (xs[j] > xs[i]) - (xs[j] < xs[i])
    return score / (n * (n - 1) / 2)


def trend(xs: Sequence[float]) -> float:
    """Relative change from the first third's median to the last third's (0 with < 6 values)."""
    n = len(xs)
    if n < 6:
        return 0.0
    third = n // 3
    first, last = median(xs[:third]), median(xs[-third:])
    return (last - first) / first if first > 0 else 0.0


def robust_cv(xs: Sequence[float]) -> float:
    m = median(xs)
    if m <= 0:
        return 0.0
    return 1.4826 * median([abs(x - m) for x in xs]) / m


def other_limit(threads: int, nproc: int) -> float:
    """Cores other processes may use beside a cell of ``threads`` threads: the cores it leaves
    free, less a margin (and at least the margin, so a 1-core machine can measure at all)."""
    return max(OTHER_MARGIN, nproc - threads - OTHER_MARGIN)


@dataclass(frozen=True)
class CellVerdict:
    trend: float
    tau: float
    robust_cv: float
    other_cores: float | None
    reasons: tuple[str, ...]  # empty: the cell looks undisturbed


def judge(latencies: Sequence[float], *, threads: int, nproc: int, other_cpu_s: float | None = None,
          wall_s: float | None = None) -> CellVerdict:
    """Statistics of one cell and the reasons (if any) to think it disturbed.

    ``other_cpu_s`` is the CPU time other processes used during the cell's repetitions and
    ``wall_s`` their summed wall time; their ratio is compared with :func:`other_limit`, with
    two ticks of ``/proc/stat`` resolution added so a short cell is not flagged by rounding.
    """
    tr, tau, cv = trend(latencies), kendall_tau(latencies), robust_cv(latencies)
    reasons = []
    if abs(tr) > TREND_CHANGE and abs(tau) >= TREND_TAU:
        reasons.append(f"trend {tr:+.0%} (tau {tau:+.2f})")
    if cv > SPREAD_LIMIT:
        reasons.append(f"spread {cv:.0%}")
    other = None
    if other_cpu_s is not None and wall_s and wall_s > 0:
        other = max(0.0, other_cpu_s) / wall_s
        if other > other_limit(threads, nproc) + 2 * JIFFY_S / wall_s:
            reasons.append(f"other work {other:.2f} cores")
    return CellVerdict(tr, tau, cv, other, tuple(reasons))


def precise_enough(latencies: Sequence[float], min_reps: int, target: float = CI_TARGET) -> bool:
    return len(latencies) >= min_reps and ci_halfwidth(latencies) <= target
