"""Load predictors behind one interface: ``predict(arrivals_per_s) -> peak req/s of the next 20 s``.

``make_predictor(name, **options)`` for a name in ``PREDICTORS``: ``reactive`` (last 10-s peak),
``max`` (max over the monitoring window, ``window_s=120``), ``ewma`` (``alpha=0.5``, over 10-s
peaks), ``lstm`` (the paper's model, ``weights=PATH`` optional; backup ``max`` for the first 2 min).
"""
from __future__ import annotations

from ipa.errors import ConfigError
from ipa.predictors.base import HORIZON_S, MONITOR_WINDOW_S, PEAK_BLOCK_S, Predictor, ten_second_peaks
from ipa.predictors.simple import Ewma, MaxWindow, Reactive

PREDICTORS = ("reactive", "max", "ewma", "lstm")


def make_predictor(name: str, **options) -> Predictor:
    if name == "lstm":
        from ipa.predictors.lstm import Lstm
        factory = Lstm
    else:
        factory = {"reactive": Reactive, "max": MaxWindow, "ewma": Ewma}.get(name)
    if factory is None:
        raise ConfigError(f"unknown predictor {name!r}; known: {', '.join(PREDICTORS)}")
    try:
        return factory(**options)
    except TypeError as e:
        raise ConfigError(f"predictor {name!r}: bad option(s) {sorted(options)}: {e}") from None


__all__ = ["HORIZON_S", "MONITOR_WINDOW_S", "PEAK_BLOCK_S", "PREDICTORS", "Predictor",
           "make_predictor", "ten_second_peaks"]
