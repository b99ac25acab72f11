"""Named workloads: the paper's four trace patterns (shipped in data/) and synthetic shapes."""
from __future__ import annotations

import re
from importlib import resources

import numpy as np

from ipa.errors import ConfigError
from ipa.workloads.trace import read_trace_csv
from ipa.workloads.workload import Workload

DAMPING = 8  # trace counts are divided by 8 (integer division), fact 32/33
PATTERN_DURATION_S = 1200

# Each paper pattern is its trace windows ([start, end) in trace seconds) played in order
# (docs/facts.md fact 33; ipa/workloads/data/README.md). Steady-high is one 600-s window played twice.
PATTERN_WINDOWS: dict[str, tuple[tuple[int, int], ...]] = {
    "bursty": ((1_301_160, 1_302_360),),
    "steady-low": ((1_299_600, 1_300_800),),
    "steady-high": ((1_768_800, 1_769_400), (1_768_800, 1_769_400)),
    "fluctuating": ((1_301_400, 1_302_000), (1_308_600, 1_309_200)),
}
WORKLOADS = tuple(PATTERN_WINDOWS)
SYNTHETIC = ("constant-R", "step-A-B", "ramp-A-B", "sine-MEAN-AMP-PERIOD")

_NUMBER = r"(\d+(?:\.\d+)?)"
_SYNTHETIC_RE = {
    "constant": re.compile(rf"constant-{_NUMBER}"),
    "step": re.compile(rf"step-{_NUMBER}-{_NUMBER}"),
    "ramp": re.compile(rf"ramp-{_NUMBER}-{_NUMBER}"),
    "sine": re.compile(rf"sine-{_NUMBER}-{_NUMBER}-{_NUMBER}"),
}
TRACE_SOURCE = ("Twitter stream of April 2018 (Archive Team), per-second tweet counts as published "
                "in the IPA artifact (load_tester/barazmoon/twitter/workload.tbz2)")


def window_file(start: int, end: int) -> str:
    return f"trace-{start}-{end}.csv"


def _read_window(start: int, end: int) -> np.ndarray:
    with resources.as_file(resources.files("ipa.workloads") / "data" / window_file(start, end)) as p:
        first, rates = read_trace_csv(p)
    if first != start or len(rates) != end - start:
        raise ConfigError(f"shipped window {p} holds seconds {first}..{first + len(rates) - 1}, "
                          f"expected {start}..{end - 1}; rebuild with python -m ipa.workloads.build_data")
    return rates


def _synthetic(name: str, duration: int) -> Workload | None:
    for kind, pattern in _SYNTHETIC_RE.items():
        m = pattern.fullmatch(name)
        if not m:
            continue
        p = [float(g) for g in m.groups()]
        t = np.arange(duration, dtype=float)
        if kind == "constant":
            rates, what = np.full(duration, p[0]), f"{p[0]:g} req/s"
        elif kind == "step":
            rates, what = np.where(t < duration // 2, p[0], p[1]), f"{p[0]:g} req/s, then {p[1]:g} from second {duration // 2}"
        elif kind == "ramp":
            rates, what = np.linspace(p[0], p[1], duration), f"linear from {p[0]:g} to {p[1]:g} req/s"
        else:
            mean, amp, period = p
            if amp > mean:
                raise ConfigError(f"workload {name!r}: amplitude {amp:g} exceeds the mean {mean:g}, "
                                  "rates would go negative")
            if period <= 0:
                raise ConfigError(f"workload {name!r}: period must be > 0 seconds")
            rates = mean + amp * np.sin(2 * np.pi * t / period)
            what = f"{mean:g} + {amp:g} sin(2 pi t / {period:g} s) req/s"
        return Workload(name, rates, f"synthetic: {what}, {duration} s")
    return None


def load_workload(name: str, duration: int | None = None) -> Workload:
    """A paper pattern (``WORKLOADS``) or a synthetic one named with its parameters
    (``constant-10``, ``step-5-20``, ``ramp-0-30``, ``sine-15-10-300``; ``duration`` seconds,
    default 1200). For a paper pattern, ``duration`` cuts its first seconds."""
    if duration is not None and (int(duration) != duration or duration <= 0):
        raise ConfigError(f"workload duration must be a positive whole number of seconds, got {duration!r}")
    if name in PATTERN_WINDOWS:
        windows = PATTERN_WINDOWS[name]
        rates = np.concatenate([_read_window(a, b) for a, b in windows])
        spans = " + ".join(f"{a:,}-{b:,}" for a, b in windows)
        w = Workload(name, rates, f"{TRACE_SOURCE}; trace seconds {spans}, counts // {DAMPING}")
        if duration is not None and duration != w.duration_s:
            if duration > w.duration_s:
                raise ConfigError(f"workload {name!r} lasts {w.duration_s} s; cannot play {duration} s of it")
            w = w.window(0, duration)
        return w
    synthetic = _synthetic(name, int(duration or PATTERN_DURATION_S))
    if synthetic is None:
        raise ConfigError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}, or synthetic "
                          f"{', '.join(SYNTHETIC)} (numbers in req/s and seconds, e.g. constant-10), "
                          "or a trace file via --trace FILE")
    return synthetic
