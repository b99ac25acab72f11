"""The oracle: the true peak of the next ``HORIZON_S``, read from the run's own send times.

It is no forecaster: it is the bound the forecasters are measured against. Given to IPA (policy
``oracle``, or any policy with ``--predictor oracle``) it says what the same decision space does
with a perfect forecast, so the gap between a predictor and the oracle is what forecasting costs.
It works in the pipeline's units (the send times are already load-scaled), so it is never wrapped
in trace units.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ipa.predictors.base import HORIZON_S

ORACLE = "oracle"


class TruePeak:
    """``predict`` ignores the history: the highest per-second arrival count in the ``horizon_s``
    seconds from the decision time (the clock's whole second) on."""

    name = ORACLE

    def __init__(self, send_times_s: Sequence[float], clock, horizon_s: int = HORIZON_S):
        seconds = np.floor(np.asarray(send_times_s, dtype=float)).astype(np.int64)
        self.counts = np.bincount(seconds) if seconds.size else np.zeros(0, dtype=np.int64)
        self.clock = clock
        self.horizon_s = int(horizon_s)

    def peak_from(self, t_s: float) -> float:
        start = max(0, math.floor(t_s))
        window = self.counts[start:start + self.horizon_s]
        return float(window.max()) if window.size else 0.0

    def predict(self, arrivals_per_s: Sequence[float]) -> float:
        return self.peak_from(self.clock.now())

    def __repr__(self) -> str:
        return f"<predictor {self.name}: the true peak of the next {self.horizon_s} s>"
