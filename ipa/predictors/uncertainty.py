"""How wrong the forecasts have been: the realised peak of each forecast's horizon over what
was forecast, and the factor a chosen quantile of those ratios puts on the next forecast.

ipa-plus provisions ``forecast x quantile_q(realised / forecast)`` over the recent forecasts (a
split-conformal bound on the ratio, the forecaster treated as a black box) instead of a fixed
margin: where the forecaster under-shoots bursts the factor grows, where it over-shoots it
shrinks below 1. Pure functions: the adapter keeps the forecasts and the ratios between calls.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ipa.predictors.base import HORIZON_S

CALIBRATION = 60   # ratios kept: the last 10 minutes of 10-s decisions
MIN_RATIOS = 6     # fewer than this (the first minutes of a run): the fixed margin applies


def settle(pending: Sequence[tuple[float, float]], history: Sequence[float], until_s: float,
           horizon_s: int = HORIZON_S) -> tuple[list[float], list[tuple[float, float]]]:
    """Split the (time, forecast) pairs into the ratios of those whose horizon [t, t + horizon)
    the history now covers in full (realised peak / forecast; forecasts of 0 give none) and the
    pairs still waiting. ``history`` holds the counts of the seconds ending at ``until_s``
    (its last entry is second ``until_s - 1``); a horizon that fell out of it is dropped."""
    first = until_s - len(history)
    ratios, waiting = [], []
    for t, forecast in pending:
        start = math.ceil(t)
        if start + horizon_s > until_s:
            waiting.append((t, forecast))
            continue
        if start < first or forecast <= 0:
            continue
        i = int(start - first)
        ratios.append(float(max(history[i:i + horizon_s])) / forecast)
    return ratios, waiting


def quantile_factor(ratios: Sequence[float], quantile: float, min_ratios: int = MIN_RATIOS) -> float | None:
    """The ``quantile`` of the ratios, taken at or above it (the conformal rank
    ceil((n + 1) q), capped at the largest); None while there are fewer than ``min_ratios``."""
    n = len(ratios)
    if n < min_ratios:
        return None
    rank = min(n, math.ceil((n + 1) * quantile))
    return float(np.sort(np.asarray(ratios, dtype=float))[rank - 1])
