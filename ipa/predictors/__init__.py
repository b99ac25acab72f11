"""Load predictors behind one interface: ``predict(arrivals_per_s) -> peak req/s of the next 20 s``.

``make_predictor(name, **options)`` for a name in ``PREDICTORS``: ``reactive`` (last 10-s peak),
``max`` (max over the monitoring window, ``window_s=120``), ``ewma`` (``alpha=0.5``, over 10-s
peaks), ``lstm`` (the paper's model, ``weights=PATH`` optional; backup ``max`` for the first 2 min).
``oracle`` (``ipa.predictors.oracle``) is no forecaster but the true peak, read from a run's send
times: a run builds it (``RUN_PREDICTORS``); ``make_predictor`` cannot.
"""
from __future__ import annotations

from ipa.errors import ConfigError
from ipa.predictors.base import HORIZON_S, MONITOR_WINDOW_S, PEAK_BLOCK_S, Predictor, ten_second_peaks
from ipa.predictors.oracle import ORACLE, TruePeak
from ipa.predictors.simple import Ewma, MaxWindow, Reactive

PREDICTORS = ("reactive", "max", "ewma", "lstm")
RUN_PREDICTORS = PREDICTORS + (ORACLE,)  # what `ipa run --predictor` takes


def make_predictor(name: str, **options) -> Predictor:
    if name == ORACLE:
        raise ConfigError("the oracle predictor reads a run's own send times: a run builds it "
                          "(ipa run --predictor oracle); it cannot forecast from a history alone")
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


__all__ = ["HORIZON_S", "MONITOR_WINDOW_S", "ORACLE", "PEAK_BLOCK_S", "PREDICTORS", "Predictor", "RUN_PREDICTORS",
           "TruePeak", "make_predictor", "ten_second_peaks"]
