"""A workload: per-second request counts, and the open-loop send times they become."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ipa.errors import ConfigError

ARRIVALS = ("poisson", "uniform")


@dataclass(frozen=True)
class Workload:
    """``rates[i]`` is the number of requests to send in second ``i`` (float, >= 0).

    Counts may be fractional (synthetic patterns, user traces): ``send_times`` rounds each one
    stochastically, so a rate of 2.5 sends 2 or 3 requests with equal chance and the expected
    total equals ``sum(rates)``.
    """

    name: str
    rates: np.ndarray = field(repr=False)
    provenance: str = ""

    def __post_init__(self) -> None:
        rates = np.asarray(self.rates, dtype=float)
        if rates.ndim != 1:
            raise ConfigError(f"workload {self.name!r}: rates must be one-dimensional, got shape {rates.shape}")
        if not np.all(np.isfinite(rates)) or np.any(rates < 0):
            bad = int(np.flatnonzero(~np.isfinite(rates) | (rates < 0))[0])
            raise ConfigError(f"workload {self.name!r}: rate at second {bad} is {rates[bad]!r}; rates must be finite and >= 0")
        rates.setflags(write=False)  # frozen means frozen: nobody edits a shared workload in place
        object.__setattr__(self, "rates", rates)

    @property
    def duration_s(self) -> int:
        return len(self.rates)

    @property
    def expected_requests(self) -> float:
        return float(self.rates.sum())

    def counts(self, seed: int) -> np.ndarray:
        """Integer requests per second: fractional rates rounded up with probability equal to
        their fractional part (seeded; integer rates are kept exactly)."""
        whole = np.floor(self.rates)
        frac = self.rates - whole
        # A stream of its own, so the rounding never shifts the offsets drawn in send_times.
        u = np.random.default_rng([seed, 0]).random(len(self.rates))
        return (whole + (u < frac)).astype(np.int64)

    def send_times(self, seed: int, arrivals: str = "poisson") -> np.ndarray:
        """Sorted intended send times (seconds from 0) of every request: second ``i`` gets
        ``counts(seed)[i]`` times in ``[i, i+1)``.

        ``poisson``: the offsets within a second are independent uniform draws, sorted. Given the
        count, the arrival times of a Poisson process in an interval are exactly such uniform
        order statistics, so this is a Poisson process whose rate follows the trace second by
        second, with the trace's count preserved (the paper's load generator draws exponential
        gaps within each second, fact 34). ``uniform``: evenly spaced, ``i + k/n``.
        Deterministic for a given seed.
        """
        if arrivals not in ARRIVALS:
            raise ConfigError(f"unknown arrival process {arrivals!r}; known: {', '.join(ARRIVALS)}")
        counts = self.counts(seed)
        seconds = np.repeat(np.arange(len(counts), dtype=float), counts)
        if arrivals == "poisson":
            offsets = np.random.default_rng([seed, 1]).random(len(seconds))
            # Every time stays inside its own second, so one global sort sorts within seconds.
            return np.sort(seconds + offsets)
        # k-th of n requests in its second: k / n.
        starts = np.cumsum(counts) - counts
        k = np.arange(len(seconds)) - np.repeat(starts, counts)
        return seconds + k / np.repeat(counts, counts)

    def scaled(self, factor: float) -> "Workload":
        """Every rate times ``factor`` (a pipeline's load scale); 1 returns the workload itself."""
        if not (factor > 0 and np.isfinite(factor)):
            raise ConfigError(f"workload {self.name!r}: load scale must be a finite number > 0, got {factor!r}")
        if factor == 1:
            return self
        return Workload(self.name, self.rates * factor, f"{self.provenance}; rates x {factor:g} (load scale)")

    def window(self, start_s: int, duration_s: int) -> "Workload":
        """The seconds ``[start_s, start_s + duration_s)``, renumbered from 0."""
        start_s, duration_s = int(start_s), int(duration_s)
        if start_s < 0 or duration_s <= 0 or start_s + duration_s > self.duration_s:
            raise ConfigError(f"window [{start_s}, {start_s + duration_s}) is not inside workload "
                              f"{self.name!r} of {self.duration_s} s")
        end = start_s + duration_s
        return Workload(f"{self.name}[{start_s}:{end}]", self.rates[start_s:end].copy(),
                        f"seconds {start_s}..{end - 1} of {self.name!r}; {self.provenance}")
