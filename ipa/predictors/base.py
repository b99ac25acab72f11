"""The predictor interface and the 10-second peaks every predictor works on."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

PEAK_BLOCK_S = 10    # the paper forecasts on 10-s maxima (fact 24)
HORIZON_S = 20       # ... and predicts the peak of the next 20 s
MONITOR_WINDOW_S = 120  # the adapter looks 2 minutes back (fact 23)


class Predictor(Protocol):
    name: str

    def predict(self, arrivals_per_s: Sequence[float]) -> float:
        """Predicted peak arrival rate (req/s) of the next 20 s, from per-second arrival counts
        (oldest first, the last entry the most recent whole second)."""

    def predict_peaks(self, peaks: Sequence[float]) -> float:
        """The same from the history's 10-s peaks (oldest first), as ``ten_second_peaks`` gives."""


def ten_second_peaks(arrivals_per_s: Sequence[float]) -> np.ndarray:
    """Maxima of 10-s blocks aligned to the end of the history (the last block is the most recent
    10 s); the oldest block is partial when the length is not a multiple of 10."""
    a = np.asarray(arrivals_per_s, dtype=float)
    if a.size == 0:
        return a
    pad = (-a.size) % PEAK_BLOCK_S
    # -inf padding never wins a max, so a partial oldest block is the max of what it has.
    padded = np.concatenate([np.full(pad, -np.inf), a])
    return padded.reshape(-1, PEAK_BLOCK_S).max(axis=1)


class PeakPredictor:
    """Base of predictors defined on 10-s peaks: ``predict`` = ``predict_peaks(ten_second_peaks)``."""

    name = "?"

    def predict(self, arrivals_per_s: Sequence[float]) -> float:
        return self.predict_peaks(ten_second_peaks(arrivals_per_s))

    def predict_peaks(self, peaks: Sequence[float]) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<predictor {self.name}>"


class InTraceUnits:
    """A predictor fed the trace's own units on a pipeline whose load is scaled: the history is
    divided by the load scale before predicting and the forecast multiplied back, so a predictor
    trained on the trace (the LSTM, fact 24) sees the range it was trained on."""

    def __init__(self, predictor: Predictor, load_scale: float):
        self.inner, self.load_scale = predictor, float(load_scale)
        self.name = predictor.name

    def predict(self, arrivals_per_s: Sequence[float]) -> float:
        return float(self.inner.predict(np.asarray(arrivals_per_s, dtype=float) / self.load_scale)) * self.load_scale

    def predict_peaks(self, peaks: Sequence[float]) -> float:
        return float(self.inner.predict_peaks(np.asarray(peaks, dtype=float) / self.load_scale)) * self.load_scale

    def __repr__(self) -> str:
        return f"<predictor {self.name} in trace units, load x {self.load_scale:g}>"


def in_trace_units(predictor: Predictor, load_scale: float) -> Predictor:
    return predictor if load_scale == 1 else InTraceUnits(predictor, load_scale)
