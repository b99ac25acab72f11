"""Whether a run's provisioning fits the machine that computes it.

In ``real`` mode on the local backend every replica runs its model on this machine's cores. A
policy that provisions more cores than there are does not fail; it oversubscribes, every batch
runs slower than its profile, and the run fills with late and dropped requests that measure the
machine, not the policy. So such a run is refused before anything starts, naming the cores it
would need and the largest constant load of the pipeline that fits.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Sequence

from ipa.configuration import Configuration
from ipa.errors import ConfigError
from ipa.policies import Observation

MAX_CONSTANT_RPS = 1024  # the search for the largest load that fits stops here


def machine_cores() -> int:
    """The cores this process may run on (its affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def peak_per_second(send_times_s: Sequence[float]) -> int:
    """The largest number of requests sent in one whole second: what the monitor sees at peak."""
    counts: dict[int, int] = {}
    for t in send_times_s:
        counts[int(t)] = counts.get(int(t), 0) + 1
    return max(counts.values(), default=0)


def cores_needed(policy, first_rate_rps: float, peak_rate_rps: float) -> tuple[int, Configuration]:
    """The most cores the policy provisions over a run that starts at ``first_rate_rps`` and
    reaches ``peak_rate_rps``: its initial decision, then its decision at the peak (``static``
    keeps the first)."""
    state = policy.initial_state()
    first, state = policy(Observation(0.0, first_rate_rps), state)
    peak, _ = policy(Observation(1.0, peak_rate_rps, current=first.configuration), state)
    worst = max((first, peak), key=lambda d: d.configuration.total_cores)
    return worst.configuration.total_cores, worst.configuration


def largest_constant_rate(policy, cores: int, margin: float, peaks_for: Callable[[int], tuple[float, float]]) -> int:
    """The largest whole R such that workload ``constant-R`` runs within ``cores``; 0 when not
    even constant-1 does. ``peaks_for(R)`` gives that workload's (first-interval, per-second)
    peaks as this run would send it (load scale, arrival process, seed)."""
    def fits(r: int) -> bool:
        first, peak = peaks_for(r)
        return cores_needed(policy, first * (1.0 + margin), peak * (1.0 + margin))[0] <= cores

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= MAX_CONSTANT_RPS and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, MAX_CONSTANT_RPS + 1)
    while hi - lo > 1:  # fits(lo), not fits(hi) (or hi past the cap)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def check_fits_machine(policy, pipeline, first_rate_rps: float, peak_rate_rps: float,
                       peaks_for: Callable[[int], tuple[float, float]], cores: int | None = None) -> int:
    """Raise ``ConfigError`` when the run would provision more cores than ``cores`` (default:
    this machine's); returns the cores it needs."""
    cores = machine_cores() if cores is None else cores
    margin = float(pipeline.params.get("predictor_margin", 0.0))
    need, config = cores_needed(policy, first_rate_rps * (1.0 + margin), peak_rate_rps * (1.0 + margin))
    if need <= cores:
        return need
    stages = ", ".join(f"{name} {s.replicas} x {s.variant.split('/')[-1]} on {s.cores}"
                       for name, s in config.stages.items())
    r = largest_constant_rate(policy, cores, margin, peaks_for)
    fits = (f"the largest constant load of {pipeline.name} that fits under {policy.name} is --workload "
            f"constant-{r}" if r else f"no constant load of {pipeline.name} fits under {policy.name}: even "
            f"constant-1 needs more (benchmarks/real_mode/README.md lists what fits a small machine)")
    raise ConfigError(
        f"--mode real computes on this machine's {cores} core(s), but policy {policy.name!r} would provision "
        f"{need} cores for {pipeline.name} at the workload's peak of {peak_rate_rps:g} requests in a second "
        f"({stages}): refusing before starting, since an oversubscribed run measures the machine, not the "
        f"policy. {fits[0].upper() + fits[1:]}; or use --mode emulated (replicas hold for their profiled "
        f"latency and need no cores of their own), or a machine with {need} cores.")


def nominal_cores_note(backend: str, options: dict, peak_cores: float, cores: int | None = None) -> str | None:
    """What to tell the user of a local run that provisioned more cores than the machine has but
    does not compute on them (emulated replicas, or quick stand-in builds): the cores are nominal,
    what a cluster would need, and the latencies are the profiles', not this machine's. None when
    the run fits, or when it is not a local run (a real-mode one that does not fit never starts)."""
    cores = machine_cores() if cores is None else cores
    if backend != "local" or peak_cores <= cores:
        return None
    what = "quick stand-in builds" if options.get("quick") else "emulated replicas (they sleep a profiled latency)"
    return (f"the run provisioned up to {peak_cores:g} cores on this {cores}-core machine with {what}: those "
            f"cores are nominal (what a cluster would reserve), not computed on here, and the latencies "
            f"follow the profiles, not this machine; use --mode real on a machine with {math.ceil(peak_cores)} "
            f"cores to measure them")
