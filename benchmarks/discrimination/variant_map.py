"""Which variants IPA picks at which load: the map behind the variant-tuple check.

    python benchmarks/discrimination/variant_map.py                  # every pipeline, its own weights
    python benchmarks/discrimination/variant_map.py --pipeline audio-qa --alpha 20

For each pipeline, one IPA decision (the solver, no run) at each rate across the bursty
workload's range of per-interval peaks (trace rates x the pipeline's load scale), and the rates
at which the chosen per-stage variants change. A run can only use the tuples whose rate bands
its predictions visit, so a pipeline whose bands all lie below (or above) the workload's range
uses one or two tuples whatever the predictor does; the map says so with numbers. Where fact 21
gives the paper's weight as a range (audio-qa alpha 10-20, NLP 40-100), run it with each end.
"""
from __future__ import annotations

import argparse

import numpy as np

from ipa.pipelines import load_pipeline
from ipa.policies import Observation, make_policy
from ipa.workloads import load_workload

PIPELINES = ("video", "audio-qa", "audio-sent", "sum-qa", "nlp")
INTERVAL_S = 10


def bursty_range(load_scale: float) -> tuple[float, float]:
    """Lowest and highest per-interval peak rate of the bursty workload, in the pipeline's rates."""
    rates = np.asarray(load_workload("bursty").rates, dtype=float) * load_scale
    peaks = [rates[i:i + INTERVAL_S].max() for i in range(0, len(rates), INTERVAL_S)]
    return float(min(peaks)), float(max(peaks))


def variant_map(name: str, alpha: float | None, beta: float | None, points: int) -> list[tuple[float, tuple, float]]:
    pipeline = load_pipeline(name)
    low, high = bursty_range(float(pipeline.params["load_scale"]))
    policy = make_policy("ipa", pipeline, alpha=alpha, beta=beta)
    out = []
    for rate in np.geomspace(low / 2, high * 1.25, points):
        decision, _ = policy(Observation(time_s=0.0, rate_rps=float(rate)), policy.initial_state())
        tuple_ = tuple(s.variant.split("/")[-1] for s in decision.configuration.stages.values())
        out.append((float(rate), tuple_, decision.cost_cores))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", choices=PIPELINES, action="append")
    p.add_argument("--alpha", type=float, default=None, help="accuracy weight (default: the pipeline's)")
    p.add_argument("--beta", type=float, default=None, help="cost weight (default: the pipeline's)")
    p.add_argument("--points", type=int, default=60, help="rates sampled, geometrically spaced")
    a = p.parse_args(argv)
    for name in a.pipeline or PIPELINES:
        pipeline = load_pipeline(name)
        low, high = bursty_range(float(pipeline.params["load_scale"]))
        alpha = a.alpha if a.alpha is not None else pipeline.params["alpha"]
        beta = a.beta if a.beta is not None else pipeline.params["beta"]
        rows = variant_map(name, a.alpha, a.beta, a.points)
        inside = {t for r, t, _ in rows if low <= r <= high}
        print(f"{name}: alpha {alpha:g}, beta {beta:g}; bursty peaks {low:.1f}-{high:.1f} rps; "
              f"{len(inside)} variant tuple(s) inside that range")
        last = None
        for rate, tuple_, cores in rows:
            if tuple_ != last:
                mark = "" if low <= rate <= high else "   (outside the bursty range)"
                print(f"  from {rate:7.2f} rps: {' + '.join(tuple_)}  ({cores:g} cores){mark}")
                last = tuple_
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
