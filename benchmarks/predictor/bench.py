"""Predictor benchmark: SMAPE on trace days the LSTM never saw (overall and inside each paper
pattern's windows) and the cost of one ``predict`` call on 2 minutes of history.

    python benchmarks/predictor/bench.py
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np

from ipa.predictors import PREDICTORS, make_predictor
from ipa.predictors.evaluate import Samples, evaluate, unseen_samples
from ipa.workloads import PATTERN_WINDOWS


def within(samples: Samples, windows) -> Samples:
    """Samples whose prediction time falls inside one of the windows (2 min of history and the
    20-s target may reach just outside it)."""
    keep = np.zeros(len(samples.y), dtype=bool)
    for a, b in set(windows):
        keep |= (samples.second >= a) & (samples.second < b)
    return Samples(samples.x[keep], samples.y[keep], samples.second[keep])


def per_call_us(predictor, history, repeat=2000) -> float:
    predictor.predict(history)
    t0 = time.perf_counter()
    for _ in range(repeat):
        predictor.predict(history)
    return 1e6 * (time.perf_counter() - t0) / repeat


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, python {platform.python_version()}, numpy {np.__version__}")
    samples = unseen_samples()
    predictors = {name: make_predictor(name) for name in PREDICTORS}
    history = np.random.default_rng(0).integers(0, 35, 120).astype(float)
    cols = ["unseen days"] + list(PATTERN_WINDOWS)
    print(f"SMAPE % (samples: unseen days {len(samples.y)}, "
          + ", ".join(f"{p} {len(within(samples, w).y)}" for p, w in PATTERN_WINDOWS.items()) + ")")
    print(f"{'predictor':<10} " + " ".join(f"{c:>12}" for c in cols) + f" {'us/predict':>11}")
    for name, p in predictors.items():
        scores = [evaluate(p, samples)["smape_pct"]]
        scores += [evaluate(p, within(samples, w))["smape_pct"] for w in PATTERN_WINDOWS.values()]
        print(f"{name:<10} " + " ".join(f"{s:>12.2f}" for s in scores) + f" {per_call_us(p, history):>11.0f}")


if __name__ == "__main__":
    main()
