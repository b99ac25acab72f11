"""SMAPE of the predictors on the shipped trace's 10-s peaks, on days the LSTM never saw.

A sample is the 12 peaks of 2 minutes of history and, as target, the highest of the two peaks
that follow (the peak of the next 20 s). Samples never straddle a gap in the trace.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from ipa.predictors.base import HORIZON_S, MONITOR_WINDOW_S, PEAK_BLOCK_S

TRAIN_END_S = 1_209_600  # the first 14 days, seconds 0 .. 1,209,599, are the training days (fact 24)
HISTORY = MONITOR_WINDOW_S // PEAK_BLOCK_S  # 12 peaks
AHEAD = HORIZON_S // PEAK_BLOCK_S           # 2 peaks


def smape(actual, forecast) -> float:
    """Symmetric mean absolute percentage error, in percent (0..200):
    mean of |F - A| / ((|A| + |F|) / 2); a term with A = F = 0 counts as 0."""
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    if a.shape != f.shape or a.size == 0:
        raise ValueError(f"smape needs two equal, non-empty shapes; got {a.shape} and {f.shape}")
    denom = (np.abs(a) + np.abs(f)) / 2
    terms = np.divide(np.abs(f - a), denom, out=np.zeros_like(a), where=denom > 0)
    return float(100 * terms.mean())


def trace_peaks() -> pd.DataFrame:
    """The shipped 10-s peaks of the damped trace: columns ``second`` (block start), ``peak_rps``."""
    path = resources.files("ipa.workloads") / "data" / "trace-peaks-10s.csv.xz"
    with resources.as_file(path) as p:
        return pd.read_csv(p)


@dataclass(frozen=True)
class Samples:
    x: np.ndarray        # (n, 12) peaks of the history, oldest first
    y: np.ndarray        # (n,) peak of the next 20 s
    second: np.ndarray   # (n,) trace second at which the prediction is made


def make_samples(peaks: pd.DataFrame, start_s: int = 0, end_s: int | None = None) -> Samples:
    """Every sample whose history and target lie inside ``[start_s, end_s)`` and inside one
    contiguous run of the trace."""
    sec = peaks["second"].to_numpy()
    val = peaks["peak_rps"].to_numpy(dtype=float)
    keep = (sec >= start_s) & (sec + PEAK_BLOCK_S <= (end_s if end_s is not None else np.inf))
    sec, val = sec[keep], val[keep]
    xs, ys, ts = [], [], []
    for run in np.split(np.arange(len(sec)), np.flatnonzero(np.diff(sec) != PEAK_BLOCK_S) + 1):
        v = val[run]
        n = len(v) - HISTORY - AHEAD + 1
        if n <= 0:
            continue
        idx = np.arange(n)[:, None]
        xs.append(v[idx + np.arange(HISTORY)])
        ys.append(v[idx + HISTORY + np.arange(AHEAD)].max(axis=1))
        ts.append(sec[run][HISTORY:HISTORY + n])
    if not xs:
        return Samples(np.empty((0, HISTORY)), np.empty(0), np.empty(0, dtype=np.int64))
    return Samples(np.concatenate(xs), np.concatenate(ys), np.concatenate(ts))


def training_samples(peaks: pd.DataFrame | None = None) -> Samples:
    return make_samples(trace_peaks() if peaks is None else peaks, 0, TRAIN_END_S)


def unseen_samples(peaks: pd.DataFrame | None = None) -> Samples:
    """Samples from the days after the training days (14 .. 15.2 and the day-20.5 window)."""
    return make_samples(trace_peaks() if peaks is None else peaks, TRAIN_END_S, None)


def predictions(predictor, samples: Samples) -> np.ndarray:
    many = getattr(predictor, "predict_many", None)
    if many is not None:
        return many(samples.x)
    return np.array([predictor.predict_peaks(x) for x in samples.x])


def evaluate(predictor, samples: Samples) -> dict:
    f = predictions(predictor, samples)
    return {"predictor": predictor.name, "samples": int(len(samples.y)),
            "smape_pct": smape(samples.y, f),
            "mae_rps": float(np.mean(np.abs(f - samples.y))),
            # under-prediction is what costs SLA violations: how often, and by how much at most
            "under_pct": float(100 * np.mean(f < samples.y)),
            "max_under_rps": float(np.max(samples.y - f, initial=0.0))}
