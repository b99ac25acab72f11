"""How long a replica takes to serve a batch: a lognormal fitted to the profile's p50 and p99.

The optimiser's latency constraint reads the p99 of the profile (fact 17), so the simulated
distribution is fitted to the median and the p99 rather than to the mean and std: the tail
that decides SLA violations is the profiled one. ``ln L ~ Normal(mu, sigma)`` with
``mu = ln p50`` and ``sigma = (ln p99 - ln p50) / z_0.99``.

A served batch may be smaller than the configured batch (the queue dispatched it on its
timeout); its latency is interpolated linearly in the batch size between the profiled batch
sizes around it (p50 and p99 separately), which is how the profiles themselves grow.
"""
from __future__ import annotations

import math

from ipa.pipelines.pipeline import StageProfile

Z_99 = 2.3263478740408408  # standard-normal quantile of 0.99


def lognormal_params(p50_s: float, p99_s: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal whose median is ``p50_s`` and 99th percentile ``p99_s``."""
    if p50_s <= 0:
        raise ValueError(f"median latency must be positive, got {p50_s}")
    sigma = max(0.0, math.log(max(p99_s, p50_s) / p50_s) / Z_99)
    return math.log(p50_s), sigma


def _interpolate(points: list[tuple[int, float]], batch: int) -> float:
    """Linear interpolation of (batch, value) points (sorted by batch) at ``batch``."""
    if batch <= points[0][0]:
        # Below the smallest profiled batch: scale down in proportion (never happens with batch 1 profiled).
        return points[0][1] * batch / points[0][0]
    for (b0, v0), (b1, v1) in zip(points, points[1:]):
        if b0 <= batch <= b1:
            return v0 + (v1 - v0) * (batch - b0) / (b1 - b0)
    # Above the largest profiled batch: extrapolate the last segment (or proportionally). A
    # noisy profile can make that segment fall; more work never takes less time, so the
    # extrapolation never goes below the last profiled value.
    if len(points) == 1:
        return points[-1][1] * batch / points[-1][0]
    (b0, v0), (b1, v1) = points[-2], points[-1]
    return max(v1, v1 + (v1 - v0) * (batch - b1) / (b1 - b0))


def batch_latency_params(profile: StageProfile, max_batch: int) -> list[tuple[float, float]]:
    """``params[k]`` = (mu, sigma) of the latency of a batch of ``k`` requests, k = 1..max_batch
    (index 0 unused), at the variant's base cores."""
    rows = sorted(profile.rows.items())
    p50 = [(b, r.latency_p50_s) for b, r in rows]
    p99 = [(b, r.latency_p99_s) for b, r in rows]
    out = [(0.0, 0.0)]
    for k in range(1, max_batch + 1):
        out.append(lognormal_params(_interpolate(p50, k), _interpolate(p99, k)))
    return out
