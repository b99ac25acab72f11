"""Predictors without a model: reactive, max over the monitoring window, EWMA.

Each is a pure function of the history it is given (no state between calls), so an adapter may
call it on any history, and evaluation over a trace needs no replay.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ipa.errors import ConfigError
from ipa.predictors.base import MONITOR_WINDOW_S, PEAK_BLOCK_S, PeakPredictor


class Reactive(PeakPredictor):
    """The last observed 10-s peak: tomorrow looks like today."""

    name = "reactive"

    def predict_peaks(self, peaks: Sequence[float]) -> float:
        return float(peaks[-1]) if len(peaks) else 0.0


class MaxWindow(PeakPredictor):
    """The highest 10-s peak of the last ``window_s`` seconds (the paper's backup predictor)."""

    name = "max"

    def __init__(self, window_s: int = MONITOR_WINDOW_S):
        if int(window_s) != window_s or window_s < PEAK_BLOCK_S or window_s % PEAK_BLOCK_S:
            raise ConfigError(f"max predictor: window_s must be a positive multiple of {PEAK_BLOCK_S} s, got {window_s!r}")
        self.blocks = int(window_s) // PEAK_BLOCK_S

    def predict_peaks(self, peaks: Sequence[float]) -> float:
        return float(np.max(peaks[-self.blocks:])) if len(peaks) else 0.0


class Ewma(PeakPredictor):
    """Exponentially weighted mean of the 10-s peaks: ``s <- alpha * peak + (1 - alpha) * s``,
    started at the oldest peak."""

    name = "ewma"

    def __init__(self, alpha: float = 0.5):
        if not 0 < alpha <= 1:
            raise ConfigError(f"ewma predictor: alpha must be in (0, 1], got {alpha!r}")
        self.alpha = float(alpha)

    def predict_peaks(self, peaks: Sequence[float]) -> float:
        if not len(peaks):
            return 0.0
        s = float(peaks[0])
        for p in peaks[1:]:
            s = self.alpha * float(p) + (1 - self.alpha) * s
        return s
